"""A/B of the local classifier's knobs under 16 closed-loop clients, interleaved rounds in one run.

    python -m benchmarks.classifier_knobs --export build/bench/export/finbert --variant int8

Configurations (what docs/serving.md argues from), one instance with all cores and no queue delay
unless named: ORT threads never spinning; spinning always (ORT's default); spinning only while a
run lasts (shipped); and the shipped one with a 500 us classifier queue delay or with two
instances of one thread each. Each round serves every configuration in turn, so slow drifts of a
shared machine fall on all of them; each round also times in-process batch-1 latency, the
one-client target's reference. Writes docs/benchmarks/classifier-knobs.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from benchmarks import runner
from benchmarks.inputs import sentences
from benchmarks.markdown import table
from benchmarks.measure import batch1_ms
from benchmarks.runner import machine
from export.runtime import DEFAULT_VARIANT, OnnxClassifier
from loadtest.traffic import closed_loop, grpc_batch_sender
from model_repository.assemble import TargetOptions, assemble, available_cores, load_config
from server import stack
from server.triton import TritonServer

CONFIGS = {  # name: (queue delay us, ORT spinning, instances)
    "no spinning": (0, "off", 1),
    "spinning always (ORT default)": (0, "always", 1),
    "spinning within runs (shipped)": (0, "runs", 1),
    "within runs + queue delay 500 us": (500, "runs", 1),
    "within runs + 2 instances x 1 thread": (0, "runs", 2),
}


def configure(repo: Path, family: str, delay_us: int, instances: int) -> None:
    """Set the classifier's queue delay and instance count in an assembled repository."""
    path = repo / f"{family}_classifier" / "config.pbtxt"
    config = load_config(path)
    config.dynamic_batching.max_queue_delay_microseconds = delay_us
    config.instance_group[0].count = instances
    path.write_text(text_format.MessageToString(config))


def served_knobs(server: TritonServer, family: str) -> tuple[int, str, int]:
    """(queue delay us, spinning, instances) of the classifier as the server loaded it."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        config = client.get_model_config(f"{family}_classifier")
    finally:
        client.close()
    delay = int(config.get("dynamic_batching", {}).get("max_queue_delay_microseconds", 0))
    spinning = config.get("parameters", {}).get("spinning", {}).get("string_value")
    return delay, spinning, sum(int(group.get("count", 1)) for group in config.get("instance_group", []))


def serve_and_measure(
    export: Path,
    family: str,
    variant: str,
    delay_us: int,
    spinning: str,
    instances: int,
    texts: list[str],
    seconds: float,
    work: Path,
) -> dict:
    cores = available_cores()
    repo = assemble(
        {family: export},
        work / "repository",
        TargetOptions("local", cores=max(1, cores // instances), variant=variant, spinning=spinning),
    )
    configure(repo, family, delay_us, instances)
    with stack.start(repo, work, started=False) as server:
        loaded = served_knobs(server, family)
        if loaded != (delay_us, spinning, instances):  # a knob that silently did not apply
            raise RuntimeError(
                f"the server loaded {loaded} (delay us, spinning, instances), not {(delay_us, spinning, instances)}"
            )
        warmup = min(2.0, seconds)
        closed_loop(grpc_batch_sender(server.grpc_url, family), texts, 4, warmup, 0)  # warm up
        many = closed_loop(grpc_batch_sender(server.grpc_url, family), texts, 16, seconds, warmup).summary()
        one = closed_loop(grpc_batch_sender(server.grpc_url, family), texts, 1, seconds / 2, warmup / 2).summary()
    return {
        "texts_per_s_16": many["texts_per_s"],
        "p99_ms_16": many["p99_ms"],
        "p50_ms_1": one["p50_ms"],
        "errors": many["errors"] + one["errors"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--export",
        type=Path,
        default=Path("build/bench/export/finbert"),
        help="an export directory (make bench leaves BERT-base's here)",
    )
    parser.add_argument("--family", default="finbert")
    parser.add_argument("--variant", default=DEFAULT_VARIANT["cpu"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sentences", type=int, default=480)
    parser.add_argument("--work", type=Path, default=Path("build/knobs"), help="repository and server logs")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/classifier-knobs.md"))
    args = parser.parse_args(argv)
    texts, source = sentences(args.sentences)
    rows = {name: [] for name in CONFIGS}
    reference = []  # in-process batch-1 p50 per round: the one-client target is this + 2 ms
    for round_ in range(args.rounds):
        model = OnnxClassifier(args.export, args.variant, threads=available_cores())
        reference.append(float(np.median(batch1_ms(model, texts[:100]))))
        del model
        print(f"round {round_ + 1} in-process batch-1 p50: {reference[-1]:.1f} ms", flush=True)
        for name, knobs in CONFIGS.items():
            rows[name].append(
                serve_and_measure(
                    args.export, args.family, args.variant, *knobs, texts=texts, seconds=args.seconds, work=args.work
                )
            )
            print(f"round {round_ + 1} {name}: {rows[name][-1]}", flush=True)
    lines = [
        f"# Classifier knobs, A/B ({runner.now()})",
        "",
        f"Machine: {machine(available_cores())}. `{args.family}` {args.variant} from `{args.export}`; {source}. "
        f"{args.rounds} interleaved rounds, {args.seconds:.0f} s at 16 clients and {args.seconds / 2:.0f} s at "
        f"1 client per configuration and round (`python -m benchmarks.classifier_knobs`).",
        "",
        "In-process ONNX Runtime, batch 1, p50 (per round): "
        + " / ".join(f"{ms:.1f}" for ms in reference)
        + " ms (threads spinning always, ORT's default).",
        "",
        *table(
            ["configuration", "texts/s @16 (per round)", "p99 ms @16", "p50 ms @1", "errors"],
            [
                [
                    name,
                    *(
                        " / ".join(f"{r[key]:.1f}" for r in results)
                        for key in ("texts_per_s_16", "p99_ms_16", "p50_ms_1")
                    ),
                    sum(r["errors"] for r in results),
                ]
                for name, results in rows.items()
            ],
        ),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
