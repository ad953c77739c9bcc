"""Export a Hugging Face sentiment classifier to ONNX, gate it on parity, write its model facts.

    python -m export.onnx --model ProsusAI/finbert --name finbert --out build/export/finbert
    python -m export.onnx --model path/to/checkpoint --name distilbert --out build/export/distilbert

Built on optimum's ONNX exporter (dynamic batch and sequence axes). After every export the
parity gate scores PARITY_SENTENCES with PyTorch and ONNX Runtime and refuses the export if
any probability differs by more than --atol or any argmax differs; the report is printed
and saved as parity_report.json next to model.onnx. Exports are cached: the output keeps a
fingerprint of the source files, options and exporter versions, and a re-run with the same
fingerprint does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from export.calibrate import carry
from export.cli import bounded
from export.facts import FAMILIES, MIN_MAX_LENGTH, FactsError, ModelFacts
from export.quiet import known_noise_silenced
from export.sentences import PARITY_SENTENCES

FINGERPRINT_FILENAME = "export_fingerprint.json"
PARITY_FILENAME = "parity_report.json"
MAX_LENGTH_CAP = 512
# optimum exports through torch.onnx.export(dynamo=False): torch 2.13 supports opsets up to 20 there
# (21-23 only warn, 24 fails); optimum recommends 18 for BERT-family models (the default here).
OPSETS = (14, 20)
# Files of a checkpoint that decide what gets exported (weights, config, tokenizer).
SOURCE_PATTERNS = [
    "config.json",
    "*.safetensors",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
]


class SourceUnavailable(RuntimeError):
    """The checkpoint cannot be had: missing directory, no network, unknown hub id."""


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond tolerance."""


@dataclass
class ExportResult:
    path: Path
    facts: ModelFacts
    cached: bool


