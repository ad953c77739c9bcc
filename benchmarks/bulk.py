"""Bulk scoring (issue 19): how many texts/s one `finsent score` process pushes against a local
tritonserver, against what that server serves to several such processes at once (is the client the
bottleneck, and when?), and the speed-up from exact-text de-duplication on a corpus with a known
duplicate share. Writes docs/benchmarks/bulk.md and bulk.json.

    .venv/bin/python -m benchmarks.bulk                       # tiny random-weight DistilBERT, ~1 minute
    .venv/bin/python -m benchmarks.bulk --size tiny --size base   # and DistilBERT-base: the server's cost

Random-weight checkpoints with the real vocabulary (export.random_checkpoint): speed is the
architecture's, not the weights'. Every process is a real `finsent score` on a CSV (gRPC, chunks
of 1024, 4 requests in flight), timed from start to exit; "client CPU" is that process's user+sys
time over its wall time (1.0 = one core busy: the client is the bottleneck).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import runner
from benchmarks.markdown import table

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"tiny": 30000, "base": 1200}  # seconds a run on 2 cores
ESTIMATE_ROWS = 10000  # fewer: the client's CPU per text is mostly start-up noise


def corpus(path: Path, rows: int, duplicate_share: float) -> int:
    """`rows` headlines of which `duplicate_share` repeat an earlier one (copies spread over the file);
    returns the number of distinct texts."""
    distinct = max(1, round(rows * (1 - duplicate_share)))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(rows):
            j = i if i < distinct else (i * 7919) % distinct
            writer.writerow(
                [
                    i,
                    f"Headline {j}: quarterly revenue {'rose' if j % 3 else 'fell'} {j % 97} percent"
                    + " as analysts expected" * (j % 3),
                ]
            )
    return distinct


def run_score(url: str, source: Path, outputs: list[Path], shards: int, dedup: bool, in_flight: int = 4) -> dict:
    """`shards` finsent score processes at once (shard k of `shards`; 1: unsharded); wall time and CPU."""
    procs = []
    started = time.perf_counter()
    for k, out in enumerate(outputs):  # --overwrite: the benchmark's own files, even of a run killed earlier
        cmd = [
            sys.executable,
            "-m",
            "finsent",
            "score",
            str(source),
            "-o",
            str(out),
            "--url",
            url,
            "--no-progress",
            "--overwrite",
            "--max-in-flight",
            str(in_flight),
            "--timeout",
            "600",  # 4 x 4 x 64 texts queued on a slow CPU model
            *(["--shard", f"{k}/{shards}"] if shards > 1 else []),
            *([] if dedup else ["--no-dedup"]),
        ]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    cpu, in_loop = 0.0, []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"finsent score failed: {proc.stderr.read()}")
        cpu += usage.ru_utime + usage.ru_stime
        # the summary's own rate: scoring only, without the process's start-up (imports, connecting)
        in_loop.append(float(re.search(r"([0-9.]+) texts/s this run", proc.stdout.read()).group(1)))
    wall = time.perf_counter() - started
    return {
        "processes": len(outputs),
        "in_flight": in_flight,
        "seconds": wall,
        "client_cpu_seconds": cpu,
        "client_cpu_per_process": cpu / len(outputs) / wall,
        "scoring_texts_per_s": sum(in_loop),
    }


def measure(url: str, work: Path, rows: int, duplicate_share: float, processes: list[int]) -> dict:
    plain = work / "plain.csv"
    corpus(plain, rows, 0.0)
    warm = work / "warm.csv"  # the first requests of a fresh server are slow (session start-up)
    corpus(warm, 256, 0.0)
    startup = run_score(url, warm, [work / "warm.scored.csv"], 1, dedup=False)["client_cpu_seconds"]
    scaling = []
    for n, in_flight in [(n, 4) for n in processes] + [(1, 16)]:
        result = run_score(
            url, plain, [work / f"out-{n}-{k}.csv" for k in range(n)], n, dedup=False, in_flight=in_flight
        )
        result["texts_per_s"] = rows / result["seconds"]
        # the client's CPU per text past start-up (the warm-up run's 256 rows stand for the start-up)
        result["client_cpu_us_per_text"] = (
            1e6 * max(0.0, result["client_cpu_seconds"] - n * startup) / max(1, rows - n * 256)
        )
        scaling.append(result)
        print(
            f"  {n} process(es), {in_flight} in flight: {result['texts_per_s']:.0f} texts/s start to exit, "
            f"{result['scoring_texts_per_s']:.0f} while scoring, client CPU {result['client_cpu_per_process']:.2f}"
            " per process",
            flush=True,
        )
    dup = work / "dup.csv"
    distinct = corpus(dup, rows, duplicate_share)
    dedup = {}
    for name, on in (("without", False), ("with", True)):
        result = run_score(url, dup, [work / f"dup-{name}.csv"], 1, dedup=on)
        result["texts_per_s"] = rows / result["seconds"]
        dedup[name] = result
        print(
            f"  {rows} rows, {distinct} distinct, de-duplication {name}: {result['scoring_texts_per_s']:.0f} rows/s "
            "while scoring",
            flush=True,
        )
    return {
        "rows": rows,
        "scaling": scaling,
        "dedup": {
            "duplicate_share": 1 - distinct / rows,
            "distinct": distinct,
            **dedup,
            "speedup": dedup["with"]["scoring_texts_per_s"] / dedup["without"]["scoring_texts_per_s"],
        },
    }


def markdown(saved: dict) -> str:
    """bulk.md from bulk.json: {"meta": how it ran, "results": by checkpoint size}."""
    results, meta = saved["results"], saved["meta"]
    lines = [
        "# Bulk scoring: one `finsent score` process against the server, and de-duplication",
        "",
        f"`{meta['command']}` on {meta['machine']}, {meta['date']}. Generated by benchmarks/bulk.py.",
        "Each row: real `finsent score` processes on a CSV of unique headlines (`--no-dedup`), gRPC to a local",
        "tritonserver serving random-weight checkpoints (the architecture's speed, not the weights'); N",
        "processes split the file with `--shard k/N` and run at once. Client CPU: the process's user+sys",
        'time over its wall time (1.0: one core busy, the client is the bottleneck). "While scoring": the',
        "process's own summary rate (`texts/s this run`, without start-up: imports, connecting); for several",
        "processes the sum of theirs, which overstates when they do not all run the whole time.",
        f"Load average (1 min) before and after: {meta['load']}: the machine is shared, so figures move",
        "between runs by tens of percent; the ratios are what to read.",
        "",
    ]
    for size, r in results.items():
        best = max(s["texts_per_s"] for s in r["scaling"])
        one = r["scaling"][0]
        lines += [
            f"## {size} DistilBERT ({r['rows']} rows)",
            "",
            *table(
                [
                    "processes",
                    "requests in flight each",
                    "texts/s, start to exit (all together)",
                    "vs 1 process",
                    "texts/s while scoring",
                    "client CPU per process",
                    "client CPU per text",
                ],
                [
                    [
                        s["processes"],
                        s["in_flight"],
                        f"{s['texts_per_s']:.0f}",
                        f"{s['texts_per_s'] / one['texts_per_s']:.2f}x",
                        f"{s['scoring_texts_per_s']:.0f}",
                        f"{s['client_cpu_per_process']:.2f}",
                        f"{s['client_cpu_us_per_text']:.0f} µs",
                    ]
                    for s in r["scaling"]
                ],
            ),
        ]
        d = r["dedup"]
        busiest = max(s["client_cpu_per_process"] for s in r["scaling"])
        verdict = (
            "so the client is the bottleneck"
            if busiest > 0.8
            else f"while using at most {busiest:.2f} of a core: the client is not the bottleneck here, the server "
            "(on the same cores) is"
        )
        per_text = one["client_cpu_us_per_text"]
        ceiling = (
            f" At {per_text:.0f} µs of client CPU per text, one process could push at most about "
            f"{1e6 / per_text:.0f} texts/s (one core busy): a server that serves more than that needs more "
            "processes (`bulk.parallelism`) per replica."
            if per_text > 0 and r["rows"] >= ESTIMATE_ROWS
            else f" (Under {ESTIMATE_ROWS} rows, start-up dominates the client's CPU: no per-text estimate.)"
        )
        lines += [
            "",
            f"One process pushes {one['texts_per_s']:.0f} texts/s, {100 * one['texts_per_s'] / best:.0f}% of the "
            f"best the server served here ({best:.0f} texts/s, start to exit), {verdict}.{ceiling}",
            "",
            f"De-duplication, one process, {r['rows']} rows of which {100 * d['duplicate_share']:.0f}% repeat an "
            f"earlier row ({d['distinct']} distinct), rows/s while scoring: {d['without']['scoring_texts_per_s']:.0f} "
            f"without, {d['with']['scoring_texts_per_s']:.0f} with: **{d['speedup']:.2f}x** (the ideal, when only scoring costs, "
            f"is {1 / (1 - d['duplicate_share']):.1f}x).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", choices=("tiny", "base"), help="checkpoint size(s) (default tiny)")
    parser.add_argument("--rows", type=int, help=f"rows per corpus (default {ROWS})")
    parser.add_argument(
        "--duplicate-share", type=float, default=0.75, help="of the de-duplication corpus (default 0.75)"
    )
    parser.add_argument("--processes", default="1,2,4", help="numbers of processes at once (default 1,2,4)")
    parser.add_argument("--build", type=Path, default=Path("build/bench-bulk"))
    parser.add_argument("--out", type=Path, default=runner.REPORTS)
    args = parser.parse_args(argv)
    if not 0 <= args.duplicate_share < 1 or args.rows is not None and args.rows < 1:
        parser.error("--rows must be 1 or more and --duplicate-share in [0, 1)")
    try:
        processes = [int(n) for n in args.processes.split(",")]
    except ValueError:
        processes = [0]
    if min(processes) < 1:
        parser.error(f"--processes: comma-separated positive integers, got {args.processes!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from export import random_checkpoint
    from export.onnx import export_model
    from model_repository.assemble import TargetOptions
    from server import stack

    results, load_before = {}, os.getloadavg()[0]
    for size in args.size or ["tiny"]:
        work = args.build / size
        checkpoint = random_checkpoint.build("distilbert", work / "checkpoint", size=size)
        export = export_model(str(checkpoint), "distilbert", work / "export", log=lambda *_: None).path
        server = stack.serve({"distilbert": export}, work / "triton", TargetOptions("local"))
        try:
            print(f"{size}: serving at {server.grpc_url}", flush=True)
            results[size] = measure(server.grpc_url, work, args.rows or ROWS[size], args.duplicate_share, processes)
        finally:
            server.stop()
    load = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    meta = {
        "command": "python -m benchmarks.bulk " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load": load,
        "machine": f"{os.cpu_count()} CPUs (shared with other sessions)",
        "date": runner.date(),
    }
    print(f"wrote {runner.write(args.out, 'bulk', {'meta': meta, 'results': results}, markdown, echo=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
