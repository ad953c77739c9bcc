"""`make timeline`: where one client's latency goes, step by step, from Triton's own trace.

One single-text gRPC client sends the Financial PhraseBank sentences `make bench` uses to the
ensemble while Triton traces every request (`--trace-config level=TIMESTAMPS rate=1`). Each
request's time from gRPC read to the start of its gRPC send is cut at the steps' compute start and end into
contiguous segments, so their means add up to the time inside Triton; the rest of the client's
latency is the load generator and the transport. Interleaved with it, in rounds, on the same
sentences: the in-process batch-1 path `make bench` compares against (tokenize, then one ORT run).

Tracing costs a little; `make bench`'s figures come from untraced servers. Writes
docs/benchmarks/one-client-<model>-<variant>.{md,json,png}.

    python -m benchmarks.timeline --model finbert --variant int8 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import runner
from benchmarks.inputs import UNGUARDED_SAMPLE, checkpoint, sentences
from benchmarks.markdown import table
from benchmarks.runner import machine, shared_arguments
from export.facts import FAMILIES, FactsError
from export.onnx import SourceUnavailable, export_model
from export.optimize import MIN_AGREEMENT, build_variants
from export.runtime import DEFAULT_VARIANT, VARIANTS, OnnxClassifier
from loadtest.traffic import grpc_batch_sender
from model_repository.assemble import TargetOptions
from server import stack

# One request's time inside Triton, cut at these points into contiguous segments. A step's
# compute ends when Triton has released it, which can be after the next step (or the gRPC
# send) has begun: a cut at two stamps is the earlier one, so no segment is negative and the
# overlap counts for the step that is running. The end is GRPC_SEND_START: GRPC_SEND_END is
# stamped when the write completes, which can be after the client already has the response
# (0.3-3 ms later on 2 busy cores), whereas WAITREAD_END follows the client's send and
# SEND_START precedes its receipt, so each request's time inside is within its client latency.
CUTS = [
    (("ensemble", "GRPC_WAITREAD_END"),),
    (("tokenizer", "COMPUTE_START"),),
    (("tokenizer", "COMPUTE_END"), ("classifier", "COMPUTE_START")),
    (("classifier", "COMPUTE_START"),),
    (("classifier", "COMPUTE_END"), ("postprocess", "COMPUTE_START")),
    (("postprocess", "COMPUTE_START"),),
    (("postprocess", "COMPUTE_END"), ("ensemble", "GRPC_SEND_START")),
    (("ensemble", "GRPC_SEND_START"),),
]
SEGMENTS = [
    "gRPC read → tokenizer starts",
    "tokenizer",
    "→ classifier starts",
    "classifier",
    "→ postprocess starts",
    "postprocess",
    "→ gRPC send starts",
]
STEP_PARTS = [
    ("queue", "REQUEST_START", "COMPUTE_START"),
    ("input", "COMPUTE_START", "COMPUTE_INPUT_END"),
    ("execute (stub round trip)", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START"),
    ("output", "COMPUTE_OUTPUT_START", "COMPUTE_END"),
]
STEPS = ("tokenizer", "classifier", "postprocess")


def trace_args(path: Path) -> tuple[str, ...]:
    return ("--trace-config", f"triton,file={path}", "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1")


def requests_from_trace(path: Path, family: str) -> list[dict[str, dict[str, int]]]:
    """Each ensemble request as {"ensemble"|step: {timestamp name: ns}}, in arrival order."""
    models, stamps = {}, {}
    for event in json.loads(path.read_text()):
        if "model_name" in event:
            models[event["id"]] = event
        for stamp in event.get("timestamps", []):
            stamps.setdefault(event["id"], {})[stamp["name"]] = stamp["ns"]
    requests = {i: {"ensemble": stamps.get(i, {})} for i, m in models.items() if m["model_name"] == family}
    for i, m in models.items():
        parent = m.get("parent_id")
        if parent in requests and m["model_name"].startswith(f"{family}_"):
            requests[parent][m["model_name"][len(family) + 1 :]] = stamps.get(i, {})
    complete = [
        r
        for r in requests.values()
        if all(name in r for name in STEPS)
        and "GRPC_WAITREAD_END" in r["ensemble"]
        and "GRPC_SEND_START" in r["ensemble"]
    ]
    return sorted(complete, key=lambda r: r["ensemble"]["GRPC_WAITREAD_END"])


def segments_us(requests: list[dict]) -> dict[str, list[float]]:
    cuts = np.array([[min(r[step][stamp] for step, stamp in cut) for cut in CUTS] for r in requests], dtype=np.int64)
    lengths = np.diff(cuts, axis=1) / 1000
    out = {name: lengths[:, i].tolist() for i, name in enumerate(SEGMENTS)}
    for step in STEPS:
        for part, a, b in STEP_PARTS:
            out[f"{step}: {part}"] = [(r[step][b] - r[step][a]) / 1000 for r in requests]
    out["inside Triton"] = ((cuts[:, -1] - cuts[:, 0]) / 1000).tolist()
    return out


def in_process_pass(model: OnnxClassifier, texts: list[str], into: dict[str, list[float]]) -> None:
    """The batch-1 path make bench's target is relative to, timed in its two parts, each text once."""
    for text in texts:
        began = time.perf_counter()
        encodings = model.encode([text])
        encoded = time.perf_counter()
        model.run(encodings)
        done = time.perf_counter()  # one reading: total is exactly its two parts, however the OS schedules
        into["tokenize"].append((encoded - began) * 1e6)
        into["ORT run"].append((done - encoded) * 1e6)
        into["total"].append((done - began) * 1e6)


