"""Assemble a servable Triton model repository from this folder and the ONNX exports.

    python -m model_repository.assemble --target local --export finbert=build/export/finbert \\
        --out build/repository/local

configs/<role>.pbtxt are the source, one per role for every family (ensemble, tokenizer, classifier,
postprocess, document); this module names them for a family (`finbert`, `finbert_tokenizer`, ...) and
applies the only things that vary:
- per target and device, the classifier:
  - "python" (local, and the container's cpu profile): ONNX Runtime in a Python model fed ragged
    batches, which it splits into length-sorted runs (classifier.py); the tokenizer pads each
    request to its longest text only;
  - "onnxruntime" (the container's gpu profile): Triton's native backend, which concatenates
    ragged inputs instead of padding them, so the tokenizer pads to a few coarse length buckets:
    the dynamic batcher only joins requests of one shape (docs/serving.md, "Container profiles");
  plus its instance kind and threads;
- per family and export: inputs the family's architecture or the checkpoint lacks (DistilBERT has no
  token_type_ids) are dropped.
Exported files are symlinked for the local target and copied for the container target.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.cli import bounded
from export.facts import CANONICAL_LABELS, FACTS_FILENAME, FAMILIES, ModelFacts
from export.openvino import PRECISION as OPENVINO_PRECISION
from export.runtime import SERVED, engine_of, variant_filename
from finsent import wire
from model_repository import classes

SOURCE = Path(__file__).resolve().parent
STEPS = ("tokenizer", "classifier", "postprocess")
# The family's name in configs/*.pbtxt: the ensemble's steps and the document model's ensemble.
PLACEHOLDER = "FAMILY"
# <family>_document: the BLS model scoring a document's sentences through the ensemble (docs/documents.md).
DOCUMENT = "document"
PYTHON_MODELS = SOURCE / "python_models"
# Modules a Python model imports from its own folder, copied next to its model.py: siblings in
# python_models/, and the client's wire contract (finsent/wire.py, which imports nothing), so the
# document model and the client read one statement of the tensor names and BREAKDOWN's version.
HELPERS = {
    "tokenizer": (PYTHON_MODELS / "text_input.py",),
    DOCUMENT: (PYTHON_MODELS / "text_input.py", PYTHON_MODELS / "sentences.py", Path(wire.__file__)),
}
TARGETS = ("local", "container")
SPINNING = ("runs", "always", "off")  # see classifier.py
CLASSIFIERS = ("python", "onnxruntime")
# Padding lengths of the native classifier (the model's max length is always added): one bucket
# for nearly every sentence, so concurrent requests share a shape and batch (docs/serving.md).
NATIVE_BUCKETS = (128,)
# Rows the batcher joins into one classifier run (model_repository/classes.py): an interactive text
# waits for at most one such run. On CPU batching gains little once each run is sorted by length
# (2 cores: int8 BERT-base 35 texts/s in sorted runs of 8, 36 of 32, on an AVX2 EPYC), and a run of 4
# FinBERT rows takes ~0.1 s there; on a GPU a run of 64 takes milliseconds, so the cap is the
# ensemble's max_batch_size (docs/serving.md, "Traffic classes"; docs/benchmarks/traffic-classes.md).
CPU_BACKGROUND_BATCH_SIZE = 4
OPTIONAL_INPUTS = ("token_type_ids",)
# An ensemble has no model file; this note keeps its version folder in copies that drop empty
# folders (gcloud storage cp -r), where Triton would find no version to load and exit.
ENSEMBLE_NOTE = (
    "README.txt",
    "An ensemble has no model file. This file keeps the version folder in copies that "
    "drop empty folders (a bucket upload): without it Triton finds no version to load.\n",
)


# The container's classifier threads on cpu: the cores k8s/values/cpu.yaml requests, read from there
# (the image is built elsewhere, so the build machine's core count would be the wrong default).
CPU_PROFILE = SOURCE.parent / "k8s" / "values" / "cpu.yaml"


def _requested_cores(profile: Path) -> int:
    cpu = str(yaml.safe_load(profile.read_text())["resources"]["requests"]["cpu"])
    if not cpu.isdigit():
        raise ValueError(f"{profile}: resources.requests.cpu {cpu!r} must be whole cores (the classifier's threads)")
    return int(cpu)


CONTAINER_CPU_CORES = _requested_cores(CPU_PROFILE)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_cores(target: str) -> int:
    return CONTAINER_CPU_CORES if target == "container" else available_cores()


@dataclass(frozen=True)
class TargetOptions:
    target: str = "local"  # local: pytriton's tritonserver; container: NGC tritonserver image
    device: str = "cpu"  # container only: gpu (KIND_GPU, CUDA EP) or cpu
    cores: int = field(default_factory=available_cores)  # ORT intra-op threads of the classifier
    classifier: str = ""  # "python" or "onnxruntime" (CLASSIFIERS); "": python unless the container's gpu
    buckets: tuple[int, ...] = NATIVE_BUCKETS  # native classifier's padding lengths (below the max length)
    cpu_instances: bool = False  # gpu profile with KIND_CPU instances: measure it where there is no GPU
    run_overhead_tokens: int = 48  # local classifier: a run's fixed cost in padded tokens (see classifier.py)
    max_tokens_per_run: int = 8192  # local classifier: bound on one ONNX Runtime run's padded tokens
    max_rows_per_run: int = 0  # local classifier: bound on a run's rows (0: none; 1: reproducible int8)
    spinning: str = "runs"  # local classifier's ORT threads: spin-wait between ops only while a run lasts
    # ("runs"), also between runs ("always", ORT's default) or never ("off")
    # Python classifier's threads' nice value: under load its runs yield the cores to what takes
    # milliseconds (tokenizer, postprocess, Triton's threads, the probes), so a refusal or a probe is not
    # held up behind a run (docs/serving.md, "Traffic classes"); 0 shares the cores equally.
    nice: int = 10
    # fp32 (parity reference), int8 (CPU), fp16 (GPU): see export/optimize.py; openvino-fp32 and
    # openvino-int8-static: OpenVINO in the Python classifier (export/openvino.py, runtime.served_name)
    variant: str = "fp32"
    # Rows of one joined classifier run, and of a finsent client's background request (classes.py);
    # 0: CPU_BACKGROUND_BATCH_SIZE on cpu, the ensemble's max_batch_size on gpu.
    background_batch_size: int = 0
    traffic_classes: bool = True  # False: one first-come-first-served, unbounded queue (the benchmark's before)
    # Background work in its own copy of the classifier at nice 19 (classes.background_copy); None: with
    # traffic classes on the Python classifier (CPU), not on the native one (GPU: runs take milliseconds).
    background_classifier: bool | None = None

    def __post_init__(self):
        if not self.classifier:
            default = "onnxruntime" if (self.target, self.device) == ("container", "gpu") else "python"
            object.__setattr__(self, "classifier", default)
        if self.background_batch_size < 0:
            raise ValueError(f"background_batch_size {self.background_batch_size}: 1 or more (0: the device's default)")
        if not self.background_batch_size:
            rows = (
                load_config(source_config(None)).max_batch_size if self.device == "gpu" else CPU_BACKGROUND_BATCH_SIZE
            )
            object.__setattr__(self, "background_batch_size", rows)
        if self.background_classifier is None:
            copy = self.traffic_classes and self.classifier == "python"
            object.__setattr__(self, "background_classifier", copy)
        if self.background_classifier and not (self.traffic_classes and self.classifier == "python"):
            raise ValueError(
                "background_classifier needs traffic classes and the Python classifier (nice is per process)"
            )
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier {self.classifier!r}: one of {CLASSIFIERS}")
        if self.target == "local" and self.classifier != "python":
            raise ValueError("the local target's classifier is the Python model (no native onnxruntime backend)")
        if self.target not in TARGETS:
            raise ValueError(f"target {self.target!r}: one of {TARGETS}")
        if self.variant not in SERVED:
            raise ValueError(f"variant {self.variant!r}: one of {SERVED}")
        if engine_of(self.variant)[0] != "onnxruntime" and self.classifier != "python":
            raise ValueError(f"variant {self.variant!r} runs in the Python classifier (local, container cpu profile)")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice {self.nice}: 0 (equal share) to 19 (yield the most)")
        if self.spinning not in SPINNING:
            raise ValueError(f"spinning {self.spinning!r}: one of {SPINNING}")
        if self.device not in ("cpu", "gpu") or (self.target == "local" and self.device != "cpu"):
            raise ValueError(f"device {self.device!r}: the local target is cpu, the container target cpu or gpu")
        if self.cpu_instances and self.device != "gpu":
            raise ValueError("cpu_instances switches the gpu profile's classifier to CPU instances: device must be gpu")
        if self.max_rows_per_run and self.classifier != "python":
            raise ValueError(
                "max_rows_per_run is the Python classifier's: the native onnxruntime backend runs "
                "each batch Triton forms as one"
            )


def load_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def source_config(step: str | None) -> Path:
    """The versioned config of a role: step None is the ensemble."""
    return SOURCE / "configs" / f"{step or 'ensemble'}.pbtxt"


def _param(config: mc.ModelConfig, key: str, value) -> None:
    config.parameters[key].string_value = str(value)


def _prune(config: mc.ModelConfig, family: str, facts: ModelFacts) -> None:
    """Drop optional token inputs the family's architecture or the export does not have (the classifier's
    check then refuses an export with inputs the family lacks: a BERT export served as distilbert)."""
    unwanted = {
        name for name in OPTIONAL_INPUTS if name not in facts.input_names or name not in FAMILIES[family].inputs
    }
    for repeated in (config.input, config.output):
        for tensor in [t for t in repeated if t.name in unwanted]:
            repeated.remove(tensor)
    for step in config.ensemble_scheduling.step:
        for mapping in (step.input_map, step.output_map):
            for key in [k for k in mapping if k in unwanted]:
                del mapping[key]


def _named(model: str, family: str, source: Path) -> str:
    """`FAMILY_tokenizer` -> `finbert_tokenizer`: a model of configs/ named for the family."""
    if model.split("_")[0] != PLACEHOLDER:
        raise ValueError(f"{source.name}: model {model!r} should be named {PLACEHOLDER}[_<step>]")
    return family + model.removeprefix(PLACEHOLDER)


def render(family: str, step: str | None, facts: ModelFacts, options: TargetOptions) -> mc.ModelConfig:
    """The config of `<family>` (step None: the ensemble) or `<family>_<step>` for a target."""
    name = family if step is None else f"{family}_{step}"
    source = source_config(step)
    config = load_config(source)
    config.name = name
    _prune(config, family, facts)
    for composing in config.ensemble_scheduling.step:
        composing.model_name = _named(composing.model_name, family, source)
    if options.traffic_classes:
        classes.apply(config, step, min(options.background_batch_size, config.max_batch_size))
    if step == DOCUMENT:
        _param(config, "ensemble", _named(config.parameters["ensemble"].string_value, family, source))
    if step in (None, DOCUMENT):
        labels = config.parameters["labels"].string_value.split(",")
        if tuple(labels) != CANONICAL_LABELS:
            raise ValueError(f"{source.name} states labels {labels}, expected {list(CANONICAL_LABELS)}")
        # Callers can read where texts are cut (docs/errors.md: truncated, not refused); a
        # document model's sentences are windowed there instead (docs/documents.md).
        _param(config, "max_length", facts.max_length)
    elif step == "tokenizer":
        if options.classifier == "onnxruntime":
            buckets = [b for b in options.buckets if b < facts.max_length] + [facts.max_length]
            _param(config, "padding", "buckets:" + ",".join(map(str, buckets)))
        else:
            _param(config, "padding", "longest")
    elif step == "classifier":
        declared = [t.name for t in config.input]
        if declared != list(facts.input_names):
            raise ValueError(
                f"{name}: inputs {declared} ({family}'s, {FAMILIES[family].arch}) differ from the "
                f"export's {facts.input_names}"
            )
        if config.output[0].name != facts.output_name:
            raise ValueError(f"{name}: output {config.output[0].name} but the export's is {facts.output_name}")
        gpu = options.device == "gpu" and not options.cpu_instances
        instance = config.instance_group.add(
            count=1, kind=mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
        )
        if gpu:
            instance.gpus.append(0)
        _param(config, "intra_op_thread_count", 1 if options.device == "gpu" else options.cores)
        _param(config, "inter_op_thread_count", 1)
        if options.classifier == "python":
            config.backend = "python"
            for tensor in config.input:
                tensor.allow_ragged_batch = True  # requests of different lengths meet in one execute()
            _param(config, "run_overhead_tokens", options.run_overhead_tokens)
            _param(config, "max_tokens_per_run", options.max_tokens_per_run)
            _param(config, "max_rows_per_run", options.max_rows_per_run)
            _param(config, "spinning", options.spinning)
            _param(config, "nice", options.nice)
            engine, variant = engine_of(facts.variant)
            _param(config, "engine", engine)
            _param(config, "model_filename", served_filename(facts.variant))
            if engine == "openvino":
                _param(config, "precision", OPENVINO_PRECISION[variant])
        else:
            config.backend = "onnxruntime"
            config.default_model_filename = "model.onnx"
    return config


def served_filename(variant: str, suffix: str | None = None) -> str:
    """The classifier's model file in the repository: model.onnx, or model.xml (+ model.bin) for OpenVINO IR."""
    return "model" + (suffix or Path(variant_filename(variant)).suffix)


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        dst.symlink_to(src.resolve())
    else:
        shutil.copy2(src, dst)


