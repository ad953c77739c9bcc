"""In-process inference on an export: the same tokenizer.json and ONNX file Triton serves.

Used by the variant accuracy guard and by the benchmark's in-process limit. Batches are
formed from length-sorted texts so padding stays small (padding every batch to its longest
member loses to batch 1 on CPU).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from export.facts import ModelFacts

VARIANTS = ("fp32", "int8", "fp16")  # ONNX Runtime's
# Served unless a variant is named: int8 is the fastest on CPU, fp16 on a GPU (docs/serving.md).
DEFAULT_VARIANT = {"cpu": "int8", "gpu": "fp16"}
# The Python classifier's engines and each one's variants (export/openvino.py): OpenVINO's fp32 is
# pinned to f32 and its int8 is static (NNCF, calibrated on Financial PhraseBank).
ENGINES = {"onnxruntime": VARIANTS, "openvino": ("fp32", "int8-static")}
ENGINE_DEFAULT_VARIANT = {"onnxruntime": DEFAULT_VARIANT["cpu"], "openvino": "int8-static"}
# The engine served on CPU unless one is named: the fastest that the guard passes, as measured on
# the 2-core AVX2 machine (docs/benchmarks/cpu-engines.md: OpenVINO's static int8 at 0.52x ONNX Runtime's
# dynamic int8 there, no VNNI). The gpu profile is ONNX Runtime's only.
DEFAULT_ENGINE = "onnxruntime"
OPENVINO_PREFIX = "openvino-"  # a served OpenVINO variant's name: openvino-fp32, openvino-int8-static
# The ONNX Runtime of NGC tritonserver:24.10-py3 (its onnxruntime backend), which serves the container:
# its variants are judged under it (export.optimize --runtime) and the native backend is built against it.
CONTAINER_ORT = "1.19.2"


def variant_filename(variant: str) -> str:
    """The file of an ONNX Runtime variant, or of a served OpenVINO one (openvino-<variant>)."""
    if variant.startswith(OPENVINO_PREFIX) and variant.removeprefix(OPENVINO_PREFIX) in ENGINES["openvino"]:
        return "model.onnx" if variant == f"{OPENVINO_PREFIX}fp32" else OPENVINO_INT8_FILENAME
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {VARIANTS}")
    return "model.onnx" if variant == "fp32" else f"model.{variant}.onnx"


OPENVINO_INT8_FILENAME = "model.ov-int8.xml"  # OpenVINO IR, its weights in the .bin beside it


def served_name(engine: str, variant: str | None = None) -> str:
    """What the server, the guard's report and the repository's facts call an engine's variant:
    ONNX Runtime's as they are (fp32, int8, fp16), OpenVINO's prefixed (openvino-int8-static)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: one of {', '.join(ENGINES)}")
    variant = variant or ENGINE_DEFAULT_VARIANT[engine]
    if variant not in ENGINES[engine]:
        raise ValueError(f"variant {variant!r} is not {engine}'s: one of {', '.join(ENGINES[engine])}")
    return variant if engine == "onnxruntime" else OPENVINO_PREFIX + variant


def engine_of(served: str) -> tuple[str, str]:
    """(engine, variant) of a served name (served_name's inverse)."""
    if served.startswith(OPENVINO_PREFIX):
        return "openvino", served.removeprefix(OPENVINO_PREFIX)
    return "onnxruntime", served


def served_choice(device: str, engine: str | None = None, variant: str | None = None) -> str:
    """The served name for a device and the ENGINE/VARIANT knobs. Neither given: DEFAULT_ENGINE's default
    variant; a variant alone: its engine (fp32, int8 and fp16 run on ONNX Runtime as before the engine
    knob, int8-static on OpenVINO). ValueError, saying what to choose, for an engine the device cannot
    run or a variant the engine does not have."""
    if device == "gpu":
        if engine not in (None, "onnxruntime"):
            raise ValueError(f"engine {engine!r}: the gpu profile runs onnxruntime only (Triton's native backend)")
        return served_name("onnxruntime", variant or DEFAULT_VARIANT["gpu"])
    if engine is None and variant is not None:  # the variant names its engine: fp32, int8, fp16 are ONNX Runtime's
        engine = "openvino" if variant not in VARIANTS else "onnxruntime"
    return served_name(engine or DEFAULT_ENGINE, variant)


SERVED = tuple(served_name(engine, variant) for engine, variants in ENGINES.items() for variant in variants)
ALL_VARIANTS = tuple(dict.fromkeys(v for variants in ENGINES.values() for v in variants))  # the VARIANT knob's


class Classifier:
    """An export's tokenizer and length-sorted batching; subclasses run the padded batch (infer)."""

    def __init__(self, export_dir: Path):
        self.facts = ModelFacts.load(Path(export_dir))
        self.tokenizer = Tokenizer.from_file(str(Path(export_dir) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.facts.max_length)

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: list[str]) -> list:
        return self.tokenizer.encode_batch(list(texts))

    def feeds(self, encodings: list) -> dict[str, np.ndarray]:
        """The model's inputs for encodings padded to their longest member."""
        width = max(len(e.ids) for e in encodings)
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        feeds = {}
        for name in self.facts.input_names:
            array = np.zeros((len(encodings), width), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                values = getattr(encoding, fields[name])
                array[row, : len(values)] = values
            feeds[name] = array
        return feeds

    def run(self, encodings: list) -> np.ndarray:
        """Logits for encodings padded to their longest member, in the checkpoint's label order."""
        return self.infer(self.feeds(encodings))

    def logits(self, texts: list[str], batch_size: int = 32, sort: bool = True) -> np.ndarray:
        encodings = self.encode(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable") if sort else np.arange(len(texts))
        out = np.empty((len(texts), len(self.facts.id2label)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self.run([encodings[i] for i in rows])
        return out

    def probabilities(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Softmax in the canonical order (negative, neutral, positive)."""
        z = self.logits(texts, batch_size).astype(np.float64)[:, self.facts.canonical_index]
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


class OnnxClassifier(Classifier):
    def __init__(
        self,
        export_dir: Path,
        variant: str = "fp32",
        threads: int | None = None,
        providers: list[str] | None = None,
        allow_spinning: bool = True,
    ):
        super().__init__(export_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(allow_spinning)))
        self.session = ort.InferenceSession(
            str(Path(export_dir) / variant_filename(variant)), options, providers=providers or ["CPUExecutionProvider"]
        )

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.facts.output_name], feeds)[0]
