"""What the served-model benchmarks run on: Financial PhraseBank sentences (the built-in parity
sentences without the data) and the checkpoint given, else a random-weight base-size one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export import fpb
from export.facts import FAMILIES
from export.sentences import PARITY_SENTENCES
from loadtest import random_models

# Random weights: the guard refuses nothing (near-tied logits), so it scores a sample, not all of FPB.
UNGUARDED_SAMPLE = 500


def sentences(limit: int) -> tuple[list[str], str]:
    """Up to `limit` sentences in a fixed random order, and where they come from (the reports say)."""
    path = fpb.shared_file("75")
    if path is None:
        return list(PARITY_SENTENCES[:-1]) * 10, "built-in sentences (no Financial PhraseBank file found)"
    texts = [sentence for sentence, _ in fpb.read(path)]
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))[:limit]]
    return texts, f"Financial PhraseBank 75% agreement, {len(texts)} sentences in random order"


def checkpoint(family: str, source: str | None, build: Path) -> str:
    """`source` when given, else `family`'s random-weight base-size checkpoint (FinBERT's or
    DistilBERT-base's shape), built once in build/checkpoints."""
    if source:
        return source
    arch = FAMILIES[family].arch
    path = build / "checkpoints" / f"{arch}-base-random"
    if not (path / "config.json").exists():
        print(f"building a random-weight {arch}-base checkpoint in {path} ...")
    return str(random_models.checkpoint(family, path, size="base"))
