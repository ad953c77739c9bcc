"""OpenVINO on an export: the same model.onnx and tokenizer.json, run by OpenVINO's CPU plugin.

    python -m export.openvino --export build/export/finbert --variants fp32,int8-static   # build and guard

Precision: without a hint, OpenVINO computes in bf16 on CPUs that have it (AVX-512 BF16, AMX),
so its "fp32" would not be fp32 there (max |d logit| 0.026 against ONNX Runtime fp32 on BERT-base).
Every model here is compiled with INFERENCE_PRECISION_HINT pinned (fp32: f32; the static int8: f32
for what is not quantized), so a variant means the same thing on every CPU.

Static int8 (variant "int8-static"): NNCF post-training quantization of model.onnx with
ModelType.TRANSFORMER, calibrated on CALIBRATION_COUNT Financial PhraseBank sentences outside the
fine-tune's held-out split (calibration_sentences). Its scales are fixed at calibration: a text's
result does not depend on the texts batched with it, unlike ONNX Runtime's dynamic int8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from export import fpb
from export.calibrate import softmax
from export.cli import existing_export
from export.facts import ModelFacts
from export.optimize import (
    CONFIDENT,
    GUARD_BATCH_SIZES,
    MAX_ACCURACY_DROP,
    MIN_AGREEMENT,
    REPORT_FILENAME,
    GuardError,
    guard_sentences,
    judge,
    served_logits,
    verdict,
)
from export.runtime import (
    ENGINES,
    OPENVINO_INT8_FILENAME,
    OPENVINO_PREFIX,
    Classifier,
    OnnxClassifier,
    variant_filename,
)

STATIC_INT8 = "int8-static"
# The OpenVINO release that serves (requirements.txt, and the container's cpu profile image k8s/Dockerfile):
# its variants are judged under it.
OPENVINO_VERSION = "2026.4.1"
RECIPES = {
    "fp32": "OpenVINO CPU, model.onnx, INFERENCE_PRECISION_HINT f32",
    STATIC_INT8: "OpenVINO CPU, NNCF static int8 (ModelType.TRANSFORMER), the rest f32",
}
PRECISION = {"fp32": "f32", STATIC_INT8: "f32"}  # INFERENCE_PRECISION_HINT per variant: never the CPU's default
CALIBRATION_AGREE = "75"  # the file `make finetune` trains on (and splits its held-out set from)
CALIBRATION_COUNT = 256  # 8 batches of 32: NNCF's estimate is stable there (~30 s for BERT-base)
CALIBRATION_BATCH = 32
# make finetune's defaults (training/finetune.py): its held-out split is excluded from calibration
# even when the checkpoint did not keep its heldout.txt.
HELDOUT_SPLIT = {"test_size": 0.2, "seed": 42}


def version() -> str:
    import openvino

    return openvino.get_version().split("-")[0]


def variant_path(export_dir: Path, variant: str) -> Path:
    if variant not in ENGINES["openvino"]:
        raise ValueError(f"unknown OpenVINO variant {variant!r}: one of {ENGINES['openvino']}")
    return Path(export_dir) / variant_filename(OPENVINO_PREFIX + variant)


class OpenVinoClassifier(Classifier):
    """OpenVINO's CPU plugin on an export's variant; precision None leaves OpenVINO's default (bf16 where the CPU has it)."""

    def __init__(
        self, export_dir: Path, variant: str = "fp32", threads: int | None = None, precision: str | None = "pinned"
    ):
        import openvino as ov

        super().__init__(export_dir)
        config = {"INFERENCE_NUM_THREADS": threads or len(os.sched_getaffinity(0)), "PERFORMANCE_HINT": "LATENCY"}
        if precision == "pinned":
            precision = PRECISION[variant]
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(variant_path(export_dir, variant))), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.names = [port.get_any_name() for port in self.compiled.inputs]

    @property
    def precision(self) -> str:
        """What the compiled model computes in (f32, bf16, f16)."""
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = self.request.infer({name: feeds[name] for name in self.names if name in feeds})
        return np.array(result[self.compiled.output(0)])


