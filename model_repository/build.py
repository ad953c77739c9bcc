"""What `make repository` runs: a servable model repository from the exports in BUILD/export/.

    python -m model_repository.build --target container --device cpu      # the CPU default (fp16 on gpu)
    python -m model_repository.build --models finbert                      # a FinBERT-only image

Each model's variant is built first and checked by the accuracy guard (export.optimize); a variant
the guard refuses for one model falls back to that model's fp32 export, as `make serve` does. The
models default to the Helm chart's `models` (k8s/chart/finsent/values.yaml): its probes check every
one and its autoscaler reads each one's queue, so a missing export fails the build rather than
shipping an image that never becomes ready.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from export import openvino
from export.cli import bounded, fraction
from export.optimize import MIN_AGREEMENT, GuardError, build_variants
from export.runtime import (
    ALL_VARIANTS,
    CONTAINER_ORT,
    DEFAULT_ENGINE,
    ENGINE_DEFAULT_VARIANT,
    ENGINES,
    engine_of,
    served_choice,
)
from model_repository.assemble import (
    FAMILIES,
    SOURCE,
    TARGETS,
    TargetOptions,
    assemble,
    default_cores,
)

# What a refused variant falls back to: the next fastest on CPU (docs/benchmarks/cpu-engines.md), OpenVINO's
# static int8 to ONNX Runtime's dynamic int8 (itself guarded), any other to the exact fp32 export on ONNX Runtime.
FALLBACK = {"openvino-int8-static": "int8", "openvino-fp32": "fp32", "int8": "fp32", "fp16": "fp32"}
CHART_VALUES = SOURCE.parent / "k8s" / "chart" / "finsent" / "values.yaml"


def chart_models() -> list[str]:
    return list(yaml.safe_load(CHART_VALUES.read_text())["models"])


def served_variants(
    exports: dict[str, Path],
    variant: str,
    min_agreement: float = MIN_AGREEMENT,
    runtime: str | None = None,
    log=lambda line: print(line, file=sys.stderr),
) -> dict[str, str]:
    """{family: variant to serve}: `variant` (a served name: fp32, int8, openvino-int8-static, ...)
    built and guarded for each export, else the next of FALLBACK that passes, each refusal said with
    its reason (the others keep theirs). runtime: the ONNX Runtime release that will serve them
    (CONTAINER_ORT for the container): the guard judges under it, and the fp32 file shipped in a
    fallback must load in it (GuardError if not). OpenVINO variants are judged under the OpenVINO
    release that serves both targets (export.openvino.OPENVINO_VERSION)."""
    variants = {}
    for family, path in exports.items():
        tried = variant
        while tried != "fp32":
            try:
                engine, name = engine_of(tried)
                if engine == "openvino":
                    openvino.build_variant(path, name, min_agreement=min_agreement, log=log)
                else:
                    build_variants(path, [tried], min_agreement=min_agreement, runtime=runtime, log=log)
                break
            except GuardError as exc:
                fallback = FALLBACK[tried]
                log(
                    f"{exc}: serving {family} "
                    + (f"as {fallback}" if fallback != "fp32" else "in fp32 (exact, slower)")
                    + " instead"
                )
                tried = fallback
        variants[family] = tried
        if runtime and tried == "fp32":
            build_variants(path, ["fp32"], runtime=runtime, log=log)
    return variants


def models_list(text: str) -> list[str]:
    models = [m for m in text.split(",") if m]
    if unknown := [m for m in models if m not in FAMILIES]:
        raise argparse.ArgumentTypeError(f"unknown {unknown}: choose from {', '.join(FAMILIES)}")
    if not models:
        raise argparse.ArgumentTypeError("name at least one model")
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, default=Path("build"), help="holds export/<family>/ (default build)")
    parser.add_argument("--target", choices=TARGETS, default="container")
    parser.add_argument("--device", choices=["cpu", "gpu"], help="default: gpu for the container, cpu locally")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"the classifier's engine on cpu (default {DEFAULT_ENGINE}; gpu: onnxruntime only)",
    )
    parser.add_argument(
        "--variant",
        choices=ALL_VARIANTS,
        help=f"the engine's variant (default: fp16 on gpu; on cpu {ENGINE_DEFAULT_VARIANT})",
    )
    parser.add_argument(
        "--cores",
        type=bounded(int, 1),
        help="the classifier's ONNX Runtime threads "
        "(default: the CPU request of k8s/values/cpu.yaml for the container)",
    )
    parser.add_argument(
        "--models",
        type=models_list,
        help=f"comma-separated families (default: the chart's models in {CHART_VALUES.relative_to(SOURCE.parent)})",
    )
    parser.add_argument(
        "--min-agreement",
        type=fraction,
        default=MIN_AGREEMENT,
        help=f"the accuracy guard's limit (export.optimize; default {MIN_AGREEMENT})",
    )
    parser.add_argument(
        "--background-batch-size",
        type=bounded(int, 1),
        help="rows the classifier's batcher joins into one run: an interactive text waits for at most one "
        "such run (default: 4 on cpu, where background work has its own classifier, 64 on gpu, where it is "
        'also the rows of a finsent client\'s background request; docs/serving.md, "Traffic classes")',
    )
    parser.add_argument("--out", type=Path, help="default: BUILD/repository/TARGET")
    args = parser.parse_args(argv)
    device = args.device or ("gpu" if args.target == "container" else "cpu")
    try:
        variant = served_choice(device, args.engine, args.variant)
    except ValueError as exc:
        parser.error(str(exc))
    chart = chart_models()
    models = args.models or chart
    exports = {family: args.build / "export" / family for family in models}
    if missing := [family for family, path in exports.items() if not (path / "model.onnx").is_file()]:
        where = ", ".join(str(exports[family] / "model.onnx") for family in missing)
        fix = "run make serve (or python -m export.onnx) first"
        if not args.models:
            kept = [family for family in models if family not in missing]
            fix = f"the chart's probes and autoscaler expect every model it names ({', '.join(chart)}): {fix}" + (
                f", or build without {', '.join(missing)} (make repository MODELS={','.join(kept)}) and "
                f"install with --set 'models={{{','.join(kept)}}}'"
                if kept
                else ""
            )
        print(f"error: no export {where}: {fix}", file=sys.stderr)
        return 2
    out = args.out or args.build / "repository" / args.target
    options = TargetOptions(
        args.target,
        device,
        args.cores or default_cores(args.target),
        variant=variant,
        background_batch_size=args.background_batch_size or 0,
    )
    try:
        # The container's classifier runs under the image's ONNX Runtime: judge its files there.
        runtime = CONTAINER_ORT if args.target == "container" else None
        assemble(
            exports, out, options, link=False, variants=served_variants(exports, variant, args.min_agreement, runtime)
        )
    except (ValueError, FileNotFoundError, GuardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the {args.target} ({device}) repository for {', '.join(models)} to {out}")
    if args.target == "container" and set(models) != set(chart):
        # The chart's probes would wait forever for a model the image lacks.
        print(f"the chart names {', '.join(chart)}: install with --set 'models={{{','.join(models)}}}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
