"""The CPU engines' variants on a real-weights checkpoint: how far each one's answers are from fp32's.

For one fine-tuned checkpoint (`make finetune BASE=minilm`, which keeps its held-out split as
heldout.txt), exported once under --build, and each variant the Python classifier can serve on CPU
(ONNX Runtime fp32, the reference; ONNX Runtime dynamic int8; OpenVINO fp32 with the f32 hint;
OpenVINO NNCF static int8):
  - the served guard's judgement (export.optimize / export.openvino, the functions `make serve` runs,
    results in the export's variants.json): agreement with ONNX Runtime fp32 on all 4,846 FPB-50
    sentences in served batch shapes, and on fp32's confident predictions, and FPB-50 accuracy;
  - accuracy on the checkpoint's held-out split, in process, with each engine's classifier class;
  - batch dependence (benchmarks.batch_dependence's measure): a text alone against the same text
    inside --shuffles different random batches, its largest probability move;
  - which sentences calibrated the static int8 (export.openvino.calibration_sentences).
A variant the guard refuses is reported refused, with the reason, and not measured further.
Writes docs/benchmarks/engine-accuracy.{md,json}.

    python -m benchmarks.engine_accuracy --checkpoint build/checkpoints/minilm-fpb
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import runner
from benchmarks.batch_dependence import moves
from benchmarks.cpu_engines import classifier
from benchmarks.markdown import table
from benchmarks.runner import refuse, shared_arguments, unknown
from export import fpb
from export.cli import bounded, fraction
from export.facts import CANONICAL_LABELS, FAMILIES
from export.onnx import export_model
from export.openvino import build_variant, calibration_sentences, version
from export.optimize import MIN_AGREEMENT, REPORT_FILENAME, GuardError, build_variants
from export.runtime import served_name
from training.finetune import HELDOUT_FILENAME

# (label, engine, variant): what the Python classifier can serve on CPU; the first is the reference.
VARIANTS = (
    ("ORT fp32 (reference)", "onnxruntime", "fp32"),
    ("ORT dynamic int8", "onnxruntime", "int8"),
    ("OpenVINO fp32 (hint f32)", "openvino", "fp32"),
    ("OpenVINO static int8 (NNCF)", "openvino", "int8-static"),
)


def guard(export_dir: Path, engine: str, variant: str, limit: int | None, min_agreement: float, cores: int) -> dict:
    """The served guard's result for a variant (variants.json's entry), with `refused` when it refused."""
    name = served_name(engine, variant)
    try:
        if engine == "onnxruntime":
            return build_variants(export_dir, [variant], guard_limit=limit, min_agreement=min_agreement)[name]
        return build_variant(export_dir, variant, guard_limit=limit, min_agreement=min_agreement, threads=cores)
    except GuardError as exc:
        print(f"{name}: {exc}")
        recorded = json.loads((export_dir / REPORT_FILENAME).read_text()).get(name, {})
        # A refusal before judging (wrong OpenVINO release, no calibration data) leaves an older entry there.
        return {**(recorded if recorded.get("passed") is False else {}), "refused": str(exc)}


def heldout_scores(model, rows: list[tuple[str, str]], reference: list[str] | None) -> tuple[dict, list[str]]:
    """Accuracy and macro-F1 on the held-out rows (and agreement with the reference's labels)."""
    predicted = [CANONICAL_LABELS[i] for i in model.probabilities([s for s, _ in rows]).argmax(axis=1)]
    scores = fpb.scores([label for _, label in rows], predicted)
    result = {"n": scores["n"], "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}
    if reference is not None:
        result["agreement_with_fp32"] = sum(a == b for a, b in zip(predicted, reference)) / len(rows)
    return result, predicted


def measure(args, export_dir: Path, rows: list[tuple[str, str]]) -> dict:
    texts = [s for s, _ in rows][: args.dependence_sentences]
    results, reference = {}, None
    for label, engine, variant in VARIANTS:
        entry = {"engine": engine, "variant": variant, "served_name": served_name(engine, variant)}
        if engine != "onnxruntime" or variant != "fp32":
            entry["guard"] = guard(export_dir, engine, variant, args.guard_sentences, args.min_agreement, args.cores)
        if "refused" not in entry.get("guard", {}):
            model = classifier(export_dir, engine, variant, "pinned", args.cores)
            entry["heldout"], predicted = heldout_scores(model, rows, reference)
            reference = reference or predicted
            entry["batch_dependence"] = moves(model, texts, args.batch, args.shuffles)
            print(f"{label}: held-out {entry['heldout']}, batch dependence {entry['batch_dependence']}")
        results[label] = entry
    return results


def percent(value) -> str:
    return "" if value is None else f"{value:.2%}"


def row(label: str, entry: dict, judged: dict) -> list[str]:
    """A variant's table row; `judged`: a guard's result, whose fp32 side is the reference's row."""
    g, held, dep = entry.get("guard", {}), entry.get("heldout", {}), entry.get("batch_dependence", {})
    if "guard" not in entry:  # the reference: what every guard compared with
        g = {"agreement": 1.0, "confident_agreement": 1.0, "max_abs_prob_diff": 0.0}
        g.update(confident=judged.get("confident"), accuracy_variant=judged.get("accuracy_fp32"))
    verdict = "reference" if "guard" not in entry else "refused" if "refused" in g else "pass"
    return [
        label,
        verdict,
        percent(g.get("agreement")),
        percent(g.get("confident_agreement")) + (f" of {g['confident']}" if g.get("confident") is not None else ""),
        "" if g.get("max_abs_prob_diff") is None else f"{g['max_abs_prob_diff']:.4f}",
        "" if g.get("accuracy_variant") is None else f"{g['accuracy_variant']:.4f}",
        f"{held['accuracy']:.4f}" if held else "",
        percent(held.get("agreement_with_fp32")),
        f"{max(dep['max_move_per_shuffle']):.4f}" if dep else "",
        f"{dep['label_changes']} of {dep['labels_compared']}" if dep else "",
    ]


def markdown(results: dict) -> str:
    judged = [e["guard"] for e in results["variants"].values() if "settings" in e.get("guard", {})]
    lines = [
        f"# The CPU engines' accuracy on a real-weights checkpoint ({results['when']})",
        "",
        f"`python -m benchmarks.engine_accuracy`, {results['machine']}, onnxruntime {results['onnxruntime']}, "
        f"OpenVINO {results['openvino']}, NNCF {results['nncf']}. Checkpoint `{results['checkpoint']}` "
        f"({results['family']}), exported to `{results['export']}`; the run took {results['seconds']:.0f} s "
        "(export, builds and guards included, unless cached).",
        "",
        "- **Guard** (what `make serve` runs; from the export's variants.json): "
        + (
            f"{judged[0]['settings']['guard']} in served batch shapes against ONNX Runtime fp32; a variant passes "
            f"when {judged[0]['rule']}."
            if judged
            else "no variant was judged."
        ),
        f"- **Held-out**: the checkpoint's {HELDOUT_FILENAME} ({results['heldout']} sentences), each engine's "
        "classifier in process, length-sorted batches of 32; agreement is with ORT fp32's labels there.",
        f"- **Batch dependence**: {results['dependence_sentences']} held-out sentences, each alone against inside "
        f"{results['shuffles']} different random batches of {results['batch']} (padded to the batch's longest); "
        "the largest probability move of any text.",
        f"- **Static int8 calibration**: {results['calibration']}.",
        "",
        *table(
            [
                "engine and variant",
                "guard",
                "FPB-50 agreement with fp32",
                "on confident",
                "FPB-50 max abs d p vs fp32",
                "FPB-50 accuracy",
                "held-out accuracy",
                "held-out agreement with fp32",
                "max abs d p, alone vs batched",
                "label changes when batched",
            ],
            [row(label, entry, judged[0] if judged else {}) for label, entry in results["variants"].items()],
        ),
        "",
    ]
    refused = [
        (label, e["guard"]["refused"]) for label, e in results["variants"].items() if "refused" in e.get("guard", {})
    ]
    lines += [f"- {label} refused: {why}" for label, why in refused] + ([""] if refused else [])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a `make finetune` output (with heldout.txt)")
    parser.add_argument("--family", default="distilbert", help="the architecture it is saved as (default distilbert)")
    parser.add_argument("--guard-sentences", type=bounded(int, 1), help="a random sample for the guards (default: all)")
    parser.add_argument(
        "--min-agreement",
        type=fraction,
        default=MIN_AGREEMENT,
        help=f"the guards' limit (default {MIN_AGREEMENT}, as served; 0 reports without refusing)",
    )
    # Each text alone and in 5 different batches. With 600, held-out scoring and this took ~10 of the 14 min of a
    # MiniLM-shaped random-weight run (800 guard sentences) on 2 cores at load 9.
    parser.add_argument("--dependence-sentences", type=bounded(int, 1), default=300)
    parser.add_argument("--batch", type=bounded(int, 2), default=16)
    parser.add_argument("--shuffles", type=bounded(int, 1), default=5)
    shared_arguments(parser)
    args = parser.parse_args(argv)
    heldout = args.checkpoint / HELDOUT_FILENAME
    refuse(
        parser,
        unknown("--family", [args.family], FAMILIES),
        not heldout.is_file()
        and f"{args.checkpoint} has no {HELDOUT_FILENAME}: the report scores the fine-tune's held-out split, which "
        "`make finetune` keeps in its output: fine-tune one with `make finetune BASE=minilm` and pass that folder",
    )
    import nncf
    import onnxruntime

    began = time.monotonic()
    rows = fpb.read(heldout)
    export_dir = export_model(str(args.checkpoint), args.family, args.build / "export" / f"{args.family}-accuracy").path
    try:
        used, calibration = calibration_sentences(export_dir)
        # Checked, not assumed: the held-out accuracy must not be measured on calibration sentences.
        calibration += f"; {len(set(used) & {s for s, _ in rows})} of them in this {HELDOUT_FILENAME}"
    except FileNotFoundError as exc:
        calibration = f"none ({exc})"
    print(f"static int8 calibration: {calibration}")
    results = {
        "when": runner.now(),
        "machine": runner.machine(args.cores),
        "onnxruntime": onnxruntime.__version__,
        "openvino": version(),
        "nncf": nncf.__version__,
        "checkpoint": str(args.checkpoint),
        "family": args.family,
        "export": str(export_dir),
        "heldout": len(rows),
        "dependence_sentences": min(args.dependence_sentences, len(rows)),
        "batch": args.batch,
        "shuffles": args.shuffles,
        "calibration": calibration,
        "variants": measure(args, export_dir, rows),
    }
    results["seconds"] = round(time.monotonic() - began, 1)
    runner.write(args.out, "engine-accuracy", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
