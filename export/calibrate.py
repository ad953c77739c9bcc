"""Temperature scaling: one number per served model so that its probabilities mean what they say.

    python -m export.calibrate --export build/export/distilbert --data labelled.txt   # sentence@label lines

The served probabilities are softmax(logits / T). T is fitted by minimising the negative
log-likelihood of labelled sentences the model was not trained on (Guo et al., 2017); dividing
every logit by the same T > 0 never changes which label is largest, only how sure the model says
it is. T is kept in the export's model facts (export/facts.py) and applied by the postprocess.
`make finetune` fits it on half of its held-out split (calibration.txt) and reports on the other
half; this command fits it for any export and labelled file, scoring with the export's fp32 ONNX
model. Fit on data the model was not trained on: ProsusAI/finbert was fine-tuned on Financial
PhraseBank, so a temperature fitted or measured there is optimistic for it.

Measures (probabilities in the canonical label order, labels as indices):
- ECE: expected calibration error over ECE_BINS equal-width bins of the top probability
  (confidence), |accuracy - mean confidence| weighted by the share of sentences in each bin;
- NLL: mean negative log-likelihood of the true label (natural log);
- Brier: mean over sentences of the squared distance between the probability vector and the
  one-hot true label (summed over the 3 labels: 0 is perfect, 2 is the worst).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from export.facts import CANONICAL_LABELS, ModelFacts

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. (2017)
TEMPERATURE_RANGE = (0.05, 20.0)  # the search interval; a fit at an end says the data are odd
CALIBRATION_FILENAME = "calibration.json"  # a checkpoint's fitted temperature (make finetune), carried by the export
CALIBRATION_DATA_FILENAME = "calibration.txt"  # the held-out sentences it was fitted on (sentence@label)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-300, None))))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin: its edges, count, mean confidence and accuracy."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    # Bin i holds confidence in (i/bins, (i+1)/bins]; the top probability of 3 labels is > 1/3 anyway.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for i in range(bins):
        members = index == i
        n = int(members.sum())
        out.append(
            {
                "low": i / bins,
                "high": (i + 1) / bins,
                "n": n,
                "confidence": float(confidence[members].mean()) if n else None,
                "accuracy": float(correct[members].mean()) if n else None,
            }
        )
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    total = len(labels)
    return float(
        sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in reliability(probs, labels, bins) if b["n"])
    )


def measures(probs: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "ece": ece(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "mean_confidence": float(probs.max(axis=1).mean()),
    }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising NLL of softmax(logits / T): golden-section search on log T.

    NLL is convex in 1/T (log-sum-exp of a linear function minus a linear function), so the
    1-D search finds the global minimum within TEMPERATURE_RANGE.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("no labelled sentences to fit a temperature on")

    def loss(log_t):
        return nll(softmax(logits, float(np.exp(log_t))), labels)

    a, b = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > 1e-5:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return round(float(np.exp((a + b) / 2)), 4)


def label_indices(labels: list[str]) -> np.ndarray:
    return np.array([CANONICAL_LABELS.index(label) for label in labels])


def report(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """Calibration of `logits` (canonical order) before (T = 1) and after the temperature."""
    return {
        "n": int(len(labels)),
        "temperature": temperature,
        "ece_bins": ECE_BINS,
        "before": measures(softmax(logits), labels),
        "after": measures(softmax(logits, temperature), labels),
    }


def describe(r: dict) -> str:
    b, a = r["before"], r["after"]
    return (
        f"T = {r['temperature']:.3f} on {r['n']} sentences: ECE ({r['ece_bins']} bins) {b['ece']:.4f} -> "
        f"{a['ece']:.4f}, NLL {b['nll']:.4f} -> {a['nll']:.4f}, Brier {b['brier']:.4f} -> {a['brier']:.4f}"
    )


def fitted_on(path: Path, n: int) -> dict:
    from export import fpb

    return {
        "file": Path(path).name,
        "path": str(Path(path).resolve()),
        "sha256": fpb.sha256(path),
        "n": n,
        "by": "export.calibrate",
    }


def carry(checkpoint: Path, export_dir: Path, facts: ModelFacts) -> ModelFacts:
    """The export's facts with the checkpoint's fitted temperature (calibration.json), if it has one.

    A temperature this command fitted on the export itself stays: it is the later, deliberate choice
    (a new checkpoint makes a new export, whose facts start at T = 1)."""
    import dataclasses

    path = Path(checkpoint) / CALIBRATION_FILENAME
    if not path.is_file() or (facts.calibration or {}).get("by") == "export.calibrate":
        return facts
    saved = json.loads(path.read_text())
    wanted = {"temperature": saved["temperature"], "calibration": saved["fitted_on"]}
    if {"temperature": facts.temperature, "calibration": facts.calibration} != wanted:
        facts = dataclasses.replace(facts, **wanted)
        facts.save(export_dir)
    return facts


def calibrate_export(export_dir: Path, data: Path, *, log=print) -> dict:
    """Fit the temperature of `export_dir` (its fp32 model) on `data` and write it to its facts."""
    import dataclasses

    from export import fpb
    from export.runtime import OnnxClassifier

    rows = fpb.read(data)
    classifier = OnnxClassifier(export_dir, "fp32")
    logits = classifier.logits([s for s, _ in rows])[:, classifier.facts.canonical_index]
    labels = label_indices([label for _, label in rows])
    temperature = fit_temperature(logits, labels)
    result = report(logits, labels, temperature)
    facts = dataclasses.replace(
        ModelFacts.load(export_dir), temperature=temperature, calibration=fitted_on(data, len(rows))
    )
    facts.save(export_dir)
    log(
        f"[{facts.name}] {describe(result)} (fitted and measured on the same file: see make eval for held-out "
        f"figures); written to {export_dir / 'model_facts.json'}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    from export.cli import existing_export

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=existing_export, required=True, help="an export directory (export.onnx)")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="labelled sentences the model was not trained on (sentence@label, like FPB's files)",
    )
    args = parser.parse_args(argv)
    from export import fpb

    if not args.data.is_file():
        parser.error(f"--data {args.data}: no such file")
    try:
        calibrate_export(args.export, args.data)
    except (fpb.DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
