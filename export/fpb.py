"""Financial PhraseBank (Malo et al., 2014): read it, de-duplicate, split, score predictions.

The data is licensed CC BY-NC-SA 3.0 and is never copied into this repository: it is read
from a local `Sentences_*Agree.txt` (latin-1, one `sentence@label` per line) or fetched from
the Hugging Face Hub (`takala/financial_phrasebank`). Labels use CANONICAL_LABELS, which is
also the dataset's own order (0 negative, 1 neutral, 2 positive).
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from export.facts import CANONICAL_LABELS

LABELS = CANONICAL_LABELS
ENCODING = "latin-1"
HUB_DATASET = "takala/financial_phrasebank"
HUB_ARCHIVE = "data/FinancialPhraseBank-v1.0.zip"  # what the dataset's loading script reads
REPO_ROOT = Path(__file__).resolve().parent.parent
# Where this workplace (and CI, next to the clone) keeps a read-only copy.
# A local Financial PhraseBank copy: FINSENT_FPB_DIR, else ../shared/data/financial_phrasebank next to the clone.
SHARED_DIR = Path(os.environ.get("FINSENT_FPB_DIR") or REPO_ROOT.parent / "shared" / "data" / "financial_phrasebank")


class DataError(ValueError):
    """A file that is not Financial PhraseBank sentences, or too few of them to split."""


def shared_file(agree: str = "75") -> Path | None:
    path = SHARED_DIR / f"Sentences_{agree}Agree.txt"
    return path if path.exists() else None


def hub_file(agree: str = "75", cache_dir: Path | None = None) -> Path:
    """Download the dataset archive from the Hub and extract `Sentences_<agree>Agree.txt`."""
    from huggingface_hub import hf_hub_download

    archive = Path(hf_hub_download(HUB_DATASET, HUB_ARCHIVE, repo_type="dataset", cache_dir=cache_dir))
    member = f"FinancialPhraseBank-v1.0/Sentences_{agree}Agree.txt"
    target = archive.parent / Path(member).name
    if not target.exists():
        with zipfile.ZipFile(archive) as zf:
            target.write_bytes(zf.read(member))
    return target


def read(path: Path) -> list[tuple[str, str]]:
    """(sentence, label) pairs from a `sentence@label` file."""
    rows = []
    with open(path, encoding=ENCODING) as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            sentence, sep, label = line.rpartition("@")
            label = label.strip().lower()
            if not sep or label not in LABELS or not sentence.strip():
                raise DataError(
                    f"{path}:{number}: expected `sentence@label` with a label in {list(LABELS)}, got {line[:80]!r}"
                )
            rows.append((sentence.strip(), label))
    if not rows:
        raise DataError(f"{path} has no sentences")
    return rows


def detokenize(sentence: str) -> str:
    """FPB's tokenized text ("EUR 1.5 mn .", "Componenta 's", "( CFSB )") back to written form."""
    s = re.sub(r" ([.,;:!?%)])", r"\1", sentence)
    s = re.sub(r"\( ", "(", s)
    return re.sub(r" (['\u2019]s)\b", r"\1", s).strip()


def write(rows: list[tuple[str, str]], path: Path) -> Path:
    """Write pairs in the dataset's own format, so `read` (and anyone) can re-score them."""
    Path(path).write_text("".join(f"{s}@{label}\n" for s, label in rows), encoding=ENCODING)
    return Path(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dedupe(rows: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """Keep the first occurrence of each sentence; a sentence seen with two labels is dropped."""
    labels: dict[str, set[str]] = {}
    for sentence, label in rows:
        labels.setdefault(sentence, set()).add(label)
    seen, kept = set(), []
    for sentence, label in rows:
        if sentence in seen or len(labels[sentence]) > 1:
            continue
        seen.add(sentence)
        kept.append((sentence, label))
    return kept, len(rows) - len(kept)


def stratified_split(rows: list[tuple[str, str]], test_size: float = 0.2, seed: int = 42):
    """(train, test): each label contributes round(test_size * its count) rows to test."""
    rng = np.random.RandomState(seed)
    train_idx, test_idx = [], []
    for label in LABELS:
        idx = np.array([i for i, (_, lab) in enumerate(rows) if lab == label], dtype=int)
        rng.shuffle(idx)
        n_test = int(round(test_size * len(idx)))
        test_idx += idx[:n_test].tolist()
        train_idx += idx[n_test:].tolist()
    # Shuffled once more so neither file is grouped by label.
    train_idx, test_idx = rng.permutation(train_idx), rng.permutation(test_idx)
    return [rows[i] for i in train_idx], [rows[i] for i in test_idx]


def check_split(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> None:
    """Refuse a split that cannot train on or score every label: accuracy on 1 sentence says nothing."""
    for name, part in (("held-out", test), ("training", train)):
        if missing := [label for label in LABELS if label not in {lab for _, lab in part}]:
            raise DataError(
                f"the {name} set has no {'/'.join(missing)} sentence ({len(train)} train, {len(test)} "
                f"held out): use more sentences (--limit) or another --test-size"
            )


def scores(y_true: list[str], y_pred: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows: truth)."""
    index = {label: i for i, label in enumerate(LABELS)}
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[index[t], index[p]] += 1
    per_class = {}
    for i, label in enumerate(LABELS):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(confusion[i].sum()),
        }
    return {
        "n": int(confusion.sum()),
        "accuracy": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "labels": list(LABELS),
    }
