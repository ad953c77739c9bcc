"""Client-side throughput on the test suite's tiny random-weight models (not collected by `make
test`; run: .venv/bin/python -m pytest tests/client/bench_client.py -s). It measures the client's
own path (chunking, in-flight requests, file I/O) against a server whose model costs little,
not model speed. Writes docs/benchmarks/client.md."""

import asyncio
import csv
import subprocess
import sys
import time
from pathlib import Path

from finsent import AsyncClient, Client

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    f"Row {i}: quarterly revenue {'increased' if i % 3 else 'dropped'} by {i % 89} percent" + " year on year" * (i % 4)
    for i in range(2000)
]


def best_of(n, fn):
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def test_bench(triton, tmp_path):
    rows = []
    for protocol in ("grpc", "http"):
        url = triton.grpc_url if protocol == "grpc" else triton.http_url
        for in_flight in (1, 4):
            with Client(url, protocol, max_in_flight=in_flight) as client:
                client.classify(TEXTS[:64])
                sync = best_of(3, lambda: client.classify(TEXTS))

            async def run():
                async with AsyncClient(url, protocol, max_in_flight=in_flight) as client:
                    await client.classify(TEXTS[:64])
                    started = time.perf_counter()
                    await client.classify(TEXTS)
                    return time.perf_counter() - started

            rows.append(
                (protocol, in_flight, len(TEXTS) / sync, len(TEXTS) / min(asyncio.run(run()) for _ in range(3)))
            )
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(TEXTS * 5))
    score = subprocess.run(
        [
            sys.executable,
            "-m",
            "finsent",
            "score",
            source,
            "-o",
            tmp_path / "out.csv",
            "--url",
            triton.grpc_url,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert score.returncode == 0, score.stderr
    lines = [
        "# Client throughput (tiny random-weight test models)",
        "",
        "Measured by `tests/client/bench_client.py` on the 2-core development machine (shared with other",
        "sessions), against the test suite's tritonserver serving the tiny random-weight BERT: this is the",
        "client's own path (chunking into requests of 64, in-flight requests, I/O), not model speed.",
        "",
        f"{len(TEXTS)} texts per call, best of 3, texts/s:",
        "",
        "| protocol | max_in_flight | Client | AsyncClient |",
        "|---|---|---|---|",
    ]
    lines += [f"| {p} | {n} | {s:.0f} | {a:.0f} |" for p, n, s, a in rows]
    lines += [
        "",
        f"`finsent score` on a {len(TEXTS) * 5}-row CSV (gRPC, chunks of 1024, 4 in flight):",
        "",
        "```",
        score.stdout.strip(),
        "```",
        "",
    ]
    (ROOT / "docs" / "benchmarks" / "client.md").write_text("\n".join(lines))
    print("\n".join(lines))
