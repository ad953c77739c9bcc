"""Optimised variants of an fp32 export, each behind an accuracy guard.

    python -m export.optimize --export build/export/finbert --variants int8,fp16

- fused: ONNX Runtime's transformer optimizer fuses Attention, SkipLayerNorm, BiasGelu and
  the embedding (needs the eager-attention export that export.onnx makes).
- int8: dynamic quantization of the fused graph (weights int8, activations quantized at run
  time): the CPU default.
- fp16: the fused graph in half precision with fp32 inputs/outputs: for the GPU target.

The guard scores Financial PhraseBank sentences with fp32 and with the variant; a variant
whose predictions agree with fp32 on fewer than --min-agreement of them (default 99.5%) is
refused and deleted. Results go to variants.json next to the model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from export import fpb
from export.cli import bounded, existing_export, fraction
from export.facts import ModelFacts
from export.quiet import known_noise_silenced
from export.runtime import VARIANTS, OnnxClassifier, variant_filename
from export.sentences import PARITY_SENTENCES

REPORT_FILENAME = "variants.json"
RECIPES = {"int8": "fused, dynamic int8, per-channel weights", "fp16": "fused, fp16, fp32 inputs/outputs"}
FUSED_FILENAME = "model.fused.onnx"


class GuardError(RuntimeError):
    """A variant disagrees with fp32 too often."""


def guard_sentences(path: Path | None, limit: int, seed: int = 0) -> tuple[list[str], list[str] | None, str]:
    """FPB sentences (a fixed random sample of `limit`), their labels, and where they came from."""
    path = path or fpb.shared_file("75")
    if path is None:
        return (list(PARITY_SENTENCES), None, f"the {len(PARITY_SENTENCES)} built-in parity sentences (a weak check: "
                f"no Financial PhraseBank in {fpb.SHARED_DIR}; set FINSENT_FPB_DIR to use 1,000 of its sentences)")
    sentences, labels = map(list, zip(*fpb.read(path)))
    if limit and len(sentences) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(sentences), limit, replace=False))
        sentences, labels = [sentences[i] for i in keep], [labels[i] for i in keep]
    return sentences, labels, f"{Path(path).name} ({len(sentences)} sentences)"


def fuse(export_dir: Path, facts: ModelFacts) -> Path:
    from onnxruntime.transformers import optimizer
    # DistilBERT graphs fuse with the "bert" patterns; 0 lets the optimizer read heads/hidden size.
    model = optimizer.optimize_model(str(export_dir / "model.onnx"), model_type="bert", num_heads=0, hidden_size=0,
                                     opt_level=1)
    path = export_dir / FUSED_FILENAME
    model.save_model_to_file(str(path))
    return path


def build(export_dir: Path, variant: str) -> Path:
    """Write model.<variant>.onnx from the fused graph."""
    import onnx
    fused = export_dir / FUSED_FILENAME
    out = export_dir / variant_filename(variant)
    if variant == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        # DefaultTensorType: the fused graph has ops whose output type the quantizer cannot infer.
        # Per-channel weight scales: per-tensor int8 agreed with fp32 on 98.8% of FPB sentences
        # for the fine-tuned DistilBERT (refused), per-channel on 99.9%, at the same speed.
        with known_noise_silenced():
            quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    elif variant == "fp16":
        from onnxruntime.transformers.onnx_model import OnnxModel
        model = OnnxModel(onnx.load(str(fused)))
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(out))
    else:
        raise ValueError(f"no optimised build for {variant!r}")
    return out


def agreement(export_dir: Path, variant: str, sentences: list[str], labels: list[str] | None,
              reference: np.ndarray) -> dict:
    """Compare the variant's predictions with fp32's (`reference`: fp32 probabilities)."""
    facts = ModelFacts.load(export_dir)
    candidate = OnnxClassifier(export_dir, variant).probabilities(sentences)
    ref_pred, cand_pred = reference.argmax(1), candidate.argmax(1)
    report = {"agreement": float((ref_pred == cand_pred).mean()), "disagreements": int((ref_pred != cand_pred).sum()),
              "max_abs_prob_diff": float(np.abs(reference - candidate).max())}
    if labels is not None:
        gold = np.array([facts.canonical_labels.index(label) for label in labels])
        report["accuracy_fp32"] = float((ref_pred == gold).mean())
        report[f"accuracy_{variant}"] = float((cand_pred == gold).mean())
        report["accuracy_drop_points"] = 100 * (report["accuracy_fp32"] - report[f"accuracy_{variant}"])
    return report


def build_variants(export_dir: Path, variants: list[str], *, guard_data: Path | None = None,
                   guard_limit: int = 1000, min_agreement: float = 0.995, log=print) -> dict:
    """Build and guard each variant (fp32 is the export itself); cached in variants.json."""
    export_dir = Path(export_dir)
    facts = ModelFacts.load(export_dir)
    report_path = export_dir / REPORT_FILENAME
    done = json.loads(report_path.read_text()) if report_path.exists() else {}
    sentences, labels, source = guard_sentences(guard_data, guard_limit)
    reference = None
    for variant in [v for v in variants if v != "fp32"]:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}: one of {VARIANTS}")
        settings = {"guard": source, "min_agreement": min_agreement, "recipe": RECIPES[variant]}
        cached = done.get(variant, {})
        if cached.get("passed") and cached.get("settings") == settings and (export_dir / variant_filename(variant)).exists():
            log(f"[{facts.name}] {variant} variant cached (agreement {cached['agreement']:.2%})")
            continue
        started = time.monotonic()
        if not (export_dir / FUSED_FILENAME).exists():
            log(f"[{facts.name}] fusing the graph (ONNX Runtime transformer optimizer) ...")
            fuse(export_dir, facts)
        log(f"[{facts.name}] building {variant} and checking it on {source} ...")
        build(export_dir, variant)
        if reference is None:
            reference = OnnxClassifier(export_dir, "fp32").probabilities(sentences)
        result = agreement(export_dir, variant, sentences, labels, reference)
        result.update(passed=result["agreement"] >= min_agreement, settings=settings,
                      seconds=round(time.monotonic() - started, 1))
        done[variant] = result
        report_path.write_text(json.dumps(done, indent=2) + "\n")
        line = (f"[{facts.name}] {variant}: agreement with fp32 {result['agreement']:.2%} "
                f"({result['disagreements']} of {len(sentences)} differ), limit {min_agreement:.1%}")
        if "accuracy_drop_points" in result:
            line += f", accuracy {result['accuracy_fp32']:.4f} -> {result[f'accuracy_{variant}']:.4f}"
        log(line)
        if not result["passed"]:
            (export_dir / variant_filename(variant)).unlink()
            raise GuardError(f"[{facts.name}] {variant} variant refused: it agrees with fp32 on only "
                             f"{result['agreement']:.2%} of {source} (needs {min_agreement:.1%})")
    (export_dir / FUSED_FILENAME).unlink(missing_ok=True)   # 1x the model's size; variants are built
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=existing_export, required=True, help="an export directory from export.onnx")
    parser.add_argument("--variants", default="int8,fp16", help="comma-separated: int8, fp16 (default both)")
    parser.add_argument("--guard-data", type=Path, help="an FPB Sentences_*Agree.txt (default: the 75%% subset "
                                                        "next to the checkout, if there)")
    parser.add_argument("--guard-sentences", type=bounded(int, 1), default=1000,
                        help="sentences sampled for the guard (default 1000)")
    parser.add_argument("--min-agreement", type=fraction, default=0.995,
                        help="the fraction of guard sentences on which a variant must predict the label fp32 "
                             "predicts, else it is refused and deleted (default 0.995, i.e. 99.5%%)")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:   # before building the others
        parser.error(f"argument --variants: unknown {unknown}: choose from {', '.join(VARIANTS)}")
    try:
        build_variants(args.export, variants, guard_data=args.guard_data,
                       guard_limit=args.guard_sentences, min_agreement=args.min_agreement)
    except GuardError as exc:           # each caller says what to do instead: here, serve fp32
        print(f"error: {exc}; serve the fp32 export instead (make serve VARIANT=fp32)", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