def check_export(family: str, export_dir: Path, variant: str, out: Path) -> tuple:
    """Everything assemble() needs from one export, checked before anything is written."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}: one of {tuple(FAMILIES)}")
    if not (export_dir / FACTS_FILENAME).is_file():
        raise ValueError(
            f"{export_dir} is not an export (no {FACTS_FILENAME}): make one with "
            f"`python -m export.onnx --model <checkpoint> --name {family}`"
        )
    if out.resolve() == export_dir.resolve() or out.resolve() in export_dir.resolve().parents:
        raise ValueError(f"--out {out} holds the export {export_dir}: replacing it would delete the export")
    model_file = export_dir / variant_filename(variant)
    if not model_file.exists():
        engine, name = engine_of(variant)
        builder = "export.openvino" if engine == "openvino" else "export.optimize"
        raise FileNotFoundError(
            f"{model_file} is missing: build it with `python -m {builder} --export {export_dir} --variants {name}`"
        )
    return export_dir, ModelFacts.load(export_dir), variant, model_file


def is_repository(path: Path) -> bool:
    """A folder assemble() may replace: empty, or only model folders (each with its config.pbtxt)."""
    return path.is_dir() and all(child.is_dir() and (child / "config.pbtxt").is_file() for child in path.iterdir())


def assemble(
    exports: dict[str, Path],
    out: Path,
    options: TargetOptions = TargetOptions(),
    link: bool | None = None,
    variants: dict[str, str] | None = None,
) -> Path:
    """Write the repository for `exports` ({family: export dir}) to `out`, replacing a repository there.

    variants: {family: variant} where one differs from options.variant (a refused int8, say)."""
    if not exports:
        raise ValueError("no model to put in the repository")
    link = options.target == "local" if link is None else link
    out = Path(out)
    checked = {
        family: check_export(family, Path(export_dir), (variants or {}).get(family, options.variant), out)
        for family, export_dir in exports.items()
    }
    if out.exists():
        if not is_repository(out):
            raise ValueError(
                f"{out} exists and is not a model repository: refusing to replace it (choose another --out)"
            )
        shutil.rmtree(out)
    for family, (export_dir, facts, variant, model_file) in checked.items():
        served = dataclasses.replace(facts, variant=variant)
        configs = {step: render(family, step, served, options) for step in (None, *STEPS, DOCUMENT)}
        models = [(step, config) for step, config in configs.items()]
        if options.background_classifier:
            sentences = load_config(source_config(DOCUMENT)).parameters["sentences_per_request"].string_value
            ensemble, classifier = classes.background_copy(
                configs[None], configs["classifier"], configs[DOCUMENT], sentences
            )
            models += [(None, ensemble), ("classifier", classifier)]
        for step, config in models:
            version = out / config.name / "1"
            version.mkdir(parents=True)
            (out / config.name / "config.pbtxt").write_text(text_format.MessageToString(config))
            if step is None:
                (version / ENSEMBLE_NOTE[0]).write_text(ENSEMBLE_NOTE[1])
                continue
            served.save(version)  # the export's facts, naming the variant served
            if config.backend == "python":
                shutil.copy2(SOURCE / "python_models" / f"{step}.py", version / "model.py")
            if step in ("tokenizer", DOCUMENT):  # the document model's places long sentences' windows
                _place(export_dir / "tokenizer.json", version / "tokenizer.json", link)
            for helper in HELPERS.get(step, ()):
                shutil.copy2(helper, version / helper.name)
            if step == "classifier":
                _place(model_file, version / served_filename(variant), link)
                if model_file.suffix == ".xml":  # OpenVINO IR: its weights beside it
                    _place(model_file.with_suffix(".bin"), version / served_filename(variant, ".bin"), link)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=TARGETS, default="local")
    parser.add_argument("--device", choices=["cpu", "gpu"], help="container target: gpu (default) or cpu")
    parser.add_argument(
        "--export",
        action="append",
        required=True,
        metavar="FAMILY=DIR",
        help="an export directory per model family, e.g. finbert=build/export/finbert",
    )
    parser.add_argument("--variant", choices=SERVED, default="fp32", help="which export variant to serve")
    parser.add_argument(
        "--cores",
        type=bounded(int, 1),
        help="the classifier's ONNX Runtime intra-op threads (default: this "
        f"machine's cores for the local target, {CONTAINER_CPU_CORES} for the container on cpu: "
        "the CPU request of k8s/values/cpu.yaml)",
    )
    parser.add_argument("--out", type=Path, help="default: build/repository/<target>")
    parser.add_argument("--copy", action="store_true", help="copy exported files instead of symlinking")
    args = parser.parse_args(argv)
    device = args.device or ("gpu" if args.target == "container" else "cpu")
    if any("=" not in item for item in args.export):
        parser.error("--export takes FAMILY=DIR, e.g. finbert=build/export/finbert")
    cores = args.cores or default_cores(args.target)
    exports = dict(item.split("=", 1) for item in args.export)
    out = args.out or Path("build/repository") / args.target
    try:
        assemble(
            exports,
            out,
            TargetOptions(args.target, device, cores, variant=args.variant),
            link=False if args.copy else None,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote the {args.target} ({device}) repository for {', '.join(exports)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