def measure(
    model: OnnxClassifier,
    export_dir: Path,
    family: str,
    variant: str,
    texts: list[str],
    rounds: int,
    warmup: int,
    cores: int,
    work: Path,
) -> tuple[list[float], list[dict], dict[str, list[float]]]:
    """Rounds of one in-process pass then one served pass over the sentences, so that a shared
    machine's drift falls on both sides; returns client latencies (µs), their traces, in-process times."""
    trace = work / "trace.json"
    trace.unlink(missing_ok=True)
    server = stack.serve(
        {family: export_dir},
        work,
        TargetOptions("local", cores=cores, variant=variant),
        extra_args=trace_args(trace),
        started=False,
    )
    latencies, local = [], {"tokenize": [], "ORT run": [], "total": []}
    model.logits(texts[:64])  # warm up
    with server:
        send, close = grpc_batch_sender(server.grpc_url, family)()
        try:
            for i in range(warmup):
                send([texts[i % len(texts)]])
            for _ in range(rounds):
                in_process_pass(model, texts, local)
                for text in texts:
                    began = time.perf_counter()
                    send([text])
                    latencies.append((time.perf_counter() - began) * 1e6)
        finally:
            close()
    if not trace.exists():  # Triton writes the trace file when it stops
        raise RuntimeError(f"tritonserver wrote no trace; see {work / 'tritonserver.log'}")
    traced = requests_from_trace(trace, family)
    if len(traced) < len(latencies):
        raise RuntimeError(f"the trace holds {len(traced)} complete requests, {len(latencies)} expected")
    return latencies, traced[-len(latencies) :], local