def resolve_source(model: str) -> Path:
    """A local checkpoint directory for `model` (a directory, or a hub id fetched into the HF cache)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise SourceUnavailable(f"{path} has no config.json: not a Hugging Face checkpoint directory")
        return path.resolve()
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1 or path.exists():
        raise SourceUnavailable(f"checkpoint directory {model} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, allow_patterns=SOURCE_PATTERNS))
    except Exception as exc:  # offline, unknown id, gated repo...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason if len(reason) <= 400 else reason[:400].rsplit(" ", 1)[0] + " …"  # cut at a word
        raise SourceUnavailable(
            f"could not get {model!r} from the Hugging Face Hub ({type(exc).__name__}: {reason})"
        ) from exc


def fingerprint(source: Path, options: dict) -> dict:
    """What decides an export's result: source file contents, options and exporter versions."""
    digest = hashlib.sha256()
    for file in sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")):
        if not any(file.match(pattern) for pattern in SOURCE_PATTERNS):
            continue
        digest.update(file.name.encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    versions = {pkg: version(pkg) for pkg in ("torch", "transformers", "optimum", "optimum-onnx", "onnx")}
    return {"source_sha256": digest.hexdigest(), "options": options, "versions": versions}


def max_length_of(tokenizer, config) -> int:
    limits = [MAX_LENGTH_CAP, getattr(config, "max_position_embeddings", MAX_LENGTH_CAP)]
    if 0 < (tokenizer.model_max_length or 0) < 100_000:  # unset means a huge sentinel value
        limits.append(tokenizer.model_max_length)
    return int(min(limits))


def parity_report(model, tokenizer, onnx_path: Path, facts: ModelFacts, atol: float) -> dict:
    """Score PARITY_SENTENCES one by one and as one padded batch with PyTorch and ONNX Runtime."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from export.calibrate import softmax

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows, batches = [], [[s] for s in PARITY_SENTENCES] + [list(PARITY_SENTENCES)]
    worst = 0.0
    for batch in batches:
        enc = tokenizer(batch, truncation=True, max_length=facts.max_length, padding=True, return_tensors="np")
        feeds = {name: enc[name].astype(np.int64) for name in facts.input_names}
        with torch.no_grad():
            torch_logits = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        onnx_logits = session.run([facts.output_name], feeds)[0]
        p_torch, p_onnx = softmax(torch_logits.astype(np.float64)), softmax(onnx_logits.astype(np.float64))
        diff = np.abs(p_torch - p_onnx).max(axis=-1)
        same = p_torch.argmax(-1) == p_onnx.argmax(-1)
        worst = max(worst, float(diff.max()))
        if len(batch) == 1:
            rows.append(
                {
                    "text": batch[0][:60],
                    "tokens": int(enc["attention_mask"].sum()),
                    "max_abs_diff": float(diff[0]),
                    "argmax_equal": bool(same[0]),
                    "label": facts.id2label[int(p_torch[0].argmax())],
                }
            )
        else:
            rows.append(
                {
                    "text": f"<all {len(batch)} sentences as one padded batch>",
                    "tokens": int(enc["attention_mask"].shape[1]),
                    "max_abs_diff": float(diff.max()),
                    "argmax_equal": bool(same.all()),
                    "label": "-",
                }
            )
    ok = worst <= atol and all(r["argmax_equal"] for r in rows)
    return {
        "model": facts.name,
        "variant": facts.variant,
        "atol": atol,
        "max_abs_diff": worst,
        "passed": ok,
        "rows": rows,
    }


def format_report(report: dict) -> str:
    lines = [
        f"parity {report['model']} ({report['variant']}): max |p_torch - p_onnx| = "
        f"{report['max_abs_diff']:.2e} (limit {report['atol']:.0e}) -> {'PASS' if report['passed'] else 'FAIL'}",
        f"  {'tokens':>6}  {'max diff':>9}  argmax  text",
    ]
    for r in report["rows"]:
        lines.append(
            f"  {r['tokens']:>6}  {r['max_abs_diff']:9.2e}  {'same' if r['argmax_equal'] else 'DIFF':>6}  {r['text']}"
        )
    return "\n".join(lines)


def export_model(
    model: str,
    name: str,
    out: Path,
    *,
    max_length: int | None = None,
    opset: int = 18,
    atol: float = 1e-4,
    force: bool = False,
    log=print,
) -> ExportResult:
    """Export `model` to `out` unless a cached export of the same source and options is there."""
    out = Path(out)
    source = resolve_source(model)
    options = {"name": name, "max_length": max_length, "opset": opset, "atol": atol, "variant": "fp32"}
    wanted = fingerprint(source, options)
    fp_file = out / FINGERPRINT_FILENAME
    if not force and fp_file.exists() and (out / "model.onnx").exists():
        if json.loads(fp_file.read_text()) == wanted:
            log(f"[{name}] export cached in {out} (source unchanged)")
            return ExportResult(out, carry(source, out, ModelFacts.load(out)), cached=True)

    import torch
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    log(f"[{name}] exporting {model} to ONNX (opset {opset}) ...")
    with known_noise_silenced():
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
    if not tokenizer.is_fast:
        raise FactsError(f"{model} has no fast tokenizer (tokenizer.json); the Triton tokenizer needs one")
    # Eager attention exports plain MatMul/Softmax graphs that ONNX Runtime's transformer
    # optimizer can fuse into Attention nodes (SDPA exports do not fuse).
    torch_model = AutoModelForSequenceClassification.from_pretrained(
        source, attn_implementation="eager", dtype=torch.float32
    ).eval()
    config = torch_model.config
    id2label = [config.id2label[i] for i in range(config.num_labels)]
    # Checked before the slow export: longer inputs than the position embeddings crash the parity check.
    positions = min(MAX_LENGTH_CAP, getattr(config, "max_position_embeddings", MAX_LENGTH_CAP))
    if max_length is not None and not MIN_MAX_LENGTH <= max_length <= positions:
        raise FactsError(
            f"max length {max_length} is outside {MIN_MAX_LENGTH}..{positions} (the checkpoint's "
            f"position embeddings, at most {MAX_LENGTH_CAP})"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; images and other users must read it
    try:
        with known_noise_silenced():
            onnx_export_from_model(
                torch_model,
                tmp,
                opset=opset,
                task="text-classification",
                do_validation=False,
                preprocessors=[tokenizer],
            )
        import onnx

        graph = onnx.load(str(tmp / "model.onnx"), load_external_data=False).graph
        facts = ModelFacts(
            name=name,
            source=str(model),
            model_type=config.model_type,
            id2label=id2label,
            max_length=max_length or max_length_of(tokenizer, config),
            input_names=[i.name for i in graph.input],
            output_name=graph.output[0].name,
        )
        tokenizer.save_pretrained(tmp)  # tokenizer.json is what the Triton tokenizer loads
        facts.save(tmp)
        report = parity_report(torch_model, tokenizer, tmp / "model.onnx", facts, atol)
        (tmp / PARITY_FILENAME).write_text(json.dumps(report, indent=2) + "\n")
        log(format_report(report))
        if not report["passed"]:
            raise ParityError(
                f"[{name}] ONNX export disagrees with PyTorch (max diff {report['max_abs_diff']:.2e}, "
                f"limit {atol:.0e}); export refused, see the report above"
            )
        fp_tmp = tmp / FINGERPRINT_FILENAME
        fp_tmp.write_text(json.dumps(wanted, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"[{name}] exported to {out}")
    # Not in the fingerprint: a temperature fitted later changes the facts, never the ONNX file.
    return ExportResult(out, carry(source, out, facts), cached=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Hugging Face hub id or local checkpoint directory")
    parser.add_argument("--name", required=True, choices=FAMILIES, help="served model family name")
    parser.add_argument("--out", type=Path, help="output directory (default: build/export/<name>)")
    parser.add_argument(
        "--max-length",
        type=bounded(int, MIN_MAX_LENGTH, MAX_LENGTH_CAP),
        help=f"truncation length (default: the checkpoint's, at most {MAX_LENGTH_CAP})",
    )
    parser.add_argument("--opset", type=bounded(int, *OPSETS), default=18, help="ONNX opset (default 18)")
    parser.add_argument(
        "--atol", type=bounded(float, 0), default=1e-4, help="parity tolerance on probabilities (default 1e-4)"
    )
    parser.add_argument("--force", action="store_true", help="re-export even when the cache is valid")
    args = parser.parse_args(argv)
    try:
        export_model(
            args.model,
            args.name,
            args.out or Path("build/export") / args.name,
            max_length=args.max_length,
            opset=args.opset,
            atol=args.atol,
            force=args.force,
        )
    except (SourceUnavailable, FactsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
