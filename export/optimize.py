"""Optimised variants of an fp32 export, each behind an accuracy guard that judges the served condition.

    python -m export.optimize --export build/export/finbert --variants int8,fp16
    python -m export.optimize --export build/export/finbert --variants int8 --runtime 1.19.2   # the container's

- fused: ONNX Runtime's transformer optimizer fuses Attention, SkipLayerNorm, BiasGelu and
  the embedding (needs the eager-attention export that export.onnx makes).
- int8: dynamic quantization of the fused graph (weights int8, activations quantized at run
  time, one scale per run: a text's result depends on the texts batched with it): the CPU default.
- fp16: the fused graph in half precision with fp32 inputs/outputs: for the GPU target.

The guard scores Financial PhraseBank sentences with fp32 and with the variant as the server
runs them: by default all 4,846 sentences of the 50%-agreement file (the ambiguous ones, where
labels flip, included), in batches of the mixed sizes the dynamic batcher forms
(GUARD_BATCH_SIZES) of texts of similar length drawn at random (served_batches), each batch run
as one, padded to its longest. It reports separately
- agreement with fp32 on all sentences (information: ambiguous sentences flip),
- agreement on confident predictions (fp32's served probability >= CONFIDENT, with the model's
  temperature): must be >= --min-agreement (default 99.5%),
- the accuracy change against the labels: the drop must be <= MAX_ACCURACY_DROP (0.5 point).
A variant that fails either is refused and deleted. Results go to variants.json next to the model.
`make eval` judges the served variant by the same rule (judge()).

--runtime VERSION scores both sides under that ONNX Runtime release (a side install under
build/ort/VERSION, run in a subprocess) and checks that every file named loads there, with its
IR version and opsets recorded: the container's classifier runs under CONTAINER_ORT (NGC 24.10),
not under the venv's ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from export import fpb
from export.calibrate import softmax
from export.cli import bounded, existing_export, fraction
from export.facts import CANONICAL_LABELS, ModelFacts
from export.quiet import known_noise_silenced
from export.runtime import CONTAINER_ORT, VARIANTS, OnnxClassifier, variant_filename
from export.sentences import PARITY_SENTENCES

REPORT_FILENAME = "variants.json"
# Token-count bands of the guard's batches: runs of similar length, as the Python classifier forms them.
GUARD_LENGTH_BANDS = (16, 32, 64, 128, 256, 512)
FP32_CHECK_FILENAME = "fp32_runtime.json"  # the fp32 export loaded in a given runtime (--runtime)
RECIPES = {"int8": "fused, dynamic int8, per-channel weights", "fp16": "fused, fp16, fp32 inputs/outputs"}
FUSED_FILENAME = "model.fused.onnx"


GUARD_AGREE = "50"  # FPB's 50%-agreement file: every sentence, the ambiguous ones included
# Batch sizes the guard cycles through: what the dynamic batcher hands the classifier, from one
# client (1) to a full batch (64); 16 concurrent clients formed batches of about 8 (docs/serving.md).
GUARD_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
CONFIDENT = 0.9  # a confident prediction: fp32's served top probability >= this
MIN_AGREEMENT = 0.995  # of fp32's confident predictions a variant must keep (the guard's default)
MAX_ACCURACY_DROP = 0.005  # accuracy (fraction) a variant may lose against fp32 on the labels
ORT_DIR = fpb.REPO_ROOT / "build" / "ort"


class GuardError(RuntimeError):
    """A variant disagrees with fp32 too often, or does not load in the runtime that serves it."""


def guard_sentences(
    path: Path | None, limit: int | None = None, seed: int = 0
) -> tuple[list[str], list[str] | None, str]:
    """FPB sentences (all, or a fixed random sample of `limit`), their labels, and where they came from."""
    path = path or fpb.shared_file(GUARD_AGREE)
    if path is None:
        return (
            list(PARITY_SENTENCES),
            None,
            f"the {len(PARITY_SENTENCES)} built-in parity sentences (a weak check: "
            f"no Financial PhraseBank in {fpb.SHARED_DIR}; set FINSENT_FPB_DIR to use its sentences)",
        )
    sentences, labels = map(list, zip(*fpb.read(path)))
    if limit and len(sentences) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(sentences), limit, replace=False))
        sentences, labels = [sentences[i] for i in keep], [labels[i] for i in keep]
    return sentences, labels, f"{Path(path).name} ({len(sentences)} sentences)"


def served_batches(lengths, sizes=GUARD_BATCH_SIZES, seed: int = 0) -> list[np.ndarray]:
    """Row indices of the batches the guard runs, from the texts' token counts (`lengths`).

    Like the server's: the Python classifier (local target, container cpu profile) splits what
    arrives into runs of similar length. So each batch holds texts of one length band
    (GUARD_LENGTH_BANDS), drawn at random, of sizes cycling through `sizes`."""
    lengths = np.asarray(lengths)
    edges = np.array(GUARD_LENGTH_BANDS)
    bucket = np.searchsorted(edges, lengths)  # index of the smallest bucket that holds it
    rng = np.random.default_rng(seed)
    batches, turn = [], 0
    for b in np.unique(bucket):
        rows = rng.permutation(np.flatnonzero(bucket == b))
        start = 0
        while start < len(rows):
            size = sizes[turn % len(sizes)]
            batches.append(rows[start : start + size])
            start, turn = start + size, turn + 1
    return batches


def served_logits(classifier: OnnxClassifier, texts: list[str], sizes=GUARD_BATCH_SIZES) -> np.ndarray:
    """Logits (canonical order) with each served_batches() batch run as one, padded to its longest."""
    encodings = classifier.encode(texts)
    out = np.empty((len(texts), len(classifier.facts.id2label)), dtype=np.float32)
    for rows in served_batches([len(e.ids) for e in encodings], sizes):
        out[rows] = classifier.run([encodings[i] for i in rows])
    return out[:, classifier.facts.canonical_index]


def judge(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: list[str] | None,
    *,
    min_agreement: float = MIN_AGREEMENT,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
) -> dict:
    """A variant's (`candidate`) served probabilities against fp32's (`reference`), canonical order."""
    ref_pred, cand_pred = reference.argmax(1), candidate.argmax(1)
    confident = reference.max(1) >= CONFIDENT
    report = {
        "agreement": float((ref_pred == cand_pred).mean()),
        "disagreements": int((ref_pred != cand_pred).sum()),
        "confident": int(confident.sum()),
        "confident_threshold": CONFIDENT,
        "confident_agreement": float((ref_pred == cand_pred)[confident].mean()) if confident.any() else 1.0,
        "max_abs_prob_diff": float(np.abs(reference - candidate).max()),
    }
    passed = report["confident_agreement"] >= min_agreement - 1e-9
    rule = f"agreement on confident predictions (p >= {CONFIDENT:g}) >= {min_agreement:.1%}"
    if labels is not None:
        gold = np.array([CANONICAL_LABELS.index(label) for label in labels])
        report["accuracy_fp32"] = float((ref_pred == gold).mean())
        report["accuracy_variant"] = float((cand_pred == gold).mean())
        report["accuracy_drop_points"] = 100 * (report["accuracy_fp32"] - report["accuracy_variant"])
        passed = passed and report["accuracy_drop_points"] <= 100 * max_accuracy_drop + 1e-7
        rule += f", accuracy drop <= {100 * max_accuracy_drop:.1f} pt"
    report.update(passed=bool(passed), rule=rule)
    return report


def verdict(who: str, result: dict, source: str, count: int, log, remove: list[Path]) -> None:
    """Log the guard's judgement of a variant (`who`: "[family] variant (runtime)"); when refused,
    delete its files (`remove`) and raise GuardError, whose message callers log with the fallback."""
    line = (
        f"{who}: agreement with fp32 {result['agreement']:.2%} of {count}, on the {result['confident']} "
        f"confident ones {result['confident_agreement']:.2%}"
    )
    if "accuracy_drop_points" in result:
        line += f", accuracy {result['accuracy_fp32']:.4f} -> {result['accuracy_variant']:.4f}"
    log(line + f" -> {'pass' if result['passed'] else 'REFUSED'} ({result['rule']})")
    if not result["passed"]:
        for path in remove:
            path.unlink(missing_ok=True)
        raise GuardError(
            f"{who.split(' (')[0]} variant refused: {result['rule']} failed on {source} "
            f"(confident agreement {result['confident_agreement']:.2%}"
            + (f", accuracy drop {result['accuracy_drop_points']:.2f} pt" if "accuracy_drop_points" in result else "")
            + ")"
        )


def side_runtime(version: str, log=print) -> Path:
    """A cached `pip install --target` of onnxruntime==version (no dependencies: the venv's numpy serves)."""
    target = ORT_DIR / version
    if not (target / "onnxruntime" / "__init__.py").exists():
        log(f"installing onnxruntime=={version} into {target} (once) ...")
        tmp = ORT_DIR / f".{version}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(tmp),
                f"onnxruntime=={version}",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            # onnxruntime always has releases on PyPI: none seen at all means pip could not read it.
            offline = "(from versions: none)" in done.stderr
            raise GuardError(
                f"could not install onnxruntime=={version} into {target} (pip: "
                f"{(done.stderr.strip().splitlines() or ['?'])[-1]})"
                + ("; PyPI (or the index pip is set to) cannot be reached" if offline else "")
                + "; it judges the variants the container serves. It is fetched once and cached there: "
                "run this where PyPI is reachable, or copy that folder from a checkout that has it"
            )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def under_runtime(version: str | None, job: dict, log=print) -> dict:
    """Run check_job(job) with the venv's ONNX Runtime (None) or, in a subprocess, with `version`."""
    if version is None:
        return check_job(job)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(side_runtime(version, log)), str(fpb.REPO_ROOT)]))
    if "export" in job:  # the subprocess runs in the checkout: a relative path would be read from there
        job = {**job, "export": str(Path(job["export"]).resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "job.json").write_text(json.dumps({**job, "out": tmp, "version": version}))
        done = subprocess.run(
            [sys.executable, "-m", "export.optimize", "--job", str(Path(tmp) / "job.json")],
            cwd=fpb.REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise GuardError(f"under onnxruntime {version}: {done.stderr.strip()[-1500:]}")
        result = json.loads((Path(tmp) / "result.json").read_text())
        for name in result.pop("arrays", []):
            result[name] = np.load(Path(tmp) / f"{name}.npy")
        return result


def check_job(job: dict) -> dict:
    """Load each variant file in this process's ONNX Runtime; score the guard's texts with some of them."""
    import onnx
    import onnxruntime

    if job.get("version") and onnxruntime.__version__ != job["version"]:
        raise RuntimeError(f"asked for onnxruntime {job['version']}, imported {onnxruntime.__version__}")
    export_dir = Path(job["export"])
    result = {"runtime": onnxruntime.__version__, "files": {}}
    for variant in job["load"]:
        path = export_dir / variant_filename(variant)
        model = onnx.load(str(path), load_external_data=False)
        opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        try:
            classifier = OnnxClassifier(export_dir, variant, threads=job.get("threads"))
        except Exception as exc:  # what the serving runtime would say at load time
            raise RuntimeError(
                f"{path.name} does not load in onnxruntime {onnxruntime.__version__} (IR version "
                f"{model.ir_version}, opsets {opsets}): {exc}"
            ) from exc
        result["files"][variant] = {"ir_version": model.ir_version, "loads": True, "opsets": opsets}
        if variant == "fp32" and "fp32" in job.get("score", []):
            # fp32 does not depend on its batch mates (padding is masked exactly): the cheap way.
            result[variant] = classifier.logits(job["texts"])[:, classifier.facts.canonical_index]
        elif variant in job.get("score", []):
            result[variant] = served_logits(classifier, job["texts"])
    arrays = [v for v in job.get("score", [])]
    if job.get("out"):
        for name in arrays:
            np.save(Path(job["out"]) / f"{name}.npy", result.pop(name))
        (Path(job["out"]) / "result.json").write_text(json.dumps({**result, "arrays": arrays}))
    return result


def fuse(export_dir: Path, facts: ModelFacts) -> Path:
    from onnxruntime.transformers import optimizer

    # DistilBERT graphs fuse with the "bert" patterns; 0 lets the optimizer read heads/hidden size.
    model = optimizer.optimize_model(
        str(export_dir / "model.onnx"), model_type="bert", num_heads=0, hidden_size=0, opt_level=1
    )
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
            quantize_dynamic(
                str(fused),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    elif variant == "fp16":
        from onnxruntime.transformers.onnx_model import OnnxModel

        model = OnnxModel(onnx.load(str(fused)))
        model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(out))
    else:
        raise ValueError(f"no optimised build for {variant!r}")
    return out


def build_variants(
    export_dir: Path,
    variants: list[str],
    *,
    guard_data: Path | None = None,
    guard_limit: int | None = None,
    min_agreement: float = MIN_AGREEMENT,
    max_accuracy_drop: float | None = None,
    runtime: str | None = None,
    log=print,
) -> dict:
    """Build and guard each variant (fp32 is the export itself); cached in variants.json.

    min_agreement 0 turns the guard off (it reports, never refuses: random-weight test models);
    max_accuracy_drop None is MAX_ACCURACY_DROP then.

    runtime: None judges with the venv's ONNX Runtime (the local target's classifier); a version
    (CONTAINER_ORT for the container) loads every named file, fp32 included, and scores the guard
    under that release."""
    export_dir = Path(export_dir)
    if max_accuracy_drop is None:
        max_accuracy_drop = MAX_ACCURACY_DROP if min_agreement > 0 else 1.0
    facts = ModelFacts.load(export_dir)
    report_path = export_dir / REPORT_FILENAME
    done = json.loads(report_path.read_text()) if report_path.exists() else {}
    sentences, labels, source = guard_sentences(guard_data, guard_limit)
    reference = None
    if unknown := [v for v in variants if v not in VARIANTS]:
        raise ValueError(f"unknown variant {unknown[0]!r}: one of {VARIANTS}")
    for variant in [v for v in variants if v != "fp32"]:
        settings = {
            "guard": source,
            "min_agreement": min_agreement,
            "max_accuracy_drop": max_accuracy_drop,
            "confident": CONFIDENT,
            "batches": {"sizes": list(GUARD_BATCH_SIZES), "of": "one length bucket"},
            "temperature": facts.temperature,
            "runtime": runtime or "venv",
            "recipe": RECIPES[variant],
        }
        cached = done.get(variant, {})
        built = (export_dir / variant_filename(variant)).exists()
        if cached.get("passed") and cached.get("settings") == settings and built:
            log(f"[{facts.name}] {variant} variant cached (agreement {cached['agreement']:.2%})")
            continue
        started = time.monotonic()
        if not (export_dir / FUSED_FILENAME).exists():
            log(f"[{facts.name}] fusing the graph (ONNX Runtime transformer optimizer) ...")
            fuse(export_dir, facts)
        log(
            f"[{facts.name}] building {variant} and checking it on {source} in served batches "
            f"(onnxruntime {runtime or 'of the venv'}) ..."
        )
        build(export_dir, variant)
        try:
            scored = under_runtime(
                runtime,
                {
                    "export": str(export_dir),
                    "load": ["fp32", variant],
                    "score": (["fp32"] if reference is None else []) + [variant],
                    "texts": sentences,
                },
                log,
            )
        except GuardError:
            (export_dir / variant_filename(variant)).unlink()
            raise
        if reference is None:
            reference = softmax(scored["fp32"], facts.temperature)
        result = judge(
            reference,
            softmax(scored[variant], facts.temperature),
            labels,
            min_agreement=min_agreement,
            max_accuracy_drop=max_accuracy_drop,
        )
        result.update(
            runtime=scored["runtime"],
            files=scored["files"],
            settings=settings,
            seconds=round(time.monotonic() - started, 1),
        )
        done[variant] = result
        report_path.write_text(json.dumps(done, indent=2) + "\n")
        verdict(
            f"[{facts.name}] {variant} (onnxruntime {result['runtime']})",
            result,
            source,
            len(sentences),
            log,
            remove=[export_dir / variant_filename(variant)],
        )
    if runtime and "fp32" in variants:  # the fp32 export is shipped as is: it must load there too
        checked = under_runtime(runtime, {"export": str(export_dir), "load": ["fp32"]}, log)
        # Its own file: variants.json holds guarded variants only (callers read each one's agreement).
        (export_dir / FP32_CHECK_FILENAME).write_text(json.dumps(checked, indent=2) + "\n")
        log(f"[{facts.name}] fp32 loads in onnxruntime {checked['runtime']}")
    (export_dir / FUSED_FILENAME).unlink(missing_ok=True)  # 1x the model's size; variants are built
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=existing_export, help="an export directory from export.onnx")
    parser.add_argument(
        "--variants",
        default="int8,fp16",
        help="comma-separated: int8, fp16 (default both); "
        "fp32 with --runtime checks that the export itself loads there",
    )
    parser.add_argument(
        "--guard-data",
        type=Path,
        help=f"an FPB Sentences_*Agree.txt (default: the {GUARD_AGREE}%% subset next to the checkout, if there)",
    )
    parser.add_argument(
        "--guard-sentences",
        type=bounded(int, 1),
        help="score a random sample of this many guard sentences (default: all)",
    )
    parser.add_argument(
        "--min-agreement",
        type=fraction,
        default=MIN_AGREEMENT,
        help=f"the fraction of confident guard predictions (fp32 p >= {CONFIDENT:g}) on which a "
        "variant must predict the label fp32 predicts, else it is refused and deleted "
        f"(default {MIN_AGREEMENT}, i.e. {MIN_AGREEMENT * 100:.1f}%%)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=fraction,
        help=f"accuracy a variant may lose against fp32 on the labels (default {MAX_ACCURACY_DROP}; "
        "with --min-agreement 0, no limit)",
    )
    parser.add_argument(
        "--runtime",
        help=f"judge under this ONNX Runtime release, e.g. {CONTAINER_ORT} (the container's); default: the venv's",
    )
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # under_runtime()'s subprocess
    args = parser.parse_args(argv)
    if args.job:
        check_job(json.loads(args.job.read_text()))
        return 0
    if args.export is None:
        parser.error("the following arguments are required: --export")
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:  # before building the others
        parser.error(f"argument --variants: unknown {unknown}: choose from {', '.join(VARIANTS)}")
    try:
        build_variants(
            args.export,
            variants,
            guard_data=args.guard_data,
            guard_limit=args.guard_sentences,
            min_agreement=args.min_agreement,
            max_accuracy_drop=args.max_accuracy_drop,
            runtime=args.runtime,
        )
    except GuardError as exc:  # each caller says what to do instead: here, serve fp32
        print(f"error: {exc}; serve the fp32 export instead (make serve VARIANT=fp32)", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
