"""Per-step results of a sweep: statistics, the knee, the markdown table and the plot.

A step's window starts `warmup` seconds after its users were started (ramp-up and
connection set-up are not steady state) and ends when the next step begins. A request
belongs to the window in which it completed. Latency percentiles are over successful
requests; throughput counts the texts of successful requests per second of window.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from loadtest.recorder import SAMPLES, SCHEDULE, summarize

STEP_FIELDS = [
    "step",
    "users",
    "window_s",
    "requests",
    "failures",
    "texts",
    "texts_per_s",
    "requests_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "max_ms",
]


def read_run(directory: Path) -> tuple[list[dict], list[dict]]:
    """The recorder's files: (schedule rows, sample rows)."""
    with open(directory / SCHEDULE, newline="") as f:
        schedule = [
            {"step": int(r["step"]), "users": int(r["users"]), "start": float(r["start"]), "end": float(r["end"])}
            for r in csv.DictReader(f)
        ]
    with open(directory / SAMPLES, newline="") as f:
        samples = list(csv.DictReader(f))
    return schedule, samples


def step_results(directory: Path, warmup_s: float) -> list[dict]:
    """Summarize each step and write its raw samples to steps/step_<n>_users_<u>.csv."""
    schedule, samples = read_run(directory)
    by_step: dict[int, list[dict]] = {}
    for row in samples:
        by_step.setdefault(int(row["step"]), []).append(row)
    out_dir = directory / "steps"
    out_dir.mkdir(exist_ok=True)
    results = []
    for step in schedule:
        rows = by_step.get(step["step"], [])
        window_start = step["start"] + warmup_s
        path = out_dir / f"step_{step['step'] + 1}_users_{step['users']}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["time", "response_time_ms", "texts", "ok", "in_window", "error"])
            for r in rows:
                t = float(r["time"])
                writer.writerow(
                    [
                        r["time"],
                        r["response_time_ms"],
                        r["texts"],
                        r["ok"],
                        int(window_start <= t <= step["end"]),
                        r["error"],
                    ]
                )
        tuples = [(float(r["time"]), float(r["response_time_ms"]), int(r["texts"]), r["ok"] == "1") for r in rows]
        stats = summarize(tuples, window_start, step["end"])
        errors = sorted({r["error"] for r in rows if r["ok"] != "1"})
        result = {"step": step["step"] + 1, "users": step["users"], **stats, "errors": errors[:5]}
        kinds = sorted({r["request_type"] for r in rows})
        if len(kinds) > 1:  # the mixed profile's traffic classes, each on its own
            result["classes"] = {
                kind: summarize(
                    [t for t, r in zip(tuples, rows) if r["request_type"] == kind], window_start, step["end"]
                )
                for kind in kinds
            }
        results.append(result)
    return results


def find_knee(steps: list[dict], slo_ms: float) -> dict | None:
    """The step with the highest throughput whose p95 is within the SLO and had no failures."""
    good = [s for s in steps if s["requests"] and not s["failures"] and s["p95_ms"] <= slo_ms]
    return max(good, key=lambda s: s["texts_per_s"]) if good else None


