"""A PyTorch checkpoint fed in tokenized batches: fine-tuning's training batches, and in-process
scoring, which fine-tuning reports on its held-out split and `make eval` compares Triton's answers with."""

from __future__ import annotations

from export import calibrate


def batches(texts, labels, tokenizer, size, max_length, shuffle_seed=None):
    import numpy as np
    import torch

    order = np.arange(len(texts))
    groups = [order[start : start + size] for start in range(0, len(order), size)]
    if shuffle_seed is not None:
        # Shuffle, then sort by length within windows of 50 batches, so batches hold texts of
        # similar length (less padding, ~2x faster on CPU) yet differ from epoch to epoch.
        rng = np.random.RandomState(shuffle_seed)
        rng.shuffle(order)
        window = size * 50
        order = np.concatenate(
            [sorted(order[i : i + window], key=lambda j: len(texts[j])) for i in range(0, len(order), window)]
        )
        groups = [order[start : start + size] for start in range(0, len(order), size)]
        rng.shuffle(groups)
    for idx in groups:
        enc = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        yield enc, (torch.tensor([labels[i] for i in idx]) if labels is not None else None)


def predict_logits(model, tokenizer, texts, max_length, batch_size=64):
    """Logits (checkpoint column order) for `texts`, in order."""
    import numpy as np
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for enc, _ in batches(texts, None, tokenizer, batch_size, max_length):
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)


def predict(model, tokenizer, texts, max_length, batch_size=64):
    """Class probabilities (checkpoint column order) for `texts`, in order."""
    logits = predict_logits(model, tokenizer, texts, max_length, batch_size)
    return calibrate.softmax(logits).astype(logits.dtype) if len(logits) else logits
