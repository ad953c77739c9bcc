"""`make bench` (second part): does the container repository batch, and at what speed, next to the local target?

In one run, on FinBERT's architecture (random-weight BERT-base unless --checkpoint) and the same
Financial PhraseBank sentences, NVIDIA's perf_analyzer drives 16 concurrent single-text clients
against each configuration below, in interleaved rounds (a drifting machine falls on all of them):
  local            `make serve`: ragged requests, length-aware Python classifier
  container-cpu    the cpu profile: the same Python classifier, in the NGC image
  container-gpu    the gpu profile (Triton's native onnxruntime backend, one 128-token bucket),
                   its instance switched to KIND_CPU: no GPU here
and, for the record of why the profiles are what they are, the designs they replaced:
  before-cpu, before-gpu   the previous profiles: padding to 16/32/64/128/256
  native-cpu-128           the gpu profile's padding with the cpu profile's threads
Mean batch = the classifier's requests / executions, from Triton's statistics.
Writes docs/benchmarks/container.{md,json,png}.

    python -m benchmarks.container --rounds 2 --window-requests 64
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import runner
from benchmarks.inputs import UNGUARDED_SAMPLE, checkpoint, sentences
from benchmarks.markdown import table
from benchmarks.measure import perf_analyzer_level, stability_argument, stats_delta, triton_stats
from benchmarks.runner import machine, shared_arguments
from export.onnx import export_model
from export.runtime import VARIANTS
from model_repository.assemble import TargetOptions
from server import stack

FINE = (16, 32, 64, 128, 256)
# name -> (options but cores and variant, shipped: a profile `make repository` builds, what it is)
CONFIGS = {
    "local": (dict(target="local"), True, "`make serve`: ragged requests, length-aware Python classifier"),
    "container-cpu": (
        dict(target="container", device="cpu"),
        True,
        "cpu profile: the same Python classifier (ONNX Runtime 1.19.2 in the image)",
    ),
    "container-gpu": (
        dict(target="container", device="gpu", cpu_instances=True),
        True,
        "gpu profile: native onnxruntime backend, one 128-token bucket; KIND_CPU here",
    ),
    "before-cpu": (
        dict(target="container", device="cpu", classifier="onnxruntime", buckets=FINE),
        False,
        "the cpu profile before: native backend, buckets 16/32/64/128/256",
    ),
    "before-gpu": (
        dict(target="container", device="gpu", cpu_instances=True, buckets=FINE),
        False,
        "the gpu profile before: buckets 16/32/64/128/256; KIND_CPU here",
    ),
    "native-cpu-128": (
        dict(target="container", device="cpu", classifier="onnxruntime"),
        False,
        "rejected for cpu: the gpu profile's padding with the cpu profile's threads",
    ),
}


def measure(
    servers: dict, family: str, texts: list[str], clients: int, window_requests: int, work: Path, stability: float
) -> dict:
    """One round: perf_analyzer on each server in turn."""
    out = {}
    for name, server in servers.items():
        before = triton_stats(server, family)
        # Windows of a fixed request count: the slowest configurations serve a few texts/s here.
        level = perf_analyzer_level(
            server, family, texts, clients, 0, work, request_count=window_requests, stability=stability
        )
        steps = stats_delta(before, triton_stats(server, family))
        classifier = steps[f"{family}_classifier"]
        out[name] = {
            "texts_per_s": level.texts_per_s,
            "p50_ms": level.p50_ms,
            "p99_ms": level.p99_ms,
            "classifier_requests": classifier["requests"],
            "classifier_executions": classifier["executions"],
            "batch_histogram": classifier["batch_histogram"],
        }
        print(
            f"  {name}: {level.texts_per_s:.1f} texts/s, mean batch "
            f"{classifier['requests'] / max(classifier['executions'], 1):.2f}, p99 {level.p99_ms:.0f} ms"
        )
    return out


def summarize(rounds: list[dict]) -> dict:
    summary = {}
    for name in rounds[0]:
        entries = [r[name] for r in rounds]
        requests = sum(e["classifier_requests"] for e in entries)
        executions = sum(e["classifier_executions"] for e in entries)
        summary[name] = {
            "texts_per_s": float(np.median([e["texts_per_s"] for e in entries])),
            "texts_per_s_runs": [e["texts_per_s"] for e in entries],
            "mean_batch": requests / max(executions, 1),
            "p99_ms": float(np.median([e["p99_ms"] for e in entries])),
        }
    return summary


def markdown(results: dict) -> str:
    s = results["summary"]
    local = s["local"]
    lines = [
        f"# Container profiles: batching and speed ({results['when']})",
        "",
        f"Machine: {results['machine']}. Model: `{results['source']}` ({results['variant']}). "
        f"Sentences: {results['sentences']}. NVIDIA perf_analyzer, {results['clients']} concurrent single-text "
        f"clients, perf_analyzer windows of {results['window_requests']} requests (at least 3 per measurement), "
        f"{results['rounds']} interleaved rounds, all in "
        "one run (`make bench`). Mean batch = the classifier's requests / executions (Triton's statistics). "
        f"ONNX Runtime threads: {results['cores']} for every CPU classifier (the image's default is the CPU "
        "profile's request); the gpu profile keeps its 1 thread.",
        "",
        *table(
            [
                "configuration",
                "what it is",
                "ships",
                "mean batch",
                "texts/s (median)",
                "× local",
                "p99 ms",
                "texts/s per round",
            ],
            [
                [
                    name,
                    CONFIGS[name][2],
                    "yes" if results["configs"][name] else "no",
                    f"{entry['mean_batch']:.2f}",
                    f"{entry['texts_per_s']:.1f}",
                    f"{entry['texts_per_s'] / local['texts_per_s']:.2f}",
                    f"{entry['p99_ms']:.0f}",
                    " / ".join(f"{v:.1f}" for v in entry["texts_per_s_runs"]),
                ]
                for name, entry in s.items()
            ],
        ),
    ]
    lines += [
        "",
        "The gpu profile's speed here is a CPU's (KIND_CPU, one thread): only its batching says anything "
        "about a GPU node. GPU numerics and speed are unmeasured (no GPU was lent).",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["summary"])
    ships = [results["configs"][n] for n in names]
    colors = ["tab:blue" if s else "tab:gray" for s in ships]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.55 * len(names) + 1.6), sharey=True)
    y = np.arange(len(names))[::-1]
    for ax, key, title in ((axes[0], "mean_batch", "classifier mean batch"), (axes[1], "texts_per_s", "texts/s")):
        values = [results["summary"][n][key] for n in names]
        ax.barh(y, values, color=colors)
        for yy, v in zip(y, values):
            ax.text(v, yy, f" {v:.1f}", va="center", fontsize=8)
        ax.set_title(title)
        ax.set_xlim(0, max(values) * 1.2)
    axes[0].set_yticks(y, names, fontsize=8)
    fig.suptitle(
        f"{results['clients']} concurrent clients, {results['variant']} ({results['source']}); "
        "blue: shipped profiles, grey: designs they replaced",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="FinBERT-layout checkpoint (default: random-weight BERT-base)")
    parser.add_argument("--variant", choices=VARIANTS, default="fp32")
    parser.add_argument("--clients", type=int, default=16)
    stability_argument(parser)
    parser.add_argument(
        "--window-requests",
        type=int,
        default=64,
        help="requests per perf_analyzer measurement window (it measures 3 or more)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--configs",
        default=",".join(n for n in CONFIGS if n != "native-cpu-128"),
        help=f"comma-separated, from {', '.join(CONFIGS)} (default: all but native-cpu-128, which "
        "serves a few texts/s here)",
    )
    parser.add_argument("--sentences", type=int, default=480)
    shared_arguments(parser)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",")]
    if unknown := [n for n in names if n not in CONFIGS]:
        parser.error(f"--configs: unknown {unknown}; choose from {', '.join(CONFIGS)}")
    if "local" not in names:
        parser.error("--configs: include local, the reference the others are compared with")
    if min(args.clients, args.rounds, args.cores, args.sentences, args.window_requests) < 1:
        parser.error("--clients, --rounds, --cores, --sentences and --window-requests must be at least 1")
    texts, text_source = sentences(args.sentences)
    source = checkpoint("finbert", args.checkpoint, args.build)
    export = export_model(source, "finbert", args.build / "export" / "finbert").path
    if args.variant != "fp32":
        from export.optimize import MIN_AGREEMENT, build_variants

        build_variants(
            export,
            [args.variant],
            min_agreement=MIN_AGREEMENT if args.checkpoint else 0.0,
            guard_limit=None if args.checkpoint else UNGUARDED_SAMPLE,
        )
    servers = {}
    try:
        for name in names:
            options = TargetOptions(**CONFIGS[name][0], cores=args.cores, variant=args.variant)
            work = args.build / "container" / name
            print(f"starting {name} ...")
            servers[name] = stack.serve({"finbert": export}, work, options)
        rounds = []
        for i in range(args.rounds):
            print(f"round {i + 1} of {args.rounds}")
            rounds.append(
                measure(
                    servers,
                    "finbert",
                    texts,
                    args.clients,
                    args.window_requests,
                    args.build / "container",
                    args.perf_analyzer_stability,
                )
            )
    finally:
        for server in servers.values():
            server.stop()
    results = {
        "when": runner.now(),
        "machine": machine(args.cores),
        "source": source,
        "variant": args.variant,
        "sentences": text_source,
        "clients": args.clients,
        "window_requests": args.window_requests,
        "perf_analyzer_stability": args.perf_analyzer_stability,
        "rounds": args.rounds,
        "cores": args.cores,
        "configs": {n: CONFIGS[n][1] for n in names},
        "runs": rounds,
        "summary": summarize(rounds),
    }
    runner.write(args.out, "container", results, markdown, plot, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
