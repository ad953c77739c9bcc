"""Served accuracy = model accuracy: score FPB sentences through Triton and with PyTorch: `make eval`.

    python -m evaluation --checkpoint build/checkpoints/distilbert-fpb --family distilbert
    python -m evaluation --checkpoint path/to/finbert --family finbert --url localhost:8001
    python -m evaluation --checkpoint ... --variant int8   # another variant of the same export

In one run, the same sentences (default: the checkpoint's held-out split, heldout.txt, written
by `make finetune`; or --data, an FPB `Sentences_*Agree.txt`) are scored
- through the live Triton ensemble over gRPC (--url: a running server; without it, the checkpoint
  is exported, or --export DIR is taken as is, and served by a local tritonserver on free ports;
  an export folder holds every variant and --variant picks the one served, built if missing;
  with --url, --variant names the variant that server serves),
- in-process by the PyTorch checkpoint, at the model's serving max length.
Reported: accuracy, macro-F1, per-class F1 for both, a labelled confusion matrix (PNG), and the
sentences where served and in-process labels differ: 0 is required for fp32 (exit code 1
otherwise); other variants are judged by the variant guard's rule (export.optimize.judge:
agreement on confident predictions and accuracy drop, each against its limit).
Calibration of the served probabilities (export/calibrate.py: ECE over 15 equal-width
confidence bins, NLL, Brier), before the model's temperature (softmax of the served LOGITS) and
after it (the served PROBABILITIES), on the sentences the temperature was not fitted on, with a
reliability diagram (PNG).
Results go to docs/accuracy/<model>.json and docs/accuracy.md is rewritten from all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from evaluation.measure import calibration, compare, fitted_sentences
from evaluation.report import DOCS, confusion_png, reliability_png, render_docs, summary
from evaluation.score import inprocess_probabilities, served_outputs
from export import calibrate, fpb
from export.cli import existing_export, fraction
from export.facts import FAMILIES, FactsError, ModelFacts
from export.onnx import MAX_LENGTH_CAP, SourceUnavailable, export_model, resolve_source
from export.optimize import MIN_AGREEMENT, GuardError, build_variants
from finsent import FinsentError, UnavailableError
from model_repository.assemble import TargetOptions
from server import stack
from training.finetune import HELDOUT_FILENAME, METRICS_FILENAME


def evaluate(
    checkpoint: Path,
    family: str,
    rows,
    *,
    url: str | None = None,
    export: Path | None = None,
    model: str | None = None,
    build: Path = Path("build"),
    out: Path = DOCS,
    data_name: str = "",
    log=print,
    variant: str = "fp32",
    min_agreement: float = MIN_AGREEMENT,
) -> dict:
    """Score `rows` served and in-process; write <out>/accuracy/<model>.json and its PNG."""
    checkpoint, model = Path(checkpoint), model or family
    texts = [s for s, _ in rows]
    server = None
    try:
        if url is None:
            export = (
                Path(export)
                if export
                else export_model(str(checkpoint), family, build / "export" / family, log=log).path
            )
            if variant != "fp32":
                build_variants(export, [variant], min_agreement=min_agreement, log=log)  # guarded; cached
            server = stack.serve(
                {family: export},
                build / "triton",
                TargetOptions("local", variant=variant),
                repository=build / "repository" / "eval",
                log_path=build / "triton" / "eval.log",
                started=False,
            )
            log(f"starting tritonserver for {family} (log: {server.log_path}) ...")
            server.start()
            url = server.grpc_url
        facts = ModelFacts.load(export) if export else None
        log(f"scoring {len(texts)} sentences through {model} at {url} ...")
        started = time.monotonic()
        outputs = served_outputs(url, model, texts, logits=True)
        served, served_logits = outputs["PROBABILITIES"], outputs["LOGITS"]
        served_s = time.monotonic() - started
    finally:
        if server:
            server.stop()
    max_length = facts.max_length if facts else MAX_LENGTH_CAP  # the export's cap: what it would serve
    log(f"scoring them in-process with PyTorch (max length {max_length}) ...")
    inprocess = inprocess_probabilities(checkpoint, texts, max_length)
    variant = variant if variant != "fp32" else (facts.variant if facts else "fp32")
    left_out, where = fitted_sentences(checkpoint, facts)
    cal = calibration(rows, served_logits, served, left_out, where)
    # In-process probabilities with the temperature the server applies: both sides then say the same.
    inprocess = calibrate.softmax(np.log(np.clip(inprocess, 1e-30, None)), cal["temperature"])
    result = {
        "model": model,
        "family": family,
        "variant": variant,
        "checkpoint": str(checkpoint),
        "data": data_name,
        "n": len(rows),
        "served_seconds": round(served_s, 1),
        **compare(rows, served, inprocess, variant),
        "calibration": cal,
    }
    metrics_file = checkpoint / METRICS_FILENAME
    if metrics_file.exists():
        ft = json.loads(metrics_file.read_text())
        result["finetune"] = {
            k: ft.get(k)
            for k in (
                "base",
                "arch",
                "sentences",
                "duplicates_removed",
                "train",
                "heldout",
                "hyperparameters",
                "history",
                "seconds",
            )
        }
        result["finetune"]["data_sha256"] = ft.get("data", {}).get("sha256")
    out = Path(out)
    stem = f"{model}-{variant}"
    png = confusion_png(
        result["served"],
        f"{model} ({variant}) served by Triton: {data_name}, n={len(rows)}",
        out / "accuracy" / f"{stem}-confusion.png",
    )
    result["confusion_png"] = str(png.relative_to(out))
    png = reliability_png(
        cal,
        f"{model} ({variant}) served by Triton: {data_name}, n={cal['n']} (not fitted on)",
        out / "accuracy" / f"{stem}-reliability.png",
    )
    result["reliability_png"] = str(png.relative_to(out))
    (out / "accuracy" / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    log(summary(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation",
        description=__doc__,  # not "__main__.py"
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path(FAMILIES["distilbert"].source),
        help="the PyTorch checkpoint (in-process side, and what gets exported)",
    )
    parser.add_argument("--family", default="distilbert", choices=FAMILIES, help="ensemble family")
    parser.add_argument("--data", type=Path, help="FPB sentences (default: <checkpoint>/heldout.txt)")
    parser.add_argument("--url", help="gRPC host:port of a running server (default: start a local one)")
    parser.add_argument("--model", help="served model name (default: the family)")
    parser.add_argument(
        "--export",
        type=existing_export,
        help="serve this export folder, not an export of the checkpoint (--variant picks the variant)",
    )
    parser.add_argument(
        "--variant",
        choices=["fp32", "int8", "fp16"],
        default="fp32",
        help="export variant to serve (built and guarded by export.optimize if missing)",
    )
    parser.add_argument(
        "--min-agreement",
        type=fraction,
        default=MIN_AGREEMENT,
        help="the variant's accuracy guard (export.optimize); 0 scores a variant it would refuse",
    )
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--out", type=Path, default=DOCS, help="docs folder (default docs/)")
    args = parser.parse_args(argv)
    data = args.data or args.checkpoint / HELDOUT_FILENAME
    if not data.is_file():
        parser.error(f"{data} not found: run `make finetune` or pass --data")
    try:
        rows = fpb.read(data)
    except fpb.DataError as exc:
        parser.error(str(exc))
    name = f"{data.name} ({data.parent.name})" if data.name == HELDOUT_FILENAME else data.name
    try:
        resolve_source(str(args.checkpoint))  # both sides need it: refuse a missing one before any export
    except SourceUnavailable as exc:
        parser.error(f"--checkpoint: {exc}")
    try:
        result = evaluate(
            args.checkpoint,
            args.family,
            rows,
            url=args.url,
            export=args.export,
            model=args.model,
            variant=args.variant,
            min_agreement=args.min_agreement,
            build=args.build,
            out=args.out,
            data_name=name,
        )
    except GuardError as exc:
        print(f"error: {exc}; --min-agreement 0 scores it anyway", file=sys.stderr)
        return 1
    except FactsError as exc:  # a checkpoint finsent cannot serve: found before exporting
        parser.error(str(exc))
    except FinsentError as exc:
        if args.url is None:  # the server started here failed: a bug, not a bad argument
            raise
        reachable = not isinstance(exc, UnavailableError)
        parser.error(f"{'Triton at' if reachable else 'cannot reach Triton at'} {args.url}: {exc}")
    print(f"wrote {render_docs(args.out)}")
    return 0 if result["gate"]["passed"] else 1
