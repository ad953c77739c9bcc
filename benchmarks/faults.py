"""`make faults`: what clients see when a Python stub dies, and when the server restarts, under load.

  stub     16 clients classify one text at a time; the tokenizer's Python-backend stub is SIGKILLed.
           The watchdog (server/health.py, as `python -m server` runs it) must notice it with a real
           inference and reload the model. Measured: time to healed, failed requests, how long the
           inference health check (the k8s readiness probe) said "unready".
  restart  16 finsent.Client callers (retries on UNAVAILABLE) while tritonserver is stopped with
           SIGTERM and started again on the same ports: failures that survive the client's retries.

Both on the test suite's tiny random-weight models (a stub's restart time is the tokenizer's, not the
classifier's). Writes docs/benchmarks/faults.{md,json,png}.

    python -m benchmarks.faults --clients 16
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import runner
from benchmarks.markdown import table
from loadtest.random_models import tiny_repository
from loadtest.traffic import Call, Traffic, finsent_sender, grpc_sender
from server import health, stack
from server.stack import stub_pids
from server.triton import TritonServer


def outcome(calls: list[Call], fault_at: float) -> dict:
    """Failures, and healed = first success after the last failure, both relative to the fault."""
    failed = [c for c in calls if c.error]
    in_flight = sum(1 for c in calls if c.began <= fault_at < c.ended)
    last_failure = max((c.ended for c in failed), default=fault_at)
    healed = min(
        (c.ended for c in calls if not c.error and c.began >= last_failure and c.began >= fault_at),
        default=float("nan"),
    )
    errors: dict[str, int] = {}
    for c in failed:
        key = c.error.split(":")[0] + ": " + " ".join(c.error.split(":", 1)[-1].split()[:8])
        errors[key] = errors.get(key, 0) + 1
    before = [c for c in calls if c.ended < fault_at and not c.error]
    return {
        "requests": len(calls),
        "failed": len(failed),
        "in_flight_at_fault": in_flight,
        "failing_s": [round(min(c.ended for c in failed) - fault_at, 2), round(last_failure - fault_at, 2)]
        if failed
        else None,
        "healed_s": round(healed - fault_at, 2),
        "errors": errors,
        "rate_before_per_s": round(len(before) / max(1e-9, before[-1].ended - before[0].began), 1) if before else 0,
        "over_time": over_time([(round(c.ended - fault_at, 3), c.error is None) for c in calls]),
    }


BUCKET_S = 0.5  # the plot's bars: calls per half second


def over_time(ended: list[tuple[float, bool]]) -> dict:
    """Calls per BUCKET_S by when they ended (s from the fault), ok and failed: what the plot draws.
    Stored instead of every call (a 15 s run at 16 clients is tens of thousands)."""
    t = np.array([s for s, _ in ended], dtype=float)
    ok = np.array([good for _, good in ended], dtype=bool)
    edges = np.arange(np.floor(t.min()), np.ceil(t.max()) + BUCKET_S, BUCKET_S)
    return {
        "bucket_s": BUCKET_S,
        "start_s": float(edges[0]),
        "ok": np.histogram(t[ok], edges)[0].tolist(),
        "failed": np.histogram(t[~ok], edges)[0].tolist(),
    }


def probe(server: TritonServer, models, halt: threading.Event, period_s: float = 0.25) -> list[tuple[float, bool]]:
    """The readiness probe's answers (the inference check, as in the chart) every period_s."""
    triton, answers = health.Triton(server.http_url, timeout_s=2.0), []
    while not halt.is_set():
        answers.append((time.monotonic(), not health.check(triton, models)))
        halt.wait(period_s)
    return answers


