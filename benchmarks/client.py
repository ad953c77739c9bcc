"""The client's own throughput: `Client` and `AsyncClient` (gRPC and HTTP, 1 and 4 requests in flight)
and `finsent score` on a CSV, against a server whose model costs little (the test suite's tiny
random-weight models, loadtest.random_models): chunking into requests, in-flight requests and file
I/O, not model speed. Writes docs/benchmarks/client.md.

    python -m benchmarks.client                      # tiny models on a tritonserver of its own
    python -m benchmarks.client --grpc localhost:8001 --http localhost:8000   # a running server
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import runner
from benchmarks.markdown import table
from benchmarks.measure import timed
from finsent import AsyncClient, Client
from loadtest.random_models import serve_tiny

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    f"Row {i}: quarterly revenue {'increased' if i % 3 else 'dropped'} by {i % 89} percent" + " year on year" * (i % 4)
    for i in range(2000)
]
IN_FLIGHT = (1, 4)
SCORE_COPIES = 5  # finsent score's CSV: the texts this many times over


def calls(urls: dict[str, str], texts: list[str], repeat: int) -> list[tuple[str, int, float, float]]:
    """(protocol, max_in_flight, Client texts/s, AsyncClient texts/s), the best of `repeat` calls each."""
    rows = []
    for protocol, url in urls.items():
        for in_flight in IN_FLIGHT:
            with Client(url, protocol, max_in_flight=in_flight) as client:
                client.classify(texts[:64])  # warm up
                sync = timed(lambda: client.classify(texts), repeat)

            async def best():
                async with AsyncClient(url, protocol, max_in_flight=in_flight) as client:
                    await client.classify(texts[:64])
                    times = []
                    for _ in range(repeat):
                        began = time.perf_counter()
                        await client.classify(texts)
                        times.append(time.perf_counter() - began)
                    return min(times)

            rows.append((protocol, in_flight, len(texts) / sync, len(texts) / asyncio.run(best())))
    return rows


def score(grpc_url: str, texts: list[str], work: Path) -> str:
    """`finsent score`'s summary of a CSV of the texts SCORE_COPIES times over."""
    source = work / "in.csv"
    with open(source, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(texts * SCORE_COPIES))
    command = [sys.executable, "-m", "finsent", "score", source, "-o", work / "out.csv", "--url", grpc_url]
    done = subprocess.run([*map(str, command), "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"finsent score failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def markdown(rows, texts: int, repeat: int, summary: str) -> str:
    lines = [
        "# Client throughput (tiny random-weight test models)",
        "",
        "Measured by `python -m benchmarks.client` on the 2-core development machine (shared with other",
        "sessions), against a tritonserver serving the test suite's tiny random-weight models: this is the",
        "client's own path (chunking into requests of 64, in-flight requests, I/O), not model speed.",
        "",
        f"{texts} texts per call, best of {repeat}, texts/s:",
        "",
        *table(
            ["protocol", "max_in_flight", "Client", "AsyncClient"],
            [(p, n, f"{s:.0f}", f"{a:.0f}") for p, n, s, a in rows],
        ),
        "",
        f"`finsent score` on a {texts * SCORE_COPIES}-row CSV (gRPC, chunks of 1024, 4 in flight):",
        "",
        "```",
        summary,
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grpc", help="a running server's gRPC address (with --http); default: a server of its own")
    parser.add_argument("--http", help="the same server's HTTP address")
    parser.add_argument("--texts", type=int, default=len(TEXTS), help=f"texts per call (at most {len(TEXTS)})")
    parser.add_argument("--repeat", type=int, default=3, help="calls per configuration (the best is reported)")
    parser.add_argument("--build", type=Path, default=Path("build/bench-client"), help="the tiny models and server")
    parser.add_argument("--out", type=Path, default=runner.REPORTS / "client.md")
    args = parser.parse_args(argv)
    runner.refuse(
        parser,
        bool(args.grpc) != bool(args.http) and "--grpc and --http go together (one running server)",
        not 1 <= args.texts <= len(TEXTS) and f"--texts must be between 1 and {len(TEXTS)}",
        args.repeat < 1 and "--repeat must be at least 1",
    )
    texts = TEXTS[: args.texts]
    server = None if args.grpc else serve_tiny(args.build)
    try:
        urls = {"grpc": args.grpc or server.grpc_url, "http": args.http or server.http_url}
        rows = calls(urls, texts, args.repeat)
        with tempfile.TemporaryDirectory() as work:
            summary = score(urls["grpc"], texts, Path(work))
    finally:
        if server:
            server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(rows, len(texts), args.repeat, summary))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
