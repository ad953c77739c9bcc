"""`make bench`: the Triton ensemble against the in-process limit and the common baseline, side by side.

In one run, on the same model and the same Financial PhraseBank sentences:
  (a) in-process ONNX Runtime on the exported file, length-sorted batches of 32 (the limit),
      plus batch-1 latency and the batching alternatives the classifier could use;
  (b) the Triton ensemble over gRPC: 1, 4 and 16 concurrent single-text clients, and one
      client sending 64-text requests; Triton's per-step queue/compute times and the
      classifier's batch-size histogram from its statistics API;
  (c) benchmarks/baseline_server.py (Starlette + transformers.pipeline) at 1 and 16 clients.
Writes docs/benchmarks/serving.{md,json,png}. Without FINBERT=/DISTILBERT= it uses random-weight
BERT-base / DistilBERT-base checkpoints (real vocab): speed is the architecture's, not the weights'.

    python -m benchmarks.serving --variants fp32,int8 --duration 15
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import levels, runner
from benchmarks.inputs import UNGUARDED_SAMPLE, checkpoint, sentences
from benchmarks.levels import Level, Measured
from benchmarks.measure import batch1_ms, perf_analyzer_level, stability_argument, stats_delta, timed, triton_stats
from benchmarks.runner import client_counts, machine, refuse, shared_arguments, unknown
from benchmarks.serving_report import SPLIT_RULE
from export.facts import FAMILIES, FactsError
from export.onnx import SourceUnavailable, export_model, resolve_source
from export.optimize import MIN_AGREEMENT, build_variants
from export.runtime import VARIANTS, OnnxClassifier
from loadtest.traffic import closed_loop, grpc_batch_sender, http_batch_sender
from model_repository.assemble import STEPS, TargetOptions
from model_repository.standalone import python_model
from server import stack
from server.triton import TritonServer, free_ports


def in_process(export_dir: Path, variant: str, texts: list[str], cores: int) -> dict:
    """The limit (length-sorted batches of 32), batch-1 latency, and batching alternatives."""
    model = OnnxClassifier(export_dir, variant, threads=cores)
    result = reference(model, texts)
    # What ORT's thread spinning (on in-process, and in the served classifier while a run lasts) buys at batch 1.
    quiet = OnnxClassifier(export_dir, variant, threads=cores, allow_spinning=False)
    result["batch1_no_spinning_p50_ms"] = float(np.median(batch1_ms(quiet, texts[:100])))
    result["padded32_texts_per_s"] = len(texts) / timed(lambda: model.logits(texts, batch_size=32, sort=False))
    return result


def reference(model: OnnxClassifier, texts: list[str]) -> dict:
    """The two figures the targets are relative to: the limit's texts/s and batch-1 p50."""
    single = batch1_ms(model, texts[:100])
    return {
        "limit_texts_per_s": len(texts) / timed(lambda: model.logits(texts, batch_size=32, sort=True)),
        "batch1_p50_ms": float(np.median(single)),
        "batch1_texts_per_s": 1000 / float(np.mean(single)),
    }


def remeasure(entry: dict, export_dir: Path, variant: str, texts: list[str], cores: int) -> None:
    """Measure the references again after the ensemble's levels; the targets use the mean of both.

    One snapshot of a shared machine moved a ratio by 0.08 between runs; before + after brackets
    the ensemble's levels in time, so a drift of the machine falls on both sides of the ratio.
    """
    after = reference(OnnxClassifier(export_dir, variant, threads=cores), texts)
    for key, value in after.items():
        entry[f"{key}_runs"] = [entry[key], value]
        entry[key] = (entry[key] + value) / 2


