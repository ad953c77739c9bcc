"""FPB-format sentences for tests: a sample of the real file from ../shared when it is there
(read in place, never copied into the repo), else synthetic sentences in the same format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export import fpb

_SYNTHETIC = {
    "positive": [
        "{c} net profit rose {n} % to EUR {m} mn .",
        "{c} won a EUR {m} mn order and raised its outlook .",
        "Operating profit of {c} increased by {n} percent .",
    ],
    "negative": [
        "{c} swung to a loss of EUR {m} mn .",
        "{c} cut {n} jobs as sales fell {n} % .",
        "Shares in {c} dropped {n} % after a profit warning .",
    ],
    "neutral": [
        "{c} will publish its interim report on {n} April .",
        "{c} is headquartered in Helsinki .",
        "The meeting of {c} shareholders is held in room {n} .",
    ],
}


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.RandomState(seed)
    weights = {"neutral": 0.6, "positive": 0.27, "negative": 0.13}  # FPB-like imbalance
    labels = rng.choice(list(weights), size=n, p=list(weights.values()))
    return [
        (rng.choice(_SYNTHETIC[label]).format(c=f"Company{i}", n=rng.randint(2, 60), m=rng.randint(2, 900)), str(label))
        for i, label in enumerate(labels)
    ]


def sample_file(path: Path, n: int, seed: int = 0) -> tuple[Path, str]:
    """Write n FPB-format sentences to `path`; returns (path, where they came from)."""
    shared = fpb.shared_file("75")
    if shared:
        rows = fpb.read(shared)
        idx = np.random.RandomState(seed).permutation(len(rows))[:n]
        rows, origin = [rows[i] for i in sorted(idx)], f"sample of {shared}"
    else:
        rows, origin = synthetic_rows(n, seed), "synthetic (no ../shared copy of FPB)"
    return fpb.write(rows, path), origin