def dead_stub(
    server: TritonServer,
    model: str = "finbert",
    clients: int = 16,
    before_s: float = 5.0,
    after_s: float = 15.0,
    interval_s: float = 1.0,
    watch_stubs: bool = True,
    log=print,
) -> dict:
    """Kill `model`'s tokenizer stub under load while the watchdog runs; what did clients see?
    watch_stubs: the watchdog also watches the stub processes (`python -m server`'s); without, it
    only has its inference check every interval_s (as `python -m server.health --watch`)."""
    watchdog_log: list[str] = []
    watchdog = health.Watchdog(
        server.http_url,
        [model],
        server.admin_key,
        interval_s,
        log=lambda line: watchdog_log.append(f"{time.monotonic():.3f} {line}"),
        server_pid=server.process.pid if watch_stubs else None,
    )
    watchdog.start()
    halt, answers = threading.Event(), []
    prober = threading.Thread(target=lambda: answers.extend(probe(server, [model], halt)), daemon=True)
    traffic = Traffic(grpc_sender(server.grpc_url, model), clients, pause_after_error_s=0.5).start()
    try:
        time.sleep(before_s)
        (pid,) = stub_pids(server, f"{model}_tokenizer")
        prober.start()
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        log(f"killed {model}_tokenizer's stub (pid {pid}) under {clients} clients")
        time.sleep(after_s)
    finally:
        calls = traffic.stop()
        halt.set()
        prober.join(10)
        watchdog.stop()
    result = outcome(calls, killed_at)
    unready = [t - killed_at for t, ok in answers if not ok]
    result.update(
        model=model,
        clients=clients,
        watchdog_interval_s=interval_s,
        watch_stubs=watch_stubs,
        killed_pid=pid,
        new_stub=bool(stub_pids(server, f"{model}_tokenizer")) and stub_pids(server, f"{model}_tokenizer") != [pid],
        probe_unready_s=[round(min(unready), 2), round(max(unready), 2)] if unready else None,
        probe_ready_after_s=round(
            min(
                (t - killed_at for t, ok in answers if ok and t - killed_at > (max(unready) if unready else 0)),
                default=float("nan"),
            ),
            2,
        ),
        watchdog=[f"{float(line.split()[0]) - killed_at:+.2f}s {line.split(' ', 1)[1]}" for line in watchdog_log],
    )
    return result


def restart(
    server: TritonServer,
    model: str = "finbert",
    clients: int = 16,
    before_s: float = 5.0,
    after_s: float = 15.0,
    log=print,
) -> dict:
    """SIGTERM the server and start it again on the same ports under finsent.Client load.

    Callers wait 0.5 s after a failure the client did not retry, as a caller would, so the count
    is not just how fast a tight loop can fail."""
    traffic = Traffic(finsent_sender(server.grpc_url, model), clients, pause_after_error_s=0.5).start()
    try:
        time.sleep(before_s)
        stopped_at = time.monotonic()
        code = server.stop()
        down_s = time.monotonic() - stopped_at
        server.start()
        back_s = time.monotonic() - stopped_at
        log(f"restarted tritonserver (exit code {code}): down after {down_s:.1f} s, ready again after {back_s:.1f} s")
        time.sleep(after_s)
    finally:
        calls = traffic.stop()
    result = outcome(calls, stopped_at)
    result.update(
        model=model,
        clients=clients,
        exit_code=code,
        stop_s=round(down_s, 2),
        ready_again_s=round(back_s, 2),
        served_after_ready_s=round(
            min((c.ended for c in calls if not c.error and c.ended >= stopped_at + back_s), default=float("nan"))
            - stopped_at,
            2,
        ),
        callers_failed=len({c.caller for c in calls if c.error}),
        callers_back=len({c.caller for c in calls if not c.error and c.began > stopped_at + back_s}),
    )
    return result


