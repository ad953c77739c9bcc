"""What the scores say: served vs in-process labels and the gate they pass, and the calibration of
the served probabilities before and after the model's temperature."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export import calibrate, fpb
from export.facts import CANONICAL_LABELS, ModelFacts
from export.optimize import judge


def compare(rows, served: np.ndarray, inprocess: np.ndarray, variant: str) -> dict:
    truth = [label for _, label in rows]
    served_labels = [CANONICAL_LABELS[i] for i in served.argmax(-1)]
    local_labels = [CANONICAL_LABELS[i] for i in inprocess.argmax(-1)]
    differ = [i for i, (a, b) in enumerate(zip(served_labels, local_labels)) if a != b]
    result = {
        "served": fpb.scores(truth, served_labels),
        "inprocess": fpb.scores(truth, local_labels),
        "disagreements": len(differ),
        "agreement": 1 - len(differ) / max(len(rows), 1),
        "max_abs_probability_diff": float(np.abs(served - inprocess).max()) if len(rows) else 0.0,
        "disagreeing_rows": differ[:20],
    }
    if variant == "fp32":
        result["gate"] = {"rule": "0 disagreements", "passed": not differ}
    else:  # the guard's own rule (export/optimize.py), now on what the server returned
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
    return set(), (
        ""
        if not fitted
        else f"not found ({fitted.get('file')}): the figures may include the sentences the temperature was fitted on"
    )


def calibration(rows, logits: np.ndarray, probs: np.ndarray, left_out: set[str], where: str) -> dict:
    """Before (softmax of the served LOGITS) and after (served PROBABILITIES) the temperature."""
    keep = np.array([s not in left_out for s, _ in rows], dtype=bool)
    labels = calibrate.label_indices([label for _, label in rows])[keep]
    before, after = calibrate.softmax(logits[keep]), probs[keep].astype(np.float64)
    # The temperature the server applied, read back from its outputs (its facts may not be here).
    # log(p_max / p_min) = (z_max - z_min) / T, so the ratio before/after is T; rows away from float32's limits.
    usable = (before.max(1) < 0.999) & (after.min(1) > 1e-12)
    ratio = np.log(before[usable].max(1) / before[usable].min(1))
    temperature = float(np.median(ratio / np.log(after[usable].max(1) / after[usable].min(1)))) if usable.any() else 1.0
    return {
        "n": int(keep.sum()),
        "left_out": int((~keep).sum()),
        "fitted_on": where,
        "ece_bins": calibrate.ECE_BINS,
        "temperature": round(temperature, 4),
        "before": calibrate.measures(before, labels),
        "after": calibrate.measures(after, labels),
        "reliability_before": calibrate.reliability(before, labels),
        "reliability_after": calibrate.reliability(after, labels),
    }
