"""The CPU engines side by side, in-process: ONNX Runtime and OpenVINO on the same export and texts.

In one process, on one model and the same Financial PhraseBank sentences in length-sorted batches
(padded to each batch's longest, as the classifier runs them), with --cores threads:
  ONNX Runtime fp32 (model.onnx) and dynamic int8 (what `make serve` ships on CPU);
  OpenVINO fp32 with INFERENCE_PRECISION_HINT f32, OpenVINO with no hint (its default: bf16 where
  the CPU has it, f32 otherwise; the report names it), and OpenVINO static int8 from NNCF.
The engines take turns, one pass each per round, so a shared machine's drift falls on all of them;
texts/s is the best and the median of the rounds. max |d logit| is against ONNX Runtime fp32.
Writes docs/benchmarks/cpu-engines.{md,json}. Without --finbert/--distilbert the checkpoints are
random-weight BERT-base / DistilBERT-base (speed is the architecture's, not the weights').

    python -m benchmarks.cpu_engines --models finbert --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks import runner
from benchmarks.inputs import UNGUARDED_SAMPLE, checkpoint
from benchmarks.markdown import table
from benchmarks.runner import machine, refuse, shared_arguments, unknown
from export import fpb
from export.facts import FAMILIES
from export.onnx import export_model
from export.openvino import OpenVinoClassifier, calibration_sentences, quantize_static, variant_path, version
from export.optimize import build_variants
from export.runtime import OnnxClassifier

# (label, engine, variant, OpenVINO precision hint: "pinned" is the variant's, None OpenVINO's default)
ENGINES = (
    ("ORT fp32", "onnxruntime", "fp32", None),
    ("ORT dynamic int8 (what make serve ships)", "onnxruntime", "int8", None),
    ("OpenVINO fp32 (hint f32)", "openvino", "fp32", "pinned"),
    ("OpenVINO, no precision hint", "openvino", "fp32", None),
    ("OpenVINO static int8 (NNCF)", "openvino", "int8-static", "pinned"),
)


SHIPPED = ENGINES[1][0]  # what the other engines are compared with
WARMUP = 64  # texts each engine classifies before the rounds


def texts_for(limit: int) -> tuple[list[str], str]:
    path = fpb.shared_file("50")
    if path is None:
        raise SystemExit(f"error: no Sentences_50Agree.txt in {fpb.SHARED_DIR} (set FINSENT_FPB_DIR)")
    texts = [sentence for sentence, _ in fpb.read(path)]
    texts = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))[:limit]]
    return texts, f"Financial PhraseBank 50% agreement, {len(texts)} sentences (random sample, seed 0)"


def capabilities() -> str:
    """What OpenVINO's CPU plugin can compute in here (BF16 listed: its default precision is bf16)."""
    import openvino as ov

    return ", ".join(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def classifier(export_dir, engine: str, variant: str, precision, cores: int):
    if engine == "onnxruntime":
        return OnnxClassifier(export_dir, variant, threads=cores)
    return OpenVinoClassifier(export_dir, variant, threads=cores, precision=precision)


def measure(export_dir, texts: list[str], batch: int, rounds: int, cores: int, log=print) -> dict:
    models = {label: classifier(export_dir, *spec, cores) for label, *spec in ENGINES}
    logits, passes = {}, {label: [] for label in models}
    for model in models.values():  # warm-up: first runs allocate and compile for the shapes
        model.logits(texts[:WARMUP], batch_size=batch)
    labels = list(models)
    for turn in range(rounds):  # each round starts with the next engine: no engine always runs first
        for label in labels[turn % len(labels) :] + labels[: turn % len(labels)]:
            model = models[label]
            began = time.perf_counter()
            logits[label] = model.logits(texts, batch_size=batch)
            passes[label].append(len(texts) / (time.perf_counter() - began))
            log(f"  round {turn + 1}: {label}: {passes[label][-1]:.1f} texts/s", flush=True)
    reference = logits[ENGINES[0][0]]
    shipped = passes[SHIPPED]
    rows = {}
    for (label, engine, variant, _), model in zip(ENGINES, models.values()):
        rows[label] = {
            "engine": engine,
            "variant": variant,
            # OpenVINO's compiled inference precision (its static int8 runs the rest in it); ORT's by variant.
            "precision": ("" if variant == "fp32" else "int8 + ") + getattr(model, "precision", "f32"),
            "texts_per_s_runs": [round(x, 2) for x in passes[label]],
            "texts_per_s_best": max(passes[label]),
            "texts_per_s_median": float(np.median(passes[label])),
            # Each round's ratio to ONNX Runtime int8 in the same round: the machine's drift cancels.
            "vs_ort_int8_per_round": [round(a / b, 3) for a, b in zip(passes[label], shipped)],
            "vs_ort_int8_median": float(np.median([a / b for a, b in zip(passes[label], shipped)])),
            "max_abs_logit_diff_vs_ort_fp32": float(np.abs(logits[label] - reference).max()),
        }
    return rows


def markdown(results: dict) -> str:
    lines = [
        f"# CPU engines in-process ({results['when']})",
        "",
        f"`python -m benchmarks.cpu_engines`, {results['machine']}; CPU flags: {results['cpu_flags']}. "
        f"{results['sentences']}, length-sorted batches of {results['batch']} padded to each batch's longest, "
        f"{results['cores']} threads, onnxruntime {results['onnxruntime']}, OpenVINO {results['openvino']}, "
        f"NNCF {results['nncf']}; OpenVINO's CPU capabilities here: {results['openvino_cpu_capabilities']} "
        + (
            "(BF16: OpenVINO's default precision is bf16 here). "
            if "BF16" in results["openvino_cpu_capabilities"]
            else "(no BF16: OpenVINO's default precision is f32 here). "
        )
        + f"The engines take turns in one process ({results['rounds']} rounds after a "
        f"warm-up on {WARMUP} texts; max abs d logit from the last round); the machine is shared and the run was niced, so absolute figures are "
        "noisy: compare the ratios within a round (each round starts with the next engine).",
        "",
    ]
    for family, entry in results["models"].items():
        lines += [
            f"## {family} ({entry['source']})",
            "",
            f"Static int8: {entry['calibration']}; "
            + (f"quantized in {entry['quantize_s']} s." if entry["quantize_s"] else "built by an earlier run."),
            "",
            *table(
                [
                    "engine and variant",
                    "computes in (OpenVINO: its compiled precision)",
                    "texts/s (median)",
                    "best",
                    "x ORT int8 (median of rounds)",
                    "x ORT int8 per round",
                    "max abs d logit vs ORT fp32",
                ],
                [
                    [
                        label,
                        r["precision"],
                        f"{r['texts_per_s_median']:.1f}",
                        f"{r['texts_per_s_best']:.1f}",
                        f"{r['vs_ort_int8_median']:.2f}",
                        ", ".join(f"{x:.2f}" for x in r["vs_ort_int8_per_round"]),
                        f"{r['max_abs_logit_diff_vs_ort_fp32']:.2e}",
                    ]
                    for label, r in entry["engines"].items()
                ],
            ),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import nncf
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="finbert", help="finbert (BERT-base), distilbert, or both")
    parser.add_argument("--finbert", help="checkpoint (default: random-weight BERT-base)")
    parser.add_argument("--distilbert", help="checkpoint (default: random-weight DistilBERT-base)")
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requantize", action="store_true", help="rebuild the static int8 even if built")
    shared_arguments(parser)
    args = parser.parse_args(argv)
    models = args.models.split(",")
    refuse(
        parser,
        unknown("--models", models, FAMILIES),
        min(args.sentences, args.batch, args.rounds, args.cores) < 1 and "--sentences, --batch, --rounds, --cores >= 1",
    )
    texts, source = texts_for(args.sentences)
    flags = set(open("/proc/cpuinfo").read().split())
    results = {
        "when": runner.now(),
        "machine": machine(args.cores),
        "cpu_flags": ", ".join(sorted(f for f in flags if f.startswith(("avx", "amx")))) or "no AVX",
        "sentences": source,
        "batch": args.batch,
        "rounds": args.rounds,
        "cores": args.cores,
        "onnxruntime": onnxruntime.__version__,
        "openvino": version(),
        "nncf": nncf.__version__,
        "openvino_cpu_capabilities": capabilities(),
        "models": {},
    }
    for family in models:
        source_dir = checkpoint(family, getattr(args, family), args.build)
        export_dir = export_model(source_dir, family, args.build / "export" / family).path
        build_variants(export_dir, ["int8"], min_agreement=0.0, guard_limit=UNGUARDED_SAMPLE)
        calibration, described = calibration_sentences(export_dir)
        quantize_s = None  # built by an earlier run (speed does not depend on the calibration's texts)
        if args.requantize or not variant_path(export_dir, "int8-static").exists():
            began = time.monotonic()
            quantize_static(export_dir, calibration)
            quantize_s = round(time.monotonic() - began, 1)
        print(f"{family}: {len(texts)} texts, engines in turn ...")
        results["models"][family] = {
            "source": source_dir,
            "calibration": described,
            "quantize_s": quantize_s,
            "engines": measure(export_dir, texts, args.batch, args.rounds, args.cores),
        }
    runner.write(args.out, "cpu-engines", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