def summarise(client_us: list[float], segments: dict[str, list[float]], local: dict[str, list[float]]) -> dict:
    stat = lambda v: {"mean_us": round(float(np.mean(v)), 1), "p50_us": round(float(np.median(v)), 1)}
    out = {
        "client": stat(client_us),
        "segments": {k: stat(v) for k, v in segments.items()},
        "in_process": {k: stat(v) for k, v in local.items()},
    }
    out["outside Triton (client, transport)"] = round(
        out["client"]["mean_us"] - out["segments"]["inside Triton"]["mean_us"], 1
    )
    seg, ip = out["segments"], out["in_process"]
    # What the ensemble adds to the in-process path, by mean (means add up; medians do not).
    out["added"] = {
        "tokenizer step beyond in-process tokenizing": seg["tokenizer"]["mean_us"] - ip["tokenize"]["mean_us"],
        "classifier step beyond an in-process ORT run": seg["classifier"]["mean_us"] - ip["ORT run"]["mean_us"],
        "postprocess step": seg["postprocess"]["mean_us"],
        "hand-offs between steps": sum(seg[k]["mean_us"] for k in SEGMENTS if k not in STEPS),
        "outside Triton (client, transport)": out["outside Triton (client, transport)"],
    }
    out["added"] = {k: round(v, 1) for k, v in out["added"].items()}
    out["excess_mean_us"] = round(out["client"]["mean_us"] - ip["total"]["mean_us"], 1)
    out["excess_p50_us"] = round(out["client"]["p50_us"] - ip["total"]["p50_us"], 1)
    return out


