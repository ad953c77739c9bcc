"""`make soak`: a long run at about 70% of the measured maximum throughput.

1. Ramp: closed-loop clients (4, 8, 16) for a few seconds each; the best requests/s is the maximum.
2. Soak: `--clients` threads send single-text requests paced to `--load` x that maximum for
   `--duration` seconds (a thread behind schedule sends at once, so a stall is followed by a
   catch-up: it shows in the throughput plot).
   Tritonserver's resident memory (with its Python stubs) is sampled every few seconds.
Pass: 0 errors, RSS growth under 5% (soak start to end), p99 of the last window not above
1.5x the first's plus 5 ms (windows: the first and last minute, or a quarter of a short run).
Writes docs/benchmarks/soak.{md,json,png}; the server is run as `python -m server` runs it
(explicit model control, watchdog) on the test suite's tiny random-weight models.

    python -m benchmarks.soak --duration 600
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import runner
from benchmarks.markdown import table
from export.facts import FAMILIES
from loadtest.random_models import tiny_repository
from loadtest.traffic import TEXTS, Traffic, grpc_sender
from server import health, stack
from server.stack import server_rss_mb
from server.triton import TritonServer

P99_FACTOR, P99_SLACK_MS, RSS_GROWTH = 1.5, 5.0, 0.05


def max_throughput(server: TritonServer, model: str, seconds: float = 4.0, levels=(4, 8, 16)) -> dict:
    """Closed-loop requests/s at each concurrency; the best is the maximum."""
    rates = {}
    for clients in levels:
        traffic = Traffic(grpc_sender(server.grpc_url, model), clients).start()
        time.sleep(1.0)  # warm-up, not counted
        start = time.monotonic()
        time.sleep(seconds)
        calls = traffic.stop()
        done = [c for c in calls if start <= c.ended <= start + seconds and not c.error]
        rates[clients] = len(done) / seconds
    return rates


def paced(
    server: TritonServer,
    model: str,
    rate: float,
    duration_s: float,
    clients: int = 16,
    rss_every_s: float = 5.0,
    progress=None,
) -> dict:
    """Send `rate` requests/s for duration_s; every request's (start, latency, error) and RSS samples."""
    import tritonclient.grpc as grpcclient

    start = time.monotonic() + 0.5
    records, lock, rss = [], threading.Lock(), []

    def client(i: int) -> None:
        conn = grpcclient.InferenceServerClient(server.grpc_url)
        k = 0
        try:
            while True:
                offset = (k * clients + i) / rate  # request k * clients + i of the schedule
                if offset >= duration_s:
                    return
                wait = start + offset - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[TEXTS[k % len(TEXTS)].encode()]], dtype=np.object_))
                began = time.monotonic()
                try:
                    conn.infer(model, [tensor], client_timeout=30)
                    error = None
                except Exception as exc:  # counted: the soak must see none
                    error = f"{type(exc).__name__}: {exc}"[:200]
                with lock:
                    records.append((began - start, (time.monotonic() - began) * 1000, error))
                k += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        rss.append((round(time.monotonic() - start, 1), round(server_rss_mb(server), 1)))
        if progress:
            progress(min(time.monotonic() - start, duration_s))
        for thread in threads:
            thread.join(rss_every_s / len(threads))
    rss.append((round(time.monotonic() - start, 1), round(server_rss_mb(server), 1)))
    # Every request the schedule holds (the threads' own rule): each one is sent, late or not.
    scheduled = sum(j / rate < duration_s for j in range(int(rate * duration_s) + 2))
    return {"records": records, "rss": rss, "scheduled": scheduled}


def summarize(
    run: dict, duration_s: float, rate: float, p99_factor: float = P99_FACTOR, p99_slack_ms: float = P99_SLACK_MS
) -> dict:
    records = sorted(run["records"])
    window = min(60.0, duration_s / 4)
    lat = lambda a, b: [ms for t, ms, e in records if a <= t < b and e is None]
    first, last = lat(0, window), lat(duration_s - window, duration_s)
    p99 = lambda xs: round(float(np.percentile(xs, 99)), 2) if xs else float("nan")
    rss = [mb for t, mb in run["rss"] if t >= 0]
    errors: dict[str, int] = {}
    for _, _, e in records:
        if e:
            errors[e] = errors.get(e, 0) + 1
    windows = []
    for a in np.arange(0, duration_s, 10.0):
        xs = lat(a, a + 10)
        windows.append(
            {
                "t": float(a),
                "requests_per_s": len(xs) / 10,
                "p50_ms": round(float(np.median(xs)), 2) if xs else None,
                "p99_ms": p99(xs) if xs else None,
            }
        )
    result = {
        "duration_s": duration_s,
        "target_per_s": round(rate, 1),
        "requests": len(records),
        "scheduled": run["scheduled"],
        "achieved_per_s": round(len(records) / duration_s, 1),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "window_s": window,
        "p99_first_ms": p99(first),
        "p99_last_ms": p99(last),
        "p50_ms": round(float(np.median(lat(0, duration_s))), 2) if records else None,
        "rss_start_mb": rss[0] if rss else None,
        "rss_end_mb": rss[-1] if rss else None,
        "rss_max_mb": max(rss) if rss else None,
        "rss_growth": round((rss[-1] - rss[0]) / rss[0], 4) if rss else None,
        "windows": windows,
        "rss": run["rss"],
    }
    result["p99_stable"] = result["p99_last_ms"] <= p99_factor * result["p99_first_ms"] + p99_slack_ms
    result["passed"] = result["errors"] == 0 and result["rss_growth"] < RSS_GROWTH and result["p99_stable"]
    return result