def write_steps_csv(steps: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STEP_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for s in steps:
            writer.writerow({k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()})


def _ms(value: float) -> str:
    return "–" if value != value else f"{value:.1f}"


def markdown(result: dict) -> str:
    """The sweep as a markdown section: what was measured, the table, the knee."""
    t, slo = result["target"], result["slo_ms"]
    header = [
        f"**{t['model']}** over **{t['protocol']}** at `{t['host']}`, {t['texts_per_request']} text(s) per request, "
        f"closed loop (each user sends its next request when the previous one returns).",
        f"Hardware: {result['hardware']} — {result['machine']}. Measured {result['date']}; "
        f"{result['step_seconds']:g} s per step, first {result['warmup_seconds']:g} s of each step not counted.",
    ]
    if result.get("note"):
        header.append(f"Note: {result['note']}")
    if result.get("load_average_1min"):
        before, after = result["load_average_1min"]
        header.append(
            f"Load on the client machine (1-min load average, before / after): {before:g} / {after:g} on "
            f"{result['cpus']} CPUs (Locust shares the machine when the target is local)."
        )
    lines = [
        "\n\n".join(header),
        "",
        f"| users | requests | failures | texts/s | requests/s | p50 ms | p95 ms | p99 ms | max ms | p95 ≤ {slo:g} ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    knee = result.get("knee")
    for s in result["steps"]:
        ok = s["requests"] and not s["failures"] and s["p95_ms"] <= slo
        mark = "**knee**" if knee and s["step"] == knee["step"] else ("yes" if ok else "no")
        lines.append(
            f"| {s['users']} | {s['requests']} | {s['failures']} | {s['texts_per_s']:.1f} | "
            f"{s['requests_per_s']:.1f} | {_ms(s['p50_ms'])} | {_ms(s['p95_ms'])} | {_ms(s['p99_ms'])} | "
            f"{_ms(s['max_ms'])} | {mark} |"
        )
    lines.append("")
    if knee:
        lines.append(
            f"Knee at SLO p95 ≤ {slo:g} ms: **{knee['texts_per_s']:.1f} texts/s** with {knee['users']} "
            f"user{'s' if knee['users'] != 1 else ''} "
            f"(p95 {knee['p95_ms']:.1f} ms)."
        )
    else:
        lines.append(f"No step kept p95 ≤ {slo:g} ms without failures: no throughput meets this SLO.")
    classed = [s for s in result["steps"] if s.get("classes")]
    if classed:
        lines += ["", "Each traffic class on its own:", ""]
        lines += [
            "| users | class | requests | failures | texts/s | p50 ms | p99 ms |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for s in classed:
            for kind, c in s["classes"].items():
                lines.append(
                    f"| {s['users']} | {kind} | {c['requests']} | {c['failures']} | {c['texts_per_s']:.1f} | "
                    f"{_ms(c['p50_ms'])} | {_ms(c['p99_ms'])} |"
                )
        lines.append("")
    failed = [s for s in result["steps"] if s["failures"]]
    for s in failed:
        lines.append(f"- {s['users']} users: {s['failures']} failed requests, e.g. `{(s['errors'] or ['?'])[0]}`")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """p50/p95/p99 latency against achieved texts/s, one point per step; SLO line and knee."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in result["steps"] if s["requests"] > s["failures"]]
    x = [s["texts_per_s"] for s in steps]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for key, style, label in (("p50_ms", "o-", "p50"), ("p95_ms", "s-", "p95"), ("p99_ms", "^-", "p99")):
        ax.plot(x, [s[key] for s in steps], style, label=label, linewidth=1.6, markersize=5)
    for s in steps:
        ax.annotate(
            f"{s['users']}u",
            (s["texts_per_s"], s["p95_ms"]),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
            color="0.3",
        )
    slo = result["slo_ms"]
    ax.axhline(slo, color="crimson", linestyle="--", linewidth=1, label=f"SLO p95 ≤ {slo:g} ms")
    knee = result.get("knee")
    if knee:
        ax.plot(
            [knee["texts_per_s"]],
            [knee["p95_ms"]],
            marker="*",
            markersize=16,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
            label=f"knee: {knee['texts_per_s']:.0f} texts/s",
        )
    latency_axis(ax, [s[k] for s in steps for k in ("p50_ms", "p99_ms")] + [slo])
    t = result["target"]
    ax.set_title(
        f"{t['model']} via {t['protocol']}, {t['texts_per_request']} text(s)/request — {result['hardware']}",
        fontsize=10,
    )
    ax.set_xlabel("achieved throughput (texts/s)")
    ax.set_ylabel("latency per request (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def latency_axis(ax, latencies: list[float]) -> None:
    """Log scale when latencies span more than 30x, labelled at 1-2-5 steps: the default labels only
    powers of ten, which left one labelled tick on a 20-400 ms range."""
    if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 30:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())


def write_outputs(result: dict, directory: Path) -> dict[str, Path]:
    """steps.csv, results.md, latency_vs_throughput.png and sweep.json in `directory`."""
    paths = {
        "steps": directory / "steps.csv",
        "table": directory / "results.md",
        "plot": directory / "latency_vs_throughput.png",
        "json": directory / "sweep.json",
    }
    write_steps_csv(result["steps"], paths["steps"])
    paths["table"].write_text(markdown(result))
    plot(result, paths["plot"])
    paths["json"].write_text(json.dumps(_finite(result), indent=2) + "\n")
    return paths


def _finite(value):
    """NaN (a step without a successful request) is not JSON: write null."""
    if isinstance(value, float):
        return None if value != value else round(value, 3)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def load_sweep(path: str | Path) -> dict:
    """A sweep.json (or its directory); errors name the file and say what was expected."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.json"
    if not path.is_file():
        raise FileNotFoundError(f"no sweep at {path}: run `make loadtest` (or python -m loadtest.sweep) first")
    try:
        sweep = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        sweep = None
    if not isinstance(sweep, dict) or not {"target", "slo_ms", "steps"} <= set(sweep):
        raise ValueError(f"{path} is not a sweep result: expected the sweep.json that loadtest.sweep writes")
    return sweep
