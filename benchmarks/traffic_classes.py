"""Mixed traffic on one Triton, before and after traffic classes, in one run -> docs/benchmarks/traffic-classes.{md,json}.

    python -m benchmarks.traffic_classes [--variant int8] [--rows 3000] [--overload-seconds 180]

FinBERT's architecture (random-weight BERT-base unless --finbert), served as `make serve` serves it,
once with one first-come-first-served unbounded queue per model ("before": TargetOptions
traffic_classes=False) and once with the traffic classes of model_repository/classes.py ("after").
For each, on Financial PhraseBank sentences:
  1. interactive alone: one finsent.Client sending one sentence every 50 ms (p50/p99);
  2. bulk alone: `finsent score` of --rows rows (texts/s);
  3. both at once, with one 100 kB document (Client.classify_documents) scored meanwhile;
  4. overload: closed-loop interactive clients offering about twice what the server serves, for
     --overload-seconds, while `finsent score` runs and the chart's liveness and readiness commands
     run every 10 s and 5 s: admitted p99, refused share, time to the first refusal and how long a
     refusal takes, probe failures, rows `finsent score` wrote of those it read.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks import runner
from benchmarks.documents import corpus, long_document
from benchmarks.inputs import checkpoint, sentences
from benchmarks.markdown import table
from benchmarks.measure import stub_cpu_s
from benchmarks.runner import shared_arguments
from export.onnx import export_model
from export.optimize import build_variants
from export.runtime import DEFAULT_VARIANT
from finsent import Client, FinsentError, OverloadedError, Retry
from model_repository.assemble import TargetOptions
from model_repository.classes import BACKGROUND_SUFFIX
from server import health, stack
from server.triton import ADMIN_HEADER

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "k8s" / "chart" / "finsent" / "values.yaml"
CONFIGS = {"before": False, "after": True}
PACE_S = 0.05  # the interactive client's pace: one text every 50 ms


def chart_probes() -> dict[str, tuple[list[str], float]]:
    """The chart's liveness and readiness commands (templates/deployment.yaml, as values.yaml sets
    them; tests/benchmarks/test_traffic_classes.py compares them with the rendered chart) and periods."""
    probes = yaml.safe_load(VALUES.read_text())["probes"]
    live, ready = probes["liveness"], probes["readiness"]
    return {
        "liveness": (["--heal", f"--timeout={live['inferenceTimeoutSeconds']}"], live["periodSeconds"]),
        "readiness": ([f"--timeout={ready['inferenceTimeoutSeconds']}"], ready["periodSeconds"]),
    }


def pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def paced(url: str, texts: list[str], stop: threading.Event, out: list) -> None:
    """One interactive caller: a text every PACE_S (or right after a slower answer), latencies in ms."""
    with Client(url, model="finbert") as client:
        k = 0
        while not stop.is_set():
            began = time.perf_counter()
            client.classify([texts[k % len(texts)]])
            out.append((time.perf_counter() - began) * 1000)
            k += 1
            stop.wait(max(0.0, PACE_S - (time.perf_counter() - began)))


def start_score(url: str, source: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "finsent", "score", str(source), "-o", str(out), "--url", url]
    cmd += ["--model", "finbert", "--no-progress", "--overwrite", "--no-dedup"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_score(proc: subprocess.Popen, began: float, out: Path, rows: int) -> dict:
    text = proc.communicate()[0]
    seconds = time.perf_counter() - began
    written = 0
    if proc.returncode == 0:
        with out.open(newline="") as f:
            written = sum(1 for _ in csv.DictReader(f))
    return {
        "exit": proc.returncode,
        "seconds": seconds,
        "rows_written": written,
        "rows_lost": rows - written,
        "texts_per_s": written / seconds,
        "error": "" if proc.returncode == 0 else text.strip().splitlines()[-1][:200],
    }


def interactive(url: str, texts: list[str], seconds: float) -> dict:
    stop, latencies = threading.Event(), []
    thread = threading.Thread(target=paced, args=(url, texts, stop, latencies))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    return {"requests": len(latencies), "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}


def mixed(url: str, texts: list[str], source: Path, work: Path, rows: int, document: str | None) -> dict:
    """Interactive pacing while `finsent score` and one long document (None: none) run, until both end."""
    stop, latencies, doc = threading.Event(), [], {}
    pacer = threading.Thread(target=paced, args=(url, texts, stop, latencies))
    pacer.start()

    def score_document():
        began = time.perf_counter()
        with Client(url, model="finbert", timeout_s=600) as client:
            doc["sentences"] = client.classify_documents([document])[0].sentence_count
        doc["seconds"] = time.perf_counter() - began

    documenter = threading.Thread(target=score_document if document else lambda: None)
    began = time.perf_counter()
    proc = start_score(url, source, work / "mixed.csv")
    documenter.start()
    bulk = finish_score(proc, began, work / "mixed.csv", rows)
    documenter.join()
    stop.set()
    pacer.join()
    seconds = time.perf_counter() - began  # the pacer's span: until both the bulk job and the document end
    return {
        "interactive": {
            "requests": len(latencies),
            "seconds": seconds,
            "p50_ms": pct(latencies, 50),
            "p99_ms": pct(latencies, 99),
        },
        "bulk": bulk,
        "document": doc,
    }


# The overload's callers run in their own process, apart from the benchmark's probes and bookkeeping;
# four processes of 16 took more of the 2 cores from the server than they saved (refusal p99 583 ms).
CALLER_PROCESSES = 1


def callers(url: str, texts: list[str], ks: list[int], stride: int, think_s: float, seconds: float, ready, out):
    """One process's closed-loop callers, a thread each (no retries: each refusal counted), from when
    every process is ready for `seconds`; puts ([(sent at s, ms, admitted)], [other errors]) on out."""
    lock, calls, other_errors = threading.Lock(), [], []
    try:
        clients = {k: Client(url, model="finbert", retry=Retry(attempts=0), timeout_s=120) for k in ks}
        for client in clients.values():
            client.info  # connected and the model read: the clock starts with every caller warm
    except BaseException:
        ready.abort()  # the benchmark fails now, not after the barrier's timeout
        raise
    ready.wait()
    started = time.monotonic()
    until = started + seconds

    def caller(k: int):
        with clients[k] as client:
            while time.monotonic() < until:
                sent = time.monotonic()
                try:
                    client.classify([texts[k % len(texts)]])
                    admitted = True
                except OverloadedError:
                    admitted = False
                except FinsentError as exc:  # the before case's timeouts, say
                    admitted = False
                    with lock:
                        other_errors.append(str(exc)[:120])
                with lock:
                    calls.append((sent - started, (time.monotonic() - sent) * 1000, admitted))
                k += stride
                time.sleep(think_s)

    threads = [threading.Thread(target=caller, args=(k,)) for k in ks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((calls, other_errors))


def overload(
    server, texts: list[str], source: Path, work: Path, rows: int, clients: int, think_s: float, seconds: float
):
    """Closed-loop interactive callers in CALLER_PROCESSES processes, the bulk job, and the probes."""
    n = CALLER_PROCESSES
    spawn = multiprocessing.get_context("spawn")  # not fork: gRPC's threads do not survive a fork
    ready, out, stop = spawn.Barrier(n + 1), spawn.Queue(), threading.Event()
    workers = [
        spawn.Process(
            target=callers,
            args=(server.grpc_url, texts, list(range(p, clients, n)), clients, think_s, seconds, ready, out),
        )
        for p in range(n)
    ]
    for w in workers:
        w.start()
    ready.wait(timeout=120)  # a caller process that failed to start breaks the barrier: an error, not a hang
    started, began = time.monotonic(), time.perf_counter()
    probes = {name: [] for name in chart_probes()}

    def prober(name: str, args: list[str], period: float):
        while not stop.wait(0 if not probes[name] else period):
            env = {**os.environ, "TRITON_ADMIN_KEY": server.admin_key or ""}
            run = subprocess.run(
                [sys.executable, health.__file__, f"--url={server.http_url}", "--model=finbert", *args],
                env=env,
                capture_output=True,
                text=True,
            )
            probes[name].append(
                {
                    "at_s": time.monotonic() - started,
                    "exit": run.returncode,
                    "out": run.stdout[-200:] + run.stderr[-200:],
                }
            )

    threads = [threading.Thread(target=prober, args=(n, a, p)) for n, (a, p) in chart_probes().items()]
    proc = start_score(server.grpc_url, source, work / "overload.csv")
    for t in threads:
        t.start()
    parts = [out.get(timeout=seconds + 300) for _ in workers]
    for w in workers:
        w.join()
    stop.set()
    for t in threads:
        t.join()
    bulk = finish_score(proc, began, work / "overload.csv", rows)
    calls = [c for part, _ in parts for c in part]
    other_errors = [e for _, part in parts for e in part]
    # Every call and probe run, for a look at when the slow ones happened (not in the report).
    (work / "overload-calls.json").write_text(json.dumps({"calls": calls, "probes": probes}))
    admitted = [ms for _, ms, ok in calls if ok]
    refused = [(at, ms) for at, ms, ok in calls if not ok]
    span = max((at for at, _, _ in calls), default=1.0)
    return {
        "clients": clients,
        "think_s": think_s,
        "seconds": seconds,
        "requests": len(calls),
        "offered_per_s": len(calls) / span,
        "admitted_per_s": len(admitted) / span,
        "admitted_p50_ms": pct(admitted, 50),
        "admitted_p99_ms": pct(admitted, 99),
        "refused_share": len(refused) / max(1, len(calls)),
        "first_refusal_s": min((at for at, _ in refused), default=None),
        "refusal_p50_ms": pct([ms for _, ms in refused], 50),
        "refusal_p95_ms": pct([ms for _, ms in refused], 95),
        "refusal_p99_ms": pct([ms for _, ms in refused], 99),
        "refused_within_100ms": refused_within(refused, 100.0),
        "other_errors": len(other_errors),
        "other_error_example": other_errors[0] if other_errors else "",
        "probe_failures": {name: sum(r["exit"] != 0 for r in runs) for name, runs in probes.items()},
        "probe_runs": {name: len(runs) for name, runs in probes.items()},
        "probe_busy": {name: sum("busy:" in r["out"] for r in runs) for name, runs in probes.items()},
        "probe_failure_example": next((r["out"] for runs in probes.values() for r in runs if r["exit"]), ""),
        "bulk": bulk,
    }


def refused_within(refused: list, ms: float) -> float | None:
    """The share of refusals answered within `ms` (None: nothing was refused)."""
    return sum(latency <= ms for _, latency in refused) / len(refused) if refused else None


def classifier_runs(server, model: str) -> tuple[int, float]:
    """A classifier's executions so far and their summed compute time in ms (Triton's statistics)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        headers = {ADMIN_HEADER: server.admin_key} if server.admin_key else None
        stats = client.get_inference_statistics(model, headers=headers)["model_stats"][0]
    finally:
        client.close()
    batches = stats.get("batch_stats", [])
    return sum(b["compute_infer"]["count"] for b in batches), sum(b["compute_infer"]["ns"] for b in batches) / 1e6