def soak(
    server: TritonServer,
    model: str = "finbert",
    duration_s: float = 600,
    load: float = 0.7,
    clients: int = 16,
    ramp_s: float = 4.0,
    progress=None,
    **p99_rule,
) -> dict:
    rates = max_throughput(server, model, ramp_s)
    best = max(rates.values())
    run = paced(server, model, load * best, duration_s, clients, progress=progress)
    result = summarize(run, duration_s, load * best, **p99_rule)
    result.update(
        model=model,
        clients=clients,
        load=load,
        max_per_s=round(best, 1),
        ramp={str(k): round(v, 1) for k, v in rates.items()},
    )
    return result


def markdown(r: dict) -> str:
    verdict = "**passed**" if r["passed"] else "**FAILED**"
    return "\n".join(
        [
            f"# Soak ({r['date']})",
            "",
            f"Machine: {r['machine']}. `{r['model']}`, the test suite's tiny random-weight model, served as "
            f"`python -m server` serves it (explicit model control, watchdog every 1 s). Made by `make soak "
            f"DURATION={r['duration_s']:.0f}` (benchmarks/soak.py).",
            "",
            f"Maximum measured first (closed loop, requests/s by clients: {r['ramp']}): {r['max_per_s']}/s. "
            f"Soak: {r['clients']} threads paced to {r['load']:.0%} of it, {r['target_per_s']}/s, one text per request, "
            f"for {r['duration_s']:.0f} s. Verdict: {verdict} (0 errors, RSS growth < {RSS_GROWTH:.0%}, "
            f"p99 of the last {r['window_s']:.0f} s ≤ {P99_FACTOR}× the first's + {P99_SLACK_MS:.0f} ms).",
            "",
            *table(
                ["", ""],
                [
                    ["requests", f"{r['requests']} ({r['achieved_per_s']}/s achieved)"],
                    ["errors", r["errors"]],
                    ["p50", f"{r['p50_ms']} ms"],
                    [
                        f"p99, first {r['window_s']:.0f} s → last {r['window_s']:.0f} s",
                        f"{r['p99_first_ms']} ms → {r['p99_last_ms']} ms",
                    ],
                    [
                        "server RSS (tritonserver + stubs), start → end (max)",
                        f"{r['rss_start_mb']} → {r['rss_end_mb']} MB ({r['rss_growth']:+.1%}; max {r['rss_max_mb']} MB)",
                    ],
                ],
            ),
            "",
            "The machine's 2 cores are shared with other work (and with the 16 client threads): p99 moves "
            "between 10 s windows, and the first seconds, while the clients open their connections, fall "
            "behind and then catch up (the throughput plot's first two points).",
            "",
            "![throughput, p99 and RSS over the soak](soak.png)",
            "",
        ]
    )


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    w = [x for x in r["windows"] if x["p99_ms"] is not None]
    axes[0].plot([x["t"] for x in w], [x["requests_per_s"] for x in w], marker=".")
    axes[0].axhline(r["target_per_s"], color="grey", ls="--", lw=1, label="target")
    axes[0].set_ylabel("requests/s")
    axes[0].legend(loc="lower right")
    axes[1].plot([x["t"] for x in w], [x["p99_ms"] for x in w], marker=".", label="p99")
    axes[1].plot([x["t"] for x in w], [x["p50_ms"] for x in w], marker=".", label="p50")
    axes[1].set_ylabel("latency, ms (10 s windows)")
    axes[1].legend(loc="upper right")
    axes[2].plot([t for t, _ in r["rss"]], [mb for _, mb in r["rss"]])
    axes[2].set_ylabel("server RSS, MB")
    axes[2].set_xlabel("seconds into the soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of soak (default 600)")
    parser.add_argument("--load", type=float, default=0.7, help="fraction of the measured maximum (default 0.7)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--build", type=Path, default=Path("build/faults"))
    parser.add_argument("--out", type=Path, default=runner.REPORTS)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.load <= 0 or args.clients < 1:  # before the server starts
        parser.error("--duration and --load must be positive, --clients at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tqdm import tqdm

    server = stack.start(tiny_repository(args.build), args.build / "soak", admin=True)
    watchdog = health.Watchdog(server.http_url, list(FAMILIES), server.admin_key, 1.0)
    watchdog.start()
    try:
        with tqdm(total=int(args.duration), unit="s", desc="soak") as bar:
            result = soak(
                server,
                duration_s=args.duration,
                load=args.load,
                clients=args.clients,
                progress=lambda t: bar.update(int(t) - bar.n),
            )
    finally:
        watchdog.stop()
        server.stop()
    result.update(date=runner.date(), machine=runner.shared_machine())
    written = runner.write(args.out, "soak", result, markdown, plot, indent=1, echo=False)
    print(
        f"{'passed' if result['passed'] else 'FAILED'}: {result['errors']} errors, RSS {result['rss_growth']:+.1%}, "
        f"p99 {result['p99_first_ms']} -> {result['p99_last_ms']} ms; wrote {written}"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
