"""How much a text's probabilities depend on the texts batched with it, per variant.

Each sentence is classified alone, then inside random batches of 16 (length-sorted within the
batch and padded to its longest, as the classifier runs one group), over a few shuffles. fp32 masks
padded rows exactly; int8's dynamic quantization scales a run's activations as a whole, so its
texts move with their neighbours (`make serve REPRODUCIBLE=1` runs each text alone). Writes
docs/benchmarks/batch-dependence.{md,json}.

    python -m benchmarks.batch_dependence --export build/export/distilbert --variants fp32,int8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import runner
from benchmarks.inputs import sentences
from benchmarks.markdown import table
from export.cli import bounded, existing_export
from export.runtime import VARIANTS, Classifier, OnnxClassifier, variant_filename


def moves(model: Classifier, texts: list[str], batch: int, shuffles: int, seed: int = 0) -> dict:
    """Probability moves (batched minus alone) over `shuffles` random batchings; any engine's classifier."""
    alone = np.concatenate([model.probabilities([text]) for text in texts])
    rng, worst, flips = np.random.default_rng(seed), [], 0
    per_text = np.zeros(len(texts))
    for _ in range(shuffles):
        order = rng.permutation(len(texts))
        batched = np.empty_like(alone)
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            batched[rows] = model.probabilities([texts[i] for i in rows], batch_size=batch)
        diff = np.abs(batched - alone).max(axis=1)
        per_text = np.maximum(per_text, diff)
        worst.append(float(diff.max()))
        flips += int((batched.argmax(axis=1) != alone.argmax(axis=1)).sum())
    return {
        "texts": len(texts),
        "shuffles": shuffles,
        "max_move_per_shuffle": [round(w, 4) for w in worst],
        "texts_moved_over_0.01": int((per_text > 0.01).sum()),
        "texts_moved_over_0.05": int((per_text > 0.05).sum()),
        "label_changes": flips,
        "labels_compared": shuffles * len(texts),
    }


def markdown(results: dict) -> str:
    lines = [
        f"# Batch dependence of the variants ({results['when']})",
        "",
        f"`python -m benchmarks.batch_dependence`, export `{results['export']}`, {results['sentences']}. "
        f"Each text alone against the same text in random batches of {results['batch']} (padded to the "
        f"batch's longest), {results['shuffles']} shuffles; a text's move is its largest probability change.",
        "",
        *table(
            ["variant", "largest move per shuffle", "texts moved > 0.01", "texts moved > 0.05", "label changes"],
            [
                [
                    variant,
                    ", ".join(f"{w:.4f}" for w in r["max_move_per_shuffle"]),
                    f"{r['texts_moved_over_0.01']} of {r['texts']}",
                    f"{r['texts_moved_over_0.05']} of {r['texts']}",
                    f"{r['label_changes']} of {r['labels_compared']}",
                ]
                for variant, r in results["variants"].items()
            ],
        ),
    ]
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--export",
        type=existing_export,
        default="build/export/distilbert",
        help="an export folder with the variants built (default: make serve's DistilBERT)",
    )
    parser.add_argument("--variants", default="fp32,int8")
    parser.add_argument("--sentences", type=bounded(int, 1), default=600)
    parser.add_argument("--batch", type=bounded(int, 2), default=16)
    parser.add_argument("--shuffles", type=bounded(int, 1), default=3)
    parser.add_argument("--out", type=Path, default=runner.REPORTS)
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        parser.error(f"argument --variants: unknown {unknown}: choose from {', '.join(VARIANTS)}")
    texts, source = sentences(args.sentences)
    results = {
        "when": runner.now(),
        "export": str(args.export),
        "sentences": source,
        "batch": args.batch,
        "shuffles": args.shuffles,
        "variants": {},
    }
    if missing := [v for v in variants if not (args.export / variant_filename(v)).is_file()]:
        parser.error(
            f"{args.export} has no {', '.join(missing)} variant: build it with "
            f"`python -m export.optimize --export {args.export} --variants {','.join(missing)}`"
        )
    for variant in variants:
        results["variants"][variant] = moves(OnnxClassifier(args.export, variant), texts, args.batch, args.shuffles)
        print(f"{variant}: {results['variants'][variant]}")
    runner.write(args.out, "batch-dependence", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