class Cpu:
    """CPU seconds the classifiers used since the last call: the interactive one (the main classifier)
    and the one background work runs in (its copy, or the same one before)."""

    def __init__(self, server, background: str):
        self.models = {"interactive": "finbert_classifier", "background": background}
        self.server = server
        self.last = self.now()

    def now(self) -> dict[str, float]:
        return {k: stub_cpu_s(self.server, m) for k, m in self.models.items()}

    def since(self) -> dict[str, float]:
        now = self.now()
        used, self.last = {k: now[k] - self.last[k] for k in now}, now
        return used


def bulk_ceiling(config: dict) -> float | None:
    """The share of its texts/s alone the bulk job could keep at most in the mix, given the classifier
    cores the interactive client's texts took there: 1 - those cores / the cores the bulk job's
    classifier used alone (None: not measured, or one classifier for both)."""
    cores = config["mixed"].get("classifier_cores")
    if not cores or not config.get("background_classifier"):
        return None
    return 1 - cores["interactive"] / config["bulk_alone"]["classifier_cores"]


def measure(name: str, export_dir: Path, args, texts: list[str], source: Path, document: str) -> dict:
    options = TargetOptions(
        "local",
        cores=args.cores,
        variant=args.variant,
        traffic_classes=CONFIGS[name],
        **({} if CONFIGS[name] else {"nice": 0}),  # before: the classifier shared the cores equally
        background_batch_size=args.background_batch_size or 0,
    )
    work = args.build / "traffic" / name
    server = stack.serve({"finbert": export_dir}, work, options, admin=True)
    try:
        url = server.grpc_url
        with Client(url, model="finbert") as client:  # warm up
            client.classify(texts[:64])
        # The classifier bulk work runs in: its own copy where the repository has one (classes.background_copy).
        bulk_classifier = "finbert_classifier" + (BACKGROUND_SUFFIX if options.background_classifier else "")
        cpu = Cpu(server, bulk_classifier)
        print(f"[{name}] interactive alone ...", flush=True)
        alone = interactive(url, texts, args.alone_seconds)
        alone["classifier_cpu_ms_per_text"] = cpu.since()["interactive"] * 1000 / max(alone["requests"], 1)
        print(f"[{name}] bulk alone ...", flush=True)
        runs_before, ms_before = classifier_runs(server, bulk_classifier)
        began = time.perf_counter()
        bulk_alone = finish_score(start_score(url, source, work / "alone.csv"), began, work / "alone.csv", args.rows)
        used = cpu.since()["background"]
        bulk_alone["classifier_cpu_ms_per_text"] = used * 1000 / max(bulk_alone["rows_written"], 1)
        bulk_alone["classifier_cores"] = used / bulk_alone["seconds"]
        runs, ms = (a - b for a, b in zip(classifier_runs(server, bulk_classifier), (runs_before, ms_before)))
        # What an interactive text may wait for behind bulk work: one classifier execute of it.
        bulk_alone["classifier_run_ms"] = ms / max(runs, 1)
        # What the interactive client's texts alone leave the bulk job (each is a run of its own).
        print(f"[{name}] interactive + bulk ...", flush=True)
        bulk_interactive = mixed(url, texts, source, work, args.rows, None)
        print(f"[{name}] interactive + bulk + a {len(document.encode()):,}-byte document ...", flush=True)
        cpu.since()
        during = mixed(url, texts, source, work, args.rows, document)
        during["classifier_cores"] = {k: s / during["interactive"]["seconds"] for k, s in cpu.since().items()}
        capacity = bulk_alone["texts_per_s"]
        # Closed loop with a think time: clients / think_s texts/s offered, about twice the capacity.
        think_s = args.overload_clients / (2 * capacity)
        print(
            f"[{name}] overload: {args.overload_clients} clients, {think_s:.2f} s think time, {args.overload_seconds:.0f} s ...",
            flush=True,
        )
        loaded = overload(server, texts, source, work, args.rows, args.overload_clients, think_s, args.overload_seconds)
    finally:
        server.stop()
    result = {
        "background_classifier": options.background_classifier,
        "interactive_alone": alone,
        "bulk_alone": bulk_alone,
        "bulk_and_interactive": bulk_interactive,
        "mixed": during,
        "overload": loaded,
    }
    print(f"[{name}] {result}", flush=True)
    return result