def markdown(results: dict) -> str:
    s = results["summary"]
    ms = lambda us: f"{us / 1000:.2f}"
    lines = [
        f"# Where one client's latency goes: {results['model']} {results['variant']}",
        "",
        f"`python -m benchmarks.timeline` ({results['when']}, {results['machine']}). {results['requests']} "
        f"single-text gRPC requests from one Python client, traced by Triton "
        f"(`--trace-config level=TIMESTAMPS rate=1`); {results['sentences']}. In {results['rounds']} rounds, "
        f"each sentence once in process (batch 1) then once through the ensemble. Means in ms unless marked; "
        f"means add up, medians do not.",
        "",
        *table(
            ["", "mean", "p50"],
            [
                [
                    "**client latency (1 client)**",
                    f"**{ms(s['client']['mean_us'])}**",
                    f"**{ms(s['client']['p50_us'])}**",
                ],
                [
                    "**in-process batch 1 (tokenize + ORT run)**",
                    f"**{ms(s['in_process']['total']['mean_us'])}**",
                    f"**{ms(s['in_process']['total']['p50_us'])}**",
                ],
                ["excess (the target: p50 ≤ 2 ms)", ms(s["excess_mean_us"]), ms(s["excess_p50_us"])],
            ],
        ),
        "",
        "## The request inside Triton, cut at each step's compute start and end",
        "",
    ]
    inside = s["segments"]["inside Triton"]
    lines += table(
        ["segment", "mean", "p50"],
        [
            *([name, ms(s["segments"][name]["mean_us"]), ms(s["segments"][name]["p50_us"])] for name in SEGMENTS),
            [
                "**inside Triton** (gRPC read → send starts)",
                f"**{ms(inside['mean_us'])}**",
                f"**{ms(inside['p50_us'])}**",
            ],
            ["outside Triton (Python client, transport)", ms(s["outside Triton (client, transport)"]), ""],
        ],
    )
    lines += [
        "",
        "Each step's own parts (µs, mean), from its compute start to its release (which can overlap the "
        "next step); *execute* is the Python stub's round trip: Triton → stub over shared memory, "
        "`execute`, back.",
        "",
        *table(
            ["step", *(p for p, _, _ in STEP_PARTS)],
            [[step, *(f"{s['segments'][f'{step}: {p}']['mean_us']:.0f}" for p, _, _ in STEP_PARTS)] for step in STEPS],
        ),
    ]
    ip = s["in_process"]
    lines += [
        "",
        f"In process: tokenize {ip['tokenize']['mean_us']:.0f} µs, ORT run {ms(ip['ORT run']['mean_us'])} ms "
        "(mean; a hot loop).",
        "",
        "## What the ensemble adds to the in-process path (ms, mean)",
        "",
        *table(
            ["", "ms"],
            [*([k, ms(v)] for k, v in s["added"].items()), ["**sum = excess**", f"**{ms(sum(s['added'].values()))}**"]],
        ),
        "",
        f"![one client's timeline](one-client-{results['model']}-{results['variant']}.png)",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["summary"]
    seg, ip = s["segments"], s["in_process"]
    served = [(name, seg[name]["mean_us"]) for name in SEGMENTS]
    served.append(("outside Triton", s["outside Triton (client, transport)"]))
    local = [("tokenize", ip["tokenize"]["mean_us"]), ("ORT run", ip["ORT run"]["mean_us"])]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), gridspec_kw={"height_ratios": [1, 1.4]})
    roles = {
        "tokenizer": "tab:green",
        "model run": "tab:blue",
        "postprocess": "tab:pink",
        "hand-offs": "tab:gray",
        "outside Triton": "tab:olive",
    }
    role = {"tokenize": "tokenizer", "classifier": "model run", "ORT run": "model run"}
    for row, parts in ((1, served), (0, local)):
        left = 0.0
        for name, us in parts:
            colour = roles.get(role.get(name, name), roles["hand-offs"])
            top.barh(row, us / 1000, left=left / 1000, color=colour, edgecolor="white")
            left += us
    top.legend(
        handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in roles.values()],
        labels=list(roles),
        loc="upper left",
        fontsize=8,
        ncol=len(roles),
        frameon=False,
    )
    top.set_ylim(-0.5, 2.0)
    top.set_yticks([0, 1], ["in-process batch 1", "Triton ensemble, 1 client"])
    top.set_xlabel("ms (mean)")
    top.set_title(f"{results['model']} {results['variant']}: one single-text request, segment by segment")
    added = list(s["added"].items())
    bottom.barh([k for k, _ in added][::-1], [v / 1000 for _, v in added][::-1], color="tab:orange")
    bottom.axvline(0, color="black", linewidth=0.5)
    bottom.set_xlabel("ms the ensemble adds to the in-process path (mean)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="finbert", choices=list(FAMILIES))
    parser.add_argument("--checkpoint", help="checkpoint (default: make bench's random-weight base architecture)")
    parser.add_argument("--variant", default=DEFAULT_VARIANT["cpu"], choices=VARIANTS)
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of one in-process pass and one served pass over the sentences"
    )
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first")
    parser.add_argument("--sentences", type=int, default=100, help="distinct sentences, cycled")
    shared_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.sentences < 1 or args.cores < 1:
        parser.error("--rounds, --sentences and --cores must be at least 1, --warmup at least 0")
    texts, source = sentences(480)
    texts = texts[: args.sentences]
    try:
        export_dir = export_model(
            checkpoint(args.model, args.checkpoint, args.build), args.model, args.build / "export" / args.model
        ).path
    except (SourceUnavailable, FactsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    build_variants(
        export_dir,
        [args.variant],
        min_agreement=MIN_AGREEMENT if args.checkpoint else 0.0,
        guard_limit=None if args.checkpoint else UNGUARDED_SAMPLE,
    )
    print(
        f"{args.model} {args.variant}: {args.rounds} rounds of {len(texts)} texts in process, "
        f"then {len(texts)} traced requests through the ensemble ..."
    )
    client, traced, local = measure(
        OnnxClassifier(export_dir, args.variant, threads=args.cores),
        export_dir,
        args.model,
        args.variant,
        texts,
        args.rounds,
        args.warmup,
        args.cores,
        args.build / "run" / "timeline" / args.model / args.variant,
    )
    results = {
        "when": runner.now(),
        "machine": machine(args.cores),
        "model": args.model,
        "variant": args.variant,
        "requests": len(client),
        "rounds": args.rounds,
        "sentences": f"{len(texts)} of: {source}",
        "summary": summarise(client, segments_us(traced), local),
    }
    runner.write(args.out, f"one-client-{args.model}-{args.variant}", results, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
