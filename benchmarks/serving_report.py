"""Markdown table and latency-vs-throughput plot for benchmarks/serving.py results."""

from __future__ import annotations

from pathlib import Path

from benchmarks import levels
from benchmarks.levels import Level, Measured
from benchmarks.markdown import table
from model_repository.assemble import TargetOptions

TARGET_RATIO, TARGET_P50_EXTRA_MS, TARGET_P99_MS = 0.95, 2.0, 400.0
# The served classifier's rule (benchmarks.serving.server_groups), named in serving.json by its overhead.
SPLIT_RULE = f"split (overhead {TargetOptions.run_overhead_tokens} tokens)"
CPU_COLUMNS = (
    "classifier stub",
    "tokenizer stub",
    "postprocess stub",
    "tritonserver (frontend, ensemble)",
    "load generator (bench client)",
)


def runs(measured: dict, key: str, unit: str = "") -> str:
    """' (mean of a / b, before / after the ensemble)' where the bench measured `key` twice."""
    values = measured.get(f"{key}_runs")
    if not values:
        return ""
    return f" (mean of {' / '.join(f'{v:.1f}' for v in values)}{unit}, before / after the ensemble)"


def latencies(figures: Measured) -> list[str]:
    """A load level's texts/s, p50, p95, p99 and errors, as the main table prints them."""
    return [
        f"{figures.texts_per_s:.1f}",
        f"{figures.p50_ms:.1f}",
        f"{figures.p95_ms:.1f}",
        f"{figures.p99_ms:.1f}",
        figures.errors,
    ]