def markdown(results: dict) -> str:
    stubs, rs = [results[k] for k in ("stub", "stub_check_only") if k in results], results["restart"]
    stub, failing = stubs[0], rs["failing_s"] or ("-", "-")
    lines = [
        f"# Faults under load ({results['date']})",
        "",
        f"Machine: {results['machine']}. Models: the test suite's tiny random-weight ensembles. "
        f"Made by `make faults` (benchmarks/faults.py).",
        "",
        "## A dead Python-backend stub",
        "",
        f"{stub['clients']} raw tritonclient gRPC clients (no retries: every failure counts; a client waits 0.5 s after "
        f"a failure, as a caller would, so the count is not how fast a tight loop fails) send `{stub['model']}` "
        f"one text at a time (~{stub['rate_before_per_s']} requests/s); the tokenizer's stub is SIGKILLed. "
        f"The watchdog checks with a real inference every {stub['watchdog_interval_s']} s and reloads a broken "
        "model (explicit model control, admin key). `python -m server`'s also looks at the stub processes every "
        "0.1 s and reloads a model whose stub died at once; each case runs on a fresh server.",
        "",
    ]
    rows = [
        ("healed (first success after the last failure)", lambda s: f"**{s['healed_s']} s** after the kill"),
        (
            "failed requests",
            lambda s: f"{s['failed']} of {s['requests']} ({s['in_flight_at_fault']} in flight at the kill)",
        ),
        (
            "failures seen",
            lambda s: (
                f"from {s['failing_s'][0]} s to {s['failing_s'][1]} s after the kill" if s["failing_s"] else "none"
            ),
        ),
        (
            "inference health check (as the readiness probe), every 0.25 s",
            lambda s: (
                (
                    f"checks begun {s['probe_unready_s'][0]}–{s['probe_unready_s'][1]} s after the kill said "
                    f"unready; the first ready one began at {s['probe_ready_after_s']} s"
                )
                if s["probe_unready_s"]
                else "never unready"
            ),
        ),
        ("a new stub process", lambda s: str(s["new_stub"])),
    ]
    lines += table(
        [
            "",
            *(
                "stub watch + inference check (`python -m server`)" if s["watch_stubs"] else "inference check only"
                for s in stubs
            ),
        ],
        [[name, *(cell(s) for s in stubs)] for name, cell in rows],
    )
    for s_ in stubs:
        lines += ["", f"Errors clients saw ({'stub watch' if s_['watch_stubs'] else 'inference check only'}):", ""]
        lines += [f"- {n} × `{e}`" for e, n in s_["errors"].items()]
    for s_ in stubs:
        lines += [
            "",
            f"Watchdog log, {'stub watch' if s_['watch_stubs'] else 'inference check only'} (relative to the kill):",
            "",
            "```",
            *s_["watchdog"],
            "```",
        ]
    lines += [
        "",
        "## Server restart",
        "",
        f"{rs['clients']} `finsent.Client` gRPC callers (retries on UNAVAILABLE with backoff, 8–16 s in all) "
        f"while tritonserver gets SIGTERM (exit code {rs['exit_code']} after {rs['stop_s']} s of draining) and is "
        f"started again on the same ports (ready {rs['ready_again_s']} s after the SIGTERM).",
        "",
        *table(
            ["", ""],
            [
                [
                    "callers back (first success after the last failure)",
                    f"{rs['healed_s']} s after the SIGTERM" if rs["failed"] else "no caller failed",
                ],
                ["first call answered by the restarted server", f"{rs['served_after_ready_s']} s after the SIGTERM"],
                ["failed calls (after the client's retries)", f"{rs['failed']} of {rs['requests']}"],
                ["failures seen", f"from {failing[0]} s to {failing[1]} s after the SIGTERM"],
                [
                    "callers that saw a failure / callers served after the restart",
                    f"{rs['callers_failed']} / {rs['callers_back']} of {rs['clients']}",
                ],
            ],
        ),
        "",
    ]
    if rs["errors"]:
        lines += ["Errors callers saw:", ""] + [f"- {n} × `{e}`" for e, n in rs["errors"].items()] + [""]
    lines += ["![requests over time](faults.png)", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for ax, key, title in (
        (axes[0], "stub", "tokenizer stub SIGKILLed at 0 s (watchdog reloads it)"),
        (axes[1], "restart", "tritonserver SIGTERM + restart at 0 s (finsent.Client retries)"),
    ):
        counts = results[key]["over_time"]
        edges = counts["start_s"] + counts["bucket_s"] * np.arange(len(counts["ok"]) + 1)
        middles = (edges[:-1] + edges[1:]) / 2
        ax.hist(
            [middles, middles],
            bins=edges,
            weights=[counts["ok"], counts["failed"]],
            stacked=True,
            color=["tab:green", "tab:red"],
            label=["ok", "failed"],
        )
        ax.axvline(0, color="black", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("requests / 0.5 s")
        ax.legend(loc="upper right")
    axes[1].set_xlabel("seconds from the fault")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--after", type=float, default=15.0, help="seconds of load after each fault")
    parser.add_argument("--build", type=Path, default=Path("build/faults"))
    parser.add_argument("--out", type=Path, default=runner.REPORTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    repository = tiny_repository(args.build)
    stubs = {}
    for key, watch_stubs in (("stub", True), ("stub_check_only", False)):
        server = stack.start(repository, args.build / "triton", admin=True)
        try:
            stubs[key] = dead_stub(server, clients=args.clients, after_s=args.after, watch_stubs=watch_stubs)
            print(f"dead stub ({key}): healed after {stubs[key]['healed_s']} s, {stubs[key]['failed']} failed requests")
        finally:
            # Triton never finishes unloading the instance whose stub died: SIGTERM then waits out
            # --exit-timeout-secs (measured: 31 s, exit code 1). Don't wait for it here.
            server.stop(timeout_s=5)
    server = stack.start(repository, args.build / "triton", admin=True)
    try:
        rs = restart(server, clients=args.clients, after_s=args.after)
        print(f"restart: callers back after {rs['healed_s']} s, {rs['failed']} failed calls")
    finally:
        server.stop()
    results = {"date": runner.date(), "machine": runner.shared_machine(), **stubs, "restart": rs}
    print(f"wrote {runner.write(args.out, 'faults', results, markdown, plot, indent=1, echo=False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
