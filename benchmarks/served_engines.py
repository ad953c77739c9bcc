"""The CPU engines as `make serve` serves them: each engine's variant behind the whole ensemble, side by side.

In one run, on the same model and the same Financial PhraseBank sentences, for each served variant
(ORT dynamic int8, the CPU default; OpenVINO static int8; OpenVINO fp32 with its f32 hint):
  - building and guarding it (model_repository.build.served_variants, what `make serve` runs first):
    the seconds it took, or that it was cached; a refused variant is reported with the fallback;
  - the local target serving it, NVIDIA's perf_analyzer on the ensemble at --clients concurrent
    single-text clients: texts/s, p50, p99, and each against ORT int8 at the same level.
One server at a time on the cores, warmed up before its levels.
Writes docs/benchmarks/served-engines.{md,json}. Without --finbert/--distilbert the checkpoints are
random-weight BERT-base / DistilBERT-base (speed is the architecture's, not the weights').

    python -m benchmarks.served_engines --models finbert --clients 1,16,64 --duration 15
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks import runner
from benchmarks.cpu_engines import capabilities
from benchmarks.inputs import checkpoint, sentences
from benchmarks.markdown import table
from benchmarks.measure import perf_analyzer_level, stability_argument
from benchmarks.runner import client_counts, refuse, shared_arguments, unknown
from export.facts import FAMILIES
from export.onnx import export_model
from export.optimize import MIN_AGREEMENT
from export.runtime import DEFAULT_VARIANT
from model_repository.assemble import TargetOptions
from model_repository.build import served_variants
from server import stack

# (label, served variant); the first is what the others are compared with: the CPU default.
VARIANTS = (
    ("ORT dynamic int8 (the CPU default)", DEFAULT_VARIANT["cpu"]),
    ("OpenVINO static int8 (NNCF)", "openvino-int8-static"),
    ("OpenVINO fp32 (hint f32)", "openvino-fp32"),
)


RANDOM = {"finbert": "random-weight BERT-base, FinBERT's architecture", "distilbert": "random-weight DistilBERT-base"}


def build(export_dir, variant: str, min_agreement: float) -> dict:
    """Build and guard `variant` as `make serve` does; what is served, and how long it took."""
    began = time.perf_counter()
    lines: list[str] = []
    served = served_variants({"model": export_dir}, variant, min_agreement, log=lines.append)["model"]
    seconds = time.perf_counter() - began
    return {"served": served, "build_and_guard_s": seconds, "log": lines[-3:]}


def measure_family(family: str, export_dir, texts: list[str], args, log=print) -> dict:
    min_agreement = args.min_agreement
    if min_agreement is None:  # random weights: speed only; real ones: the guard's limit
        min_agreement = 0.0 if not getattr(args, family) else MIN_AGREEMENT
    built = {variant: build(export_dir, variant, min_agreement) for _, variant in VARIANTS}
    for variant, b in built.items():
        log(f"[{family}] {variant}: served {b['served']}, built and guarded in {b['build_and_guard_s']:.1f} s")
    levels: dict[str, dict] = {variant: {} for _, variant in VARIANTS}
    for _, variant in VARIANTS:
        if built[variant]["served"] != variant:
            continue  # refused by the guard: its fallback is measured under its own name
        work = args.build / "served-engines" / family / variant
        server = stack.serve({family: export_dir}, work, TargetOptions("local", cores=args.cores, variant=variant))
        try:
            perf_analyzer_level(server, family, texts, 4, 2.0, work, stability=100000)  # warm every step
            for clients in args.clients:
                figures = perf_analyzer_level(
                    server, family, texts, clients, args.duration, work, stability=args.perf_analyzer_stability
                )
                levels[variant][str(clients)] = figures.to_json()
                log(
                    f"[{family}] {variant} at {clients}: {figures.texts_per_s:.1f} texts/s, p99 {figures.p99_ms:.0f} ms"
                )
        finally:
            server.stop()
    return {"built": built, "levels": levels}


def markdown(r: dict) -> str:
    lines = [
        f"# CPU engines as served ({r['when']})",
        "",
        f"`python -m benchmarks.served_engines`, {r['machine']}; OpenVINO's CPU capabilities here: "
        f"{r['capabilities']}. {r['corpus']}. Each variant served by the local target (`make serve "
        "VARIANT=...`: the Python classifier, traffic classes on) one server at a time, warmed up; NVIDIA's "
        f"perf_analyzer on the ensemble, --sync single-text clients, {r['duration']:g} s windows until 3 agree. "
        "Build and guard: what `make serve` runs before the server starts (cached after the first time).",
    ]
    base = VARIANTS[0][1]
    for family, result in r["families"].items():
        levels = result["levels"]
        lines += ["", f"## {family} ({r['sources'][family]})", ""]
        rows = []
        for label, variant in VARIANTS:
            b = result["built"][variant]
            row = [
                label,
                ("cached" if any(" cached" in line for line in b["log"]) else f"{b['build_and_guard_s']:.1f} s")
                + ("" if b["served"] == variant else f" (refused: {b['served']})"),
            ]
            for clients in r["clients"]:
                m, ref = levels[variant].get(str(clients)), levels[base].get(str(clients))
                if not m:
                    row.append("—")
                    continue
                ratio = f" ({m['texts_per_s'] / ref['texts_per_s']:.2f}×)" if ref else ""
                row.append(f"{m['texts_per_s']:.1f}{ratio}, p50 {m['p50_ms']:.0f} / p99 {m['p99_ms']:.0f} ms")
            rows.append(row)
        lines += table(
            [
                "engine and variant",
                "build and guard",
                *(f"{c} clients: texts/s (× ORT int8), latency" for c in r["clients"]),
            ],
            rows,
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="finbert", help="finbert (BERT-base), distilbert, or both")
    parser.add_argument("--finbert", help="checkpoint (default: random-weight BERT-base)")
    parser.add_argument("--distilbert", help="checkpoint (default: random-weight DistilBERT-base)")
    parser.add_argument("--clients", type=client_counts, default=[1, 16, 64], help="comma-separated (default 1,16,64)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds a level's 3 windows take together")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument(
        "--min-agreement",
        type=float,
        help=f"the accuracy guard's limit (default: {MIN_AGREEMENT} with a checkpoint given, 0 for random weights)",
    )
    stability_argument(parser)
    shared_arguments(parser)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    refuse(
        parser,
        unknown("--models", models, FAMILIES),
        not models and "--models: name at least one",
        not args.clients and "--clients: name at least one level",
        args.duration <= 0 and "--duration: more than 0 seconds",
    )
    texts, described = sentences(args.sentences)
    results = {
        "when": runner.now(),
        "machine": runner.machine(args.cores),
        "capabilities": capabilities(),
        "corpus": described,
        "clients": args.clients,
        "duration": args.duration,
        "sources": {},
        "families": {},
    }
    for family in models:
        source = checkpoint(family, getattr(args, family), args.build)
        export_dir = export_model(source, family, args.build / "export" / family).path
        results["sources"][family] = getattr(args, family) or RANDOM[family]
        results["families"][family] = measure_family(family, export_dir, texts, args)
    runner.write(args.out, "served-engines", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
