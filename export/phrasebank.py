"""Financial PhraseBank v1.0 (Malo et al.): `Sentences_<N>Agree.txt`, latin-1, one `sentence@label` a line.

The data is CC BY-NC-SA 3.0: it is read where it lies, never copied into this repository.
Offline it sits in ../shared/data/financial_phrasebank/ next to a checkout; FPB_DIR overrides.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUBSETS = {"50": "Sentences_50Agree.txt", "66": "Sentences_66Agree.txt", "75": "Sentences_75Agree.txt",
           "all": "Sentences_AllAgree.txt"}


def default_dir() -> Path | None:
    for candidate in (os.environ.get("FPB_DIR"), REPO.parent / "shared" / "data" / "financial_phrasebank"):
        if candidate and (Path(candidate) / SUBSETS["75"]).exists():
            return Path(candidate)
    return None


def default_file(subset: str = "75") -> Path | None:
    directory = default_dir()
    return directory / SUBSETS[subset] if directory else None


def read(path: Path) -> tuple[list[str], list[str]]:
    """Sentences and labels (negative/neutral/positive) of one FPB file, in file order."""
    sentences, labels = [], []
    for number, line in enumerate(Path(path).read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        sentence, sep, label = line.rpartition("@")
        if not sep or label.strip() not in ("negative", "neutral", "positive"):
            raise ValueError(f"{path}:{number}: expected 'sentence@negative|neutral|positive'")
        sentences.append(sentence.strip())
        labels.append(label.strip())
    return sentences, labels
