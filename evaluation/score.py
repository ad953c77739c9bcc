"""The two sides of `make eval`: probabilities served by Triton, through the client package, and
the PyTorch checkpoint's own, in process; both in the canonical label order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.facts import CANONICAL_LABELS, canonical_index
from finsent import Client, Retry
from training.predict import predict


def served_outputs(url: str, model: str, texts: list[str], logits: bool = False) -> dict[str, np.ndarray]:
    """PROBABILITIES (and with `logits`, LOGITS: before the temperature) of the `model` ensemble at
    gRPC `url`, in requests of its max_batch_size."""
    # One request at a time: int8's probabilities move with the texts batched with them (docs/serving.md),
    # so concurrent requests would make a variant's figures vary from run to run. One try and no
    # deadline: a --url that cannot be reached is named at once, and a 64-sentence FinBERT request on a
    # busy CPU may take longer than the client's default 30 s.
    client = Client(url, model=model, logits=logits, max_in_flight=1, retry=Retry(attempts=0), timeout_s=None)
    with client:
        predictions = client.classify(texts)
    out = {"PROBABILITIES": columns([p.probabilities for p in predictions])}
    if logits:
        out["LOGITS"] = columns([p.logits for p in predictions])
    return out


def columns(rows: list[dict[str, float]]) -> np.ndarray:
    """float32 [n, 3] in canonical order from the client's {label: value} per text (float32 values)."""
    return np.array([[row[label] for label in CANONICAL_LABELS] for row in rows], dtype=np.float32).reshape(
        len(rows), len(CANONICAL_LABELS)
    )


def served_probabilities(url: str, model: str, texts: list[str]) -> np.ndarray:
    """PROBABILITIES (canonical order) from the `model` ensemble at gRPC `url`."""
    return served_outputs(url, model, texts)["PROBABILITIES"]


def inprocess_probabilities(checkpoint: Path, texts: list[str], max_length: int) -> np.ndarray:
    """PyTorch probabilities in canonical order (the checkpoint's columns re-ordered by its id2label)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, use_fast=True)
    id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return predict(model, tokenizer, texts, max_length)[:, canonical_index(id2label)]