def heldout_sentences(export_dir: Path) -> set[str]:
    """The fine-tune's held-out sentences: its heldout.txt if the checkpoint kept it, and make finetune's default split."""
    held = set()
    source = Path(ModelFacts.load(export_dir).source or "")
    for path in [source / "heldout.txt"]:
        if path.is_file():
            held.update(sentence for sentence, _ in fpb.read(path))
    path = fpb.shared_file(CALIBRATION_AGREE)
    if path is not None:
        rows, _ = fpb.dedupe(fpb.read(path))
        _, test = fpb.stratified_split(rows, HELDOUT_SPLIT["test_size"], HELDOUT_SPLIT["seed"])
        held.update(sentence for sentence, _ in test)
    return held | {fpb.detokenize(s) for s in held}


def calibration_sentences(export_dir: Path, count: int = CALIBRATION_COUNT, seed: int = 0) -> tuple[list[str], str]:
    """`count` FPB-75 sentences outside the fine-tune's held-out split (fixed random sample), and what they are."""
    path = fpb.shared_file(CALIBRATION_AGREE)
    if path is None:
        raise FileNotFoundError(
            f"the static int8 is calibrated on Financial PhraseBank: no Sentences_{CALIBRATION_AGREE}Agree.txt in "
            f"{fpb.SHARED_DIR} (set FINSENT_FPB_DIR)"
        )
    held = heldout_sentences(export_dir)
    pool = [s for s, _ in fpb.dedupe(fpb.read(path))[0] if s not in held and fpb.detokenize(s) not in held]
    pick = np.sort(np.random.default_rng(seed).choice(len(pool), min(count, len(pool)), replace=False))
    return [pool[i] for i in pick], (
        f"{len(pick)} sentences of {path.name} outside the held-out split (make finetune's split, seed "
        f"{HELDOUT_SPLIT['seed']}, and the checkpoint's heldout.txt if it has one), random sample seed {seed}"
    )


def quantize_static(export_dir: Path, texts: list[str], log=print) -> Path:
    """NNCF static int8 of model.onnx calibrated on `texts` (length-sorted batches), saved as OpenVINO IR."""
    import nncf
    import openvino as ov

    export_dir = Path(export_dir)
    tokens = Classifier(export_dir)  # the tokenizer and padding the server uses
    encodings = tokens.encode(texts)
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    batches = [
        tokens.feeds([encodings[i] for i in order[start : start + CALIBRATION_BATCH]])
        for start in range(0, len(order), CALIBRATION_BATCH)
    ]
    log(f"[{tokens.facts.name}] NNCF static int8 on {len(texts)} calibration sentences ({len(batches)} batches) ...")
    model = ov.Core().read_model(str(export_dir / "model.onnx"))
    quantized = nncf.quantize(
        model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches)
    )
    out = export_dir / OPENVINO_INT8_FILENAME
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out


def openvino_version_matches() -> str | None:
    """Why the venv's OpenVINO is not the one that serves (OPENVINO_VERSION, the image's pin), or None."""
    here = version()
    return None if here == OPENVINO_VERSION else f"this venv has OpenVINO {here}, the server runs {OPENVINO_VERSION}"


