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

VARIANTS = ("fp32", "int8", "fp16")
# Served unless a variant is named: int8 is the fastest on CPU, fp16 on a GPU (docs/serving.md).
DEFAULT_VARIANT = {"cpu": "int8", "gpu": "fp16"}
# The ONNX Runtime of NGC tritonserver:24.10-py3 (its onnxruntime backend), which serves the container:
# its variants are judged under it (export.optimize --runtime) and the native backend is built against it.
CONTAINER_ORT = "1.19.2"


def variant_filename(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {VARIANTS}")
    return "model.onnx" if variant == "fp32" else f"model.{variant}.onnx"


class OnnxClassifier:
    def __init__(
        self,
        export_dir: Path,
        variant: str = "fp32",
        threads: int | None = None,
        providers: list[str] | None = None,
        allow_spinning: bool = True,
    ):
        export_dir = Path(export_dir)
        self.facts = ModelFacts.load(export_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(allow_spinning)))
        self.session = ort.InferenceSession(
            str(export_dir / variant_filename(variant)), options, providers=providers or ["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.facts.max_length)

    def encode(self, texts: list[str]) -> list:
        return self.tokenizer.encode_batch(list(texts))

    def run(self, encodings: list) -> np.ndarray:
        """Logits for encodings padded to their longest member, in the checkpoint's label order."""
        width = max(len(e.ids) for e in encodings)
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        feeds = {}
        for name in self.facts.input_names:
            array = np.zeros((len(encodings), width), dtype=np.int64)
            for row, encoding in enumerate(encodings):
                values = getattr(encoding, fields[name])
                array[row, : len(values)] = values
            feeds[name] = array
        return self.session.run([self.facts.output_name], feeds)[0]

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