def served_during(mixed: dict) -> float:
    """Texts/s the server answered in the mix, all classes: the bulk rows, the document's sentences and
    the interactive texts, over the pacer's span (until both the bulk job and the document ended)."""
    bulk, doc, pacer = mixed["bulk"], mixed["document"], mixed["interactive"]
    return (bulk["rows_written"] + doc.get("sentences", 0) + pacer["requests"]) / pacer["seconds"]


def probes(overload: dict, name: str) -> str:
    """'failures of runs', and how many of the runs found the server busy (passed, saying so)."""
    busy = overload["probe_busy"][name]
    return f"{overload['probe_failures'][name]} of {overload['probe_runs'][name]}" + (f" ({busy} busy)" if busy else "")


def markdown(r: dict) -> str:
    names = list(r["configs"])
    c = r["configs"]

    def f(x, fmt="{:,.0f}"):
        return "—" if x is None else fmt.format(x)

    lines = [
        "# Traffic classes: interactive, bulk and a document on one Triton, and twice its capacity",
        "",
        f"{r['when']} · {r['machine']} · {r['source']}, {r['variant']} · {r['corpus']} · "
        f'`python -m benchmarks.traffic_classes` (docs/serving.md, "Traffic classes").',
        "",
        "**before**: every model one first-come-first-served queue, unbounded (the repository before "
        "traffic classes). **after**: model_repository/classes.py (priority levels health / interactive / "
        "background on every queue, bounded; background work, `finsent score` and the document's sentences, "
        "in its own copy of the classifier whose threads run at nice 19, joined into runs of up to 64 rows; "
        "interactive texts, probes and plain requests in the main classifier at nice 10, its runs joined up to "
        f"{r['background_batch_size']} rows).",
        "",
        "## One interactive client (a text every 50 ms), alone and while a bulk job and a document run",
        "",
        *table(
            [
                "",
                "interactive p50 alone",
                "p99 alone",
                "p50 during",
                "p99 during",
                "p99 alone + one bulk run",
                "bulk texts/s alone",
                "with the interactive client",
                "bulk texts/s during",
                "kept",
                "interactive texts/s during",
                "document",
                "all texts/s during",
            ],
            [
                [
                    n,
                    f(c[n]["interactive_alone"]["p50_ms"], "{:,.0f} ms"),
                    f(c[n]["interactive_alone"]["p99_ms"], "{:,.0f} ms"),
                    f(c[n]["mixed"]["interactive"]["p50_ms"], "{:,.0f} ms"),
                    f(c[n]["mixed"]["interactive"]["p99_ms"], "{:,.0f} ms"),
                    "preempted"
                    if c[n].get("background_classifier")
                    else f(c[n]["interactive_alone"]["p99_ms"] + c[n]["bulk_alone"]["classifier_run_ms"], "{:,.0f} ms"),
                    f(c[n]["bulk_alone"]["texts_per_s"], "{:.1f}"),
                    f(c[n].get("bulk_and_interactive", {}).get("bulk", {}).get("texts_per_s"), "{:.1f}"),
                    f(c[n]["mixed"]["bulk"]["texts_per_s"], "{:.1f}"),
                    f(c[n]["mixed"]["bulk"]["texts_per_s"] / c[n]["bulk_alone"]["texts_per_s"], "{:.0%}"),
                    f(c[n]["mixed"]["interactive"]["requests"] / c[n]["mixed"]["interactive"]["seconds"], "{:.1f}"),
                    f"{c[n]['mixed']['document'].get('sentences', 0)} sentences in "
                    f"{c[n]['mixed']['document'].get('seconds', 0):.1f} s",
                    f(served_during(c[n]["mixed"]), "{:.1f}"),
                ]
                for n in names
            ],
        ),
        "",
        f"Bulk: `finsent score` of {r['rows']:,} rows (its default client: background class after). "
        "With the interactive client: the bulk job's texts/s while only the interactive client runs beside it. "
        "Kept: bulk texts/s during the mix over alone. All texts/s during: bulk, the document's sentences "
        "and the interactive texts together, over the mix's span, against the bulk job's texts/s alone. One bulk run: the "
        "classifier's mean execute while the bulk job ran alone (Triton's statistics), what an interactive text "
        "may wait for behind it when both share a classifier (Triton cannot preempt a run); preempted: bulk runs "
        "in its own classifier process at nice 19, which the kernel preempts for the interactive one.",
        "",
        "## Where the classifier cores go",
        "",
        *table(
            [
                "",
                "CPU per interactive text (alone)",
                "CPU per bulk text (alone)",
                "bulk's classifier alone",
                "interactive classifier during",
                "background classifier during",
                "bulk could keep at most",
                "kept",
            ],
            [
                [
                    n,
                    f(c[n]["interactive_alone"].get("classifier_cpu_ms_per_text"), "{:,.0f} ms"),
                    f(c[n]["bulk_alone"].get("classifier_cpu_ms_per_text"), "{:,.0f} ms"),
                    f(c[n]["bulk_alone"].get("classifier_cores"), "{:.2f} cores"),
                    *(
                        f(
                            c[n]["mixed"].get("classifier_cores", {}).get(k)
                            if c[n].get("background_classifier")
                            else None,
                            "{:.2f} cores",
                        )
                        for k in ("interactive", "background")
                    ),
                    f(bulk_ceiling(c[n]), "{:.0%}"),
                    f(c[n]["mixed"]["bulk"]["texts_per_s"] / c[n]["bulk_alone"]["texts_per_s"], "{:.0%}"),
                ]
                for n in names
            ],
        ),
        "",
        "CPU (user + system, every thread) of the classifiers' Python stub processes, from /proc: per text "
        "while each ran alone, and in cores (CPU seconds per second) during the bulk job alone and the mix. "
        "An interactive text is a classifier run of its own. Bulk could keep at most: 1 - the interactive "
        "classifier's cores during the mix / the cores the bulk job's classifier used alone, what the interactive "
        "client's texts leave it, before the document and the steps take their share (— with one classifier "
        "for both).",
        "",
        "## Twice the capacity",
        "",
        *table(
            [
                "",
                "offered/s",
                "admitted/s",
                "admitted p50",
                "admitted p99",
                "refused",
                "first refusal",
                "refusal p50 / p95 / p99",
                "refused within 100 ms",
                "other errors",
                "liveness failures",
                "readiness failures",
                "bulk rows lost",
            ],
            [
                [
                    n,
                    f(c[n]["overload"]["offered_per_s"], "{:.1f}"),
                    f(c[n]["overload"]["admitted_per_s"], "{:.1f}"),
                    f(c[n]["overload"]["admitted_p50_ms"], "{:,.0f} ms"),
                    f(c[n]["overload"]["admitted_p99_ms"], "{:,.0f} ms"),
                    f(c[n]["overload"]["refused_share"], "{:.0%}"),
                    f(c[n]["overload"]["first_refusal_s"], "{:.1f} s"),
                    f"{f(c[n]['overload'].get('refusal_p50_ms'), '{:,.0f}')} / "
                    f"{f(c[n]['overload'].get('refusal_p95_ms'), '{:,.0f}')} / "
                    f"{f(c[n]['overload']['refusal_p99_ms'], '{:,.0f} ms')}",
                    f(c[n]["overload"].get("refused_within_100ms"), "{:.1%}"),
                    c[n]["overload"]["other_errors"],
                    probes(c[n]["overload"], "liveness"),
                    probes(c[n]["overload"], "readiness"),
                    c[n]["overload"]["bulk"]["rows_lost"],
                ]
                for n in names
            ],
        ),
        "",
        f"{r['overload_clients']} closed-loop single-text clients, each waiting a think time after every "
        "answer or refusal so that together they offer about twice the texts/s the bulk job reached alone, "
        f"for {r['overload_seconds']:.0f} s; no client retries (every refusal is counted). Meanwhile `finsent score` "
        f"scores {r['rows']:,} rows (its retries are on: rows lost counts those missing from its output), and "
        "the chart's liveness and readiness commands (values.yaml: --heal --timeout=10 every 10 s; --timeout=3 "
        "every 5 s) run against the server. Other errors: failures that are not a refusal (timeouts). Busy: "
        "probe runs that timed out or were refused and passed, saying `busy:` (server/health.py); the probe "
        "before this change failed those.",
    ]
    for n in names:
        o = c[n]["overload"]
        if o["other_error_example"] or o["probe_failure_example"] or o["bulk"]["error"]:
            lines += [
                "",
                f"{n}: "
                + "; ".join(
                    x for x in (o["other_error_example"], o["probe_failure_example"].strip(), o["bulk"]["error"]) if x
                ),
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finbert", help="checkpoint (default: random-weight BERT-base)")
    parser.add_argument("--variant", default=DEFAULT_VARIANT["cpu"])
    parser.add_argument("--rows", type=int, default=3000, help="rows of the bulk job")
    parser.add_argument("--document-bytes", type=int, default=100_000)
    parser.add_argument("--alone-seconds", type=float, default=20.0)
    parser.add_argument("--overload-seconds", type=float, default=180.0)
    parser.add_argument("--overload-clients", type=int, default=64)
    parser.add_argument("--background-batch-size", type=int, help="the classifier's join cap (default: the target's)")
    parser.add_argument("--configs", default="before,after", help="before, after or both (comma-separated)")
    shared_arguments(parser)
    args = parser.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    if not names or any(n not in CONFIGS for n in names):
        parser.error(runner.unknown("--configs", names, CONFIGS) or "--configs: name before, after or both")
    source = checkpoint("finbert", args.finbert, args.build)
    export_dir = export_model(source, "finbert", args.build / "export" / "finbert").path
    if args.variant != "fp32":
        build_variants(export_dir, [args.variant], min_agreement=0.0 if not args.finbert else 0.98)
    texts, described = sentences(args.rows)
    work = args.build / "traffic"
    work.mkdir(parents=True, exist_ok=True)
    source_csv = work / "bulk.csv"
    with source_csv.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in (texts * (args.rows // len(texts) + 1))[: args.rows])
    document = long_document(corpus(40)[0], args.document_bytes)
    configs = {name: measure(name, export_dir, args, texts, source_csv, document) for name in names}
    results = {
        **runner.header(
            args.cores, args.finbert or "random-weight BERT-base (FinBERT's architecture)", args.variant, described
        ),
        "rows": args.rows,
        "background_batch_size": TargetOptions(
            "local", background_batch_size=args.background_batch_size or 0
        ).background_batch_size,
        "overload_clients": args.overload_clients,
        "overload_seconds": args.overload_seconds,
        "configs": configs,
    }
    runner.write(args.out, "traffic-classes", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