def build_variant(
    export_dir: Path,
    variant: str,
    *,
    guard_data: Path | None = None,
    guard_limit: int | None = None,
    min_agreement: float = MIN_AGREEMENT,
    max_accuracy_drop: float | None = None,
    calibration: list[str] | None = None,
    threads: int | None = None,
    log=print,
) -> dict:
    """Build (static int8) and guard an OpenVINO variant as the server runs it; cached in variants.json.

    The same guard as ONNX Runtime's variants (export.optimize.judge): fp32 (ONNX Runtime, exact) against
    OpenVINO's served probabilities, all FPB-50 sentences in served batch shapes, under the OpenVINO release
    that serves (OPENVINO_VERSION). GuardError when refused (the static int8's files are deleted).
    calibration: sentences instead of calibration_sentences() (a test's deliberately bad one)."""
    export_dir = Path(export_dir)
    if max_accuracy_drop is None:
        max_accuracy_drop = MAX_ACCURACY_DROP if min_agreement > 0 else 1.0
    if why := openvino_version_matches():
        raise GuardError(f"OpenVINO variants are judged under the release that serves them: {why}")
    name = OPENVINO_PREFIX + variant
    facts = ModelFacts.load(export_dir)
    sentences, labels, source = guard_sentences(guard_data, guard_limit)
    try:
        described = "given sentences" if calibration else calibration_sentences(export_dir)[1]
    except FileNotFoundError as exc:  # no calibration data: refused like a variant that fails the guard
        raise GuardError(f"[{facts.name}] {name} variant refused: {exc}") from exc
    settings = {
        "guard": source,
        "min_agreement": min_agreement,
        "max_accuracy_drop": max_accuracy_drop,
        "confident": CONFIDENT,
        "batches": {"sizes": list(GUARD_BATCH_SIZES), "of": "one length bucket"},
        "temperature": facts.temperature,
        "runtime": f"openvino {OPENVINO_VERSION}",
        "recipe": RECIPES[variant] + ("" if variant == "fp32" else f"; calibration: {described}"),
    }
    report_path = export_dir / REPORT_FILENAME
    done = json.loads(report_path.read_text()) if report_path.exists() else {}
    cached = done.get(name, {})
    path = variant_path(export_dir, variant)
    if cached.get("passed") and cached.get("settings") == settings and path.exists():
        log(f"[{facts.name}] {name} variant cached (agreement {cached['agreement']:.2%})")
        return cached
    started = time.monotonic()
    if variant == STATIC_INT8:
        texts = calibration or calibration_sentences(export_dir)[0]
        quantize_static(export_dir, texts, log)
    log(f"[{facts.name}] checking {name} on {source} in served batches (OpenVINO {OPENVINO_VERSION}) ...")
    reference = OnnxClassifier(export_dir, "fp32", threads=threads)
    fp32 = reference.logits(sentences)[:, reference.facts.canonical_index]
    served = served_logits(OpenVinoClassifier(export_dir, variant, threads=threads), sentences)
    result = judge(
        softmax(fp32, facts.temperature),
        softmax(served, facts.temperature),
        labels,
        min_agreement=min_agreement,
        max_accuracy_drop=max_accuracy_drop,
    )
    result.update(
        runtime=f"openvino {version()}",
        max_abs_logit_diff=float(np.abs(fp32 - served).max()),
        settings=settings,
        seconds=round(time.monotonic() - started, 1),
    )
    done[name] = result
    report_path.write_text(json.dumps(done, indent=2) + "\n")
    files = [path, path.with_suffix(".bin")] if variant == STATIC_INT8 else []
    verdict(f"[{facts.name}] {name} (OpenVINO {OPENVINO_VERSION})", result, source, len(sentences), log, files)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=existing_export, required=True)
    parser.add_argument("--variants", default=STATIC_INT8, help=f"comma-separated: {', '.join(ENGINES['openvino'])}")
    parser.add_argument("--guard-sentences", type=int, help="score a random sample of this many (default: all)")
    parser.add_argument(
        "--min-agreement", type=float, default=MIN_AGREEMENT, help="the guard's limit (export.optimize)"
    )
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in ENGINES["openvino"]]:
        parser.error(f"argument --variants: unknown {unknown}: choose from {', '.join(ENGINES['openvino'])}")
    try:
        for variant in variants:
            build_variant(args.export, variant, guard_limit=args.guard_sentences, min_agreement=args.min_agreement)
    except (GuardError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