def server_groups(export_dir: Path, variant: str, texts: list[str], cores: int) -> dict:
    """What the classifier does with a batch of 16 mixed-length texts, per split rule (texts/s)."""
    served = TargetOptions()  # the served classifier's run knobs
    rules = {"every text alone": 0, SPLIT_RULE: served.run_overhead_tokens, "one run padded to longest": 10**6}
    length_groups = python_model("classifier").length_groups  # the served classifier's own function
    model = OnnxClassifier(export_dir, variant, threads=cores)
    encodings = model.encode(texts)
    lengths = np.array([len(e.ids) for e in encodings])
    out = {}
    for rule, overhead in rules.items():

        def run_all():
            for start in range(0, len(encodings) - 15, 16):
                batch = np.arange(start, start + 16)
                for group in length_groups(lengths[batch], overhead, served.max_tokens_per_run):
                    model.run([encodings[i] for i in batch[group]])

        out[rule] = (len(encodings) // 16 * 16) / timed(run_all)
    return out


def process_cpu(server: TritonServer, family: str) -> dict[str, float]:
    """CPU seconds used so far by tritonserver, each Python step's stub, and this process (the load)."""
    from server.health import python_stubs

    cpu = stack.cpu_seconds
    out = {"tritonserver (frontend, ensemble)": cpu(server.process.pid)}
    stubs = python_stubs(server.process.pid)
    for step in STEPS:
        out[f"{step} stub"] = sum(cpu(pid) for pid, model in stubs.items() if model == f"{family}_{step}")
    out["load generator (bench client)"] = cpu(os.getpid())
    return out


def cpu_share(before: dict[str, float], after: dict[str, float], seconds: float, cores: int) -> dict[str, float]:
    """process_cpu() deltas as a share of all cores over `seconds`."""
    return {name: (after[name] - before[name]) / seconds / cores for name in after}


def ensemble(export_dir: Path, family: str, variant: str, texts: list[str], args, work: Path) -> dict[Level, Measured]:
    server = stack.serve(
        {family: export_dir}, work, TargetOptions("local", cores=args.cores, variant=variant), started=False
    )
    measured = {}
    with server:
        closed_loop(grpc_batch_sender(server.grpc_url, family), texts, 4, 2, 0)  # warm up every step
        for level in [Level(c) for c in args.clients] + [Level(1, 64)]:
            before, began, cpu_before = triton_stats(server, family), time.perf_counter(), process_cpu(server, family)
            result = closed_loop(
                grpc_batch_sender(server.grpc_url, family),
                texts,
                level.clients,
                args.duration,
                args.warmup,
                texts_per_request=level.texts_per_request,
            )
            cpu_after, window = process_cpu(server, family), time.perf_counter() - began
            # CPU over warm-up + window, as a share of the cores: where the machine's time went. The
            # window is the run's own, which outlasts duration + warm-up by its last requests.
            measured[level] = Measured(
                **result.summary(),
                steps=stats_delta(before, triton_stats(server, family)),
                cpu_share=cpu_share(cpu_before, cpu_after, window, args.cores),
            )
            say(f"triton {family} {variant} {level.key}", measured[level])
        for clients in args.perf_analyzer_clients:
            level = Level(clients, client="perf_analyzer")
            before, cpu_before, began = triton_stats(server, family), process_cpu(server, family), time.perf_counter()
            figures = measured[level] = perf_analyzer_level(
                server, family, texts, clients, args.duration, work, stability=args.perf_analyzer_stability
            )
            cpu_after, window = process_cpu(server, family), time.perf_counter() - began
            share = cpu_share(cpu_before, cpu_after, window, args.cores)
            share["load generator (bench client)"] = figures.client_cpu_share  # perf_analyzer's own
            steps = stats_delta(before, triton_stats(server, family))
            figures.steps, figures.cpu_share, figures.requests = steps, share, steps[family]["requests"]
            say(f"triton {family} {variant} {level.key}", figures)
    return measured


def say(what: str, figures: Measured) -> None:
    print(f"  {what}: {figures.texts_per_s:.1f} texts/s, p50 {figures.p50_ms:.1f} ms, p99 {figures.p99_ms:.1f} ms")


def baseline(source: str, texts: list[str], args, work: Path) -> dict[Level, Measured]:
    port = free_ports(1)[0]
    env = {**os.environ, "BASELINE_MODEL": source}
    log = open(work / "baseline.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.baseline_server:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                http_batch_sender(url)()[0](["warm up"])
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the baseline server did not start; see {work / 'baseline.log'}")
                time.sleep(0.5)
        measured = {}
        for clients in args.baseline_clients:
            result = closed_loop(http_batch_sender(url), texts, clients, args.duration, args.warmup)
            measured[Level(clients)] = Measured(**result.summary())
            print(f"  baseline {clients} clients: {result.texts_per_s:.1f} texts/s, p50 {result.percentile(50):.1f} ms")
        return measured
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--finbert", help="checkpoint (default: random-weight BERT-base)")
    parser.add_argument("--distilbert", help="checkpoint (default: random-weight DistilBERT-base)")
    parser.add_argument("--variants", default="fp32,int8")
    parser.add_argument("--clients", default="1,4,16", type=client_counts)
    stability_argument(parser)
    parser.add_argument(
        "--perf-analyzer-clients",
        default="1,16",
        type=client_counts,
        help="levels driven by NVIDIA's perf_analyzer instead of Python clients ('' for none)",
    )
    parser.add_argument("--baseline-clients", default="1,16", type=client_counts)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per load level")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--sentences", type=int, default=480, help="sentences for the in-process runs and the load")
    parser.add_argument(
        "--min-agreement", type=float, default=MIN_AGREEMENT, help="variant accuracy guard (export.optimize)"
    )
    shared_arguments(parser)
    args = parser.parse_args(argv)
    models, variants = args.models.split(","), args.variants.split(",")
    refuse(
        parser,
        unknown("--models", models, FAMILIES),
        unknown("--variants", variants, VARIANTS),
        (args.duration <= 0 or args.warmup < 0) and "--duration must be positive, --warmup at least 0",
        (args.sentences < 1 or args.cores < 1) and "--sentences and --cores must be at least 1",
        not 0 <= args.min_agreement <= 1 and "--min-agreement must be between 0 and 1",
    )
    texts, text_source = sentences(args.sentences)
    results = {
        "when": runner.now(),
        "machine": machine(args.cores),
        "sentences": text_source,
        "duration_s": args.duration,
        "models": {},
    }
    sources = {family: getattr(args, family) for family in models}
    try:  # every export before any measurement: a checkpoint that cannot be served fails first
        for given in filter(None, sources.values()):
            resolve_source(given)  # a wrong directory fails before the other model's export
        sources = {family: checkpoint(family, source, args.build) for family, source in sources.items()}
        exports = {
            family: export_model(source, family, args.build / "export" / family).path
            for family, source in sources.items()
        }
    except (SourceUnavailable, FactsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for family, export_dir in exports.items():
        # Random weights give near-tied logits, so agreement with fp32 says nothing about a
        # variant's accuracy there: the guard applies to real checkpoints only.
        guard = args.min_agreement if getattr(args, family) else 0.0
        built = build_variants(
            export_dir,
            [v for v in variants if v != "fp32"],
            min_agreement=guard,
            guard_limit=None if guard else UNGUARDED_SAMPLE,
        )
        entry = results["models"][family] = {
            "source": sources[family],
            "variants": {},
            "guard": {v: {k: r[k] for k in ("agreement", "disagreements")} for v, r in built.items()},
            "guard_applied": guard,
        }
        for variant in variants:
            print(f"{family} {variant}: in-process ...")
            entry["variants"][variant] = {"in_process": in_process(export_dir, variant, texts, args.cores)}
            entry["variants"][variant]["classifier_split"] = server_groups(export_dir, variant, texts, args.cores)
            entry["variants"][variant]["triton"] = levels.dump(
                ensemble(export_dir, family, variant, texts, args, args.build / "run" / family / variant)
            )
            remeasure(entry["variants"][variant]["in_process"], export_dir, variant, texts, args.cores)
        if args.baseline_clients:
            print(f"{family}: baseline (Starlette + transformers.pipeline) ...")
            entry["baseline"] = levels.dump(baseline(sources[family], texts, args, (args.build / "run" / family)))
    from benchmarks import serving_report

    runner.write(args.out, "serving", results, serving_report.markdown, serving_report.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