def markdown(results: dict) -> str:
    lines = [
        f"# Serving benchmark ({results['when']})",
        "",
        f"Machine: {results['machine']}. Sentences: {results['sentences']}. "
        f"{results['duration_s']:.0f} s measured per load level, all in one run (`make bench`).",
        "",
    ]
    for family, entry in results["models"].items():
        guard = ", ".join(f"{v} agrees with fp32 on {g['agreement']:.1%}" for v, g in entry.get("guard", {}).items())
        note = (
            "random weights: the accuracy guard is not applied (near-tied logits); "
            if not entry.get("guard_applied")
            else "accuracy guard applied; "
        )
        triton = {variant: levels.load(v["triton"]) for variant, v in entry["variants"].items()}
        baseline = levels.load(entry.get("baseline", {}))
        rows = []
        for variant, v in entry["variants"].items():
            ip = v["in_process"]
            rows.append(
                [
                    variant,
                    f"in-process ORT, sorted batches of 32 (limit){runs(ip, 'limit_texts_per_s')}",
                    "-",
                    f"{ip['limit_texts_per_s']:.1f}",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            rows.append(
                [
                    variant,
                    f"in-process ORT, batch 1{runs(ip, 'batch1_p50_ms', ' ms')}",
                    "1 × 1",
                    f"{ip['batch1_texts_per_s']:.1f}",
                    f"{ip['batch1_p50_ms']:.1f}",
                    "",
                    "",
                    "",
                ]
            )
            if "batch1_no_spinning_p50_ms" in ip:
                rows.append(
                    [
                        variant,
                        "in-process ORT, batch 1, threads not spinning",
                        "1 × 1",
                        "",
                        f"{ip['batch1_no_spinning_p50_ms']:.1f}",
                        "",
                        "",
                        "",
                    ]
                )
            for level, figures in triton[variant].items():
                client = " (perf_analyzer)" if figures.client == "perf_analyzer" else ""
                rows.append([variant, f"Triton ensemble, gRPC{client}", level.name, *latencies(figures)])
        for level, figures in baseline.items():
            rows.append(["fp32 (PyTorch)", "Starlette + pipeline baseline", level.name, *latencies(figures)])
        lines += [
            f"## {family} — `{entry['source']}`",
            "",
            f"_{note}{guard}._" if guard else "",
            "",
            *table(["variant", "path", "clients × texts", "texts/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows),
        ]
        rows = []
        base16 = baseline[Level(16)].texts_per_s if Level(16) in baseline else None
        for variant, v in entry["variants"].items():
            ip = v["in_process"]
            for name, client in (("Python gRPC threads", ""), ("perf_analyzer", "perf_analyzer")):
                t16, t1 = triton[variant].get(Level(16, client=client)), triton[variant].get(Level(1, client=client))
                if not t16 or not t1:
                    continue
                ratio = t16.texts_per_s / ip["limit_texts_per_s"]
                budget = ip["batch1_p50_ms"] + TARGET_P50_EXTRA_MS
                versus = f"{t16.texts_per_s / base16:.1f}×" if base16 else "-"
                # What 16 single-text clients allow at best: the classifier's split rule on every
                # group of 16, in-process with all cores (see "How the classifier runs" below).
                groups16 = v.get("classifier_split", {}).get(SPLIT_RULE)
                ceiling = f"{t16.texts_per_s / groups16:.2f}" if groups16 else "-"
                rows.append(
                    [
                        variant,
                        name,
                        f"{ratio:.2f} ({'met' if ratio >= TARGET_RATIO else 'short'} ≥ {TARGET_RATIO})",
                        versus,
                        f"{t1.p50_ms:.1f} vs {budget:.1f} ms ({'met' if t1.p50_ms <= budget else 'short'})",
                        f"{t16.p99_ms:.0f} ms",
                        ceiling,
                    ]
                )
        lines += [
            "",
            "Targets (same run):",
            "",
            *table(
                [
                    "variant",
                    "load generator",
                    "ensemble@16 / limit",
                    "ensemble@16 / baseline@16",
                    "1-client p50 vs batch-1 + 2 ms",
                    "p99@16",
                    "ensemble@16 / groups of 16",
                ],
                rows,
            ),
        ]
        rows = []
        for variant in entry["variants"]:
            sixteen = triton[variant].get(Level(16))
            for step, s in (sixteen.steps if sixteen and sixteen.steps else {}).items():
                hist = ", ".join(f"{k}: {n}" for k, n in sorted(s["batch_histogram"].items(), key=lambda x: int(x[0])))
                rows.append(
                    [
                        variant,
                        step,
                        s["requests"],
                        s["executions"],
                        f"{s['queue_us_per_request']:.0f}",
                        f"{s['compute_us_per_request']:.0f}",
                        hist,
                    ]
                )
        lines += [
            "",
            "Per-step Triton times at 16 clients (µs per request) and the classifier's batch sizes:",
            "",
            *table(
                [
                    "variant",
                    "step",
                    "requests",
                    "executions",
                    "queue µs",
                    "compute µs",
                    "batch sizes (size: executions)",
                ],
                rows,
            ),
        ]
        rows = []
        for variant in entry["variants"]:
            for level, figures in triton[variant].items():
                share = figures.cpu_share
                if share:
                    cells = [share.get(name, 0.0) for name in CPU_COLUMNS]
                    rows.append([variant, level.name, *(f"{c:.0%}" for c in cells), f"{max(0.0, 1 - sum(cells)):.0%}"])
        lines += [
            "",
            "Where the cores went (CPU time over each level as a share of all cores; the load generator "
            "is this benchmark's Python gRPC clients, on the same cores):",
            "",
            *table(["variant", "clients × texts", *CPU_COLUMNS, "idle"], rows),
        ]
        splits = {variant: v["classifier_split"] for variant, v in entry["variants"].items() if "classifier_split" in v}
        if splits:
            lines += [
                "",
                "How the classifier runs a batch of 16 mixed-length texts (in-process, texts/s):",
                "",
                *table(
                    ["variant", *next(iter(splits.values()))],
                    [[variant, *(f"{x:.1f}" for x in split.values())] for variant, split in splits.items()],
                ),
            ]
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(results["models"])
    fig, axes = plt.subplots(1, len(families), figsize=(6.5 * len(families), 4.8), squeeze=False)
    for ax, family in zip(axes[0], families):
        entry = results["models"][family]
        for i, (variant, v) in enumerate(entry["variants"].items()):
            color = f"C{i}"
            triton = levels.load(v["triton"])
            singles = [lv for level, lv in triton.items() if level.texts_per_request == 1 and not level.client]
            xs = [lv.texts_per_s for lv in singles]
            for q, style in (("p50_ms", "-o"), ("p95_ms", "--s"), ("p99_ms", ":^")):
                ax.plot(xs, [getattr(lv, q) for lv in singles], style, color=color, label=f"Triton {variant} {q[:3]}")
            for lv in singles:
                ax.annotate(
                    f"{lv.clients}c",
                    (lv.texts_per_s, lv.p50_ms),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=7,
                    color=color,
                )
            pa = [lv for level, lv in triton.items() if level.client == "perf_analyzer"]
            if pa:
                ax.plot(
                    [lv.texts_per_s for lv in pa],
                    [lv.p99_ms for lv in pa],
                    "D",
                    color=color,
                    mfc="none",
                    label=f"perf_analyzer {variant} p99",
                )
            ax.axvline(
                v["in_process"]["limit_texts_per_s"], color=color, alpha=0.4, label=f"in-process limit {variant}"
            )
        base = list(levels.load(entry.get("baseline", {})).values())
        if base:
            ax.plot([b.texts_per_s for b in base], [b.p50_ms for b in base], "kx--", label="baseline p50")
            ax.plot([b.texts_per_s for b in base], [b.p99_ms for b in base], "k+:", label="baseline p99")
        ax.set_yscale("log")
        ax.set_xlabel("achieved texts/s")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(f"{family}: latency vs throughput (1, 4, 16 clients)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"finsent serving benchmark — {results['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
