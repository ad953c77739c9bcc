"""How the served-model benchmarks measure: in-process time and batch-1 latency, Triton's own
per-step statistics around a load level, and a level driven by NVIDIA's perf_analyzer."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.levels import Measured
from export.runtime import OnnxClassifier
from model_repository.assemble import STEPS, available_cores
from server.triton import TritonServer


def timed(fn, repeat: int = 1) -> float:
    """Seconds fn() took, the best of `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def batch1_ms(model: OnnxClassifier, texts: list[str]) -> list[float]:
    """Latency (ms) of each text classified alone."""
    model.logits(texts[:64])  # warm up
    single = []
    for text in texts:
        began = time.perf_counter()
        model.logits([text], batch_size=1)
        single.append((time.perf_counter() - began) * 1000)
    return single


def stub_cpu_s(server: TritonServer, model: str) -> float:
    """CPU seconds (user + system, every thread) the Python stubs of `model` have used so far."""
    from server.stack import cpu_seconds, stub_pids

    return sum(cpu_seconds(pid) for pid in stub_pids(server, model))


def triton_stats(server: TritonServer, family: str) -> dict:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = {}
        for name in [family] + [f"{family}_{s}" for s in STEPS]:
            s = client.get_inference_statistics(name)["model_stats"][0]
            inf = s["inference_stats"]
            stats[name] = {
                "count": inf["success"]["count"],
                "executions": s["execution_count"],
                "queue_ns": inf["queue"]["ns"],
                "compute_ns": inf["compute_infer"]["ns"],
                "batches": {b["batch_size"]: b["compute_infer"]["count"] for b in s.get("batch_stats", [])},
            }
        return stats
    finally:
        client.close()


def stats_delta(before: dict, after: dict) -> dict:
    out = {}
    for name, a in after.items():
        b = before[name]
        count = a["count"] - b["count"]
        out[name] = {
            "requests": count,
            "executions": a["executions"] - b["executions"],
            "queue_us_per_request": (a["queue_ns"] - b["queue_ns"]) / 1000 / max(count, 1),
            "compute_us_per_request": (a["compute_ns"] - b["compute_ns"]) / 1000 / max(count, 1),
            "batch_histogram": {
                k: v - b["batches"].get(k, 0) for k, v in a["batches"].items() if v - b["batches"].get(k, 0)
            },
        }
    return out


# perf_analyzer's -s for the benchmarks' figures. A test of a benchmark's plumbing passes a loose one
# (--perf-analyzer-stability): a busy machine can keep any few windows from agreeing, which says
# nothing about the plumbing ("Failed to obtain stable measurement" with two suites on 2 cores).
STABILITY = 100.0


def stability_argument(parser) -> None:
    parser.add_argument(
        "--perf-analyzer-stability",
        type=float,
        default=STABILITY,
        metavar="PCT",
        help=f"perf_analyzer's -s: how far 3 windows in a row may differ, in percent (default {STABILITY:g})",
    )


def perf_analyzer_level(
    server: TritonServer,
    family: str,
    texts: list[str],
    clients: int,
    duration: float,
    work: Path,
    request_count: int = 0,
    stability: float = STABILITY,
) -> Measured:
    """NVIDIA's perf_analyzer (C++ gRPC client, `clients` synchronous threads) on the ensemble: the same
    load with a lighter client than this process's Python threads, which share the cores.

    request_count: windows that end after that many requests instead of a time (for servers too slow
    for a time window to hold more than a few requests). stability: perf_analyzer's -s, how far (in
    percent) 3 windows in a row may differ and still count as one stable measurement."""
    import resource

    from server import perf_analyzer

    data = perf_analyzer.input_data(texts, work / "perf_analyzer_input.json")
    csv = work / f"perf_analyzer_{clients}.csv"
    window_ms = max(1000, int(duration * 1000 / 3))  # 3 windows (its stability check) ~ one level's time
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = perf_analyzer.run(
        [
            "-m",
            family,
            "-u",
            server.grpc_url,
            "-i",
            "grpc",
            "--sync",
            f"--input-data={data}",
            f"--concurrency-range={clients}:{clients}",
            "-s",
            f"{stability:g}",
            # -r: windows tried until 3 in a row agree within -s percent (a busy machine
            # needed more than 3: "Failed to obtain stable measurement")
            "-r",
            "10",
            *(
                [f"-p{window_ms}"]
                if not request_count
                else ["--measurement-mode=count_windows", f"--measurement-request-count={request_count}"]
            ),
            # Windows judged stable by their p99, except count windows: the p99 of a few dozen
            # requests is their slowest, which a busy machine moves by more than -s between windows
            # (two test suites at once: "Failed to obtain stable measurement"); there the mean.
            *(["--percentile=99"] if not request_count else []),
            "-f",
            str(csv),
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0 or not csv.exists():
        raise RuntimeError(f"perf_analyzer failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    header, row = [line.split(",") for line in csv.read_text().splitlines()[:2]]
    values = dict(zip(header, row))
    us = lambda key: float(values[key]) / 1000
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # requests: Triton's count, which the caller reads from its statistics (ensemble()).
    return Measured(
        clients=clients,
        texts_per_request=1,
        requests=0,
        errors=0,
        texts_per_s=round(float(values["Inferences/Second"]), 2),
        p50_ms=round(us("p50 latency"), 2),
        p95_ms=round(us("p95 latency"), 2),
        p99_ms=round(us("p99 latency"), 2),
        client="perf_analyzer",
        client_cpu_share=round(cpu / elapsed / available_cores(), 3),
    )
