"""The model-facts file: the one place that says what a served model expects and returns.

Written by the export, read by the Triton tokenizer/classifier/postprocess models, the
repository assembler, the client and the tests. Label order comes from the checkpoint's
own id2label and is never assumed: ProsusAI/finbert is positive/negative/neutral, other
checkpoints differ. Everything that leaves the server uses CANONICAL_LABELS instead.

FAMILIES, the servable model families (one row each), lives here too: the lowest module
that export, model_repository, server, benchmarks and loadtest all import.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

FACTS_FILENAME = "model_facts.json"
CANONICAL_LABELS = ("negative", "neutral", "positive")
FACTS_VERSION = 1
# The ONNX inputs of each architecture finsent serves: DistilBERT has no token_type_ids.
ARCH_INPUTS = {"bert": ("input_ids", "attention_mask", "token_type_ids"), "distilbert": ("input_ids", "attention_mask")}
MIN_MAX_LENGTH = 8  # tokens; [CLS] and [SEP] leave room for a few words


class FactsError(ValueError):
    """A checkpoint or facts file that finsent cannot serve."""


@dataclass(frozen=True)
class Family:
    """A servable model family: its row in FAMILIES is all that adding one takes (docs/serving.md)."""

    source: str  # make serve's default checkpoint: a hub id or a checkpoint directory
    arch: str  # bert or distilbert: its random test checkpoints, and the inputs it may take (ARCH_INPUTS)

    def __post_init__(self):
        if self.arch not in ARCH_INPUTS:
            raise ValueError(f"arch {self.arch!r}: one of {tuple(ARCH_INPUTS)}")

    @property
    def inputs(self) -> tuple[str, ...]:
        return ARCH_INPUTS[self.arch]


# The servable model families, by served name (the ensemble `finbert`, its steps `finbert_tokenizer`, ...):
# the one list of them; model_repository/configs/ holds one config per role for them all.
FAMILIES = {
    "finbert": Family(source="ProsusAI/finbert", arch="bert"),
    "distilbert": Family(source="build/checkpoints/distilbert-fpb", arch="distilbert"),  # make finetune's output
}


def canonical_index(id2label: list[str]) -> list[int]:
    """For each canonical label, the checkpoint's output column that holds it."""
    names = [label.strip().lower() for label in id2label]
    if sorted(names) != sorted(CANONICAL_LABELS):
        raise FactsError(
            f"checkpoint labels {id2label} are not the three sentiment labels "
            f"{list(CANONICAL_LABELS)} (case-insensitive); set config.id2label in the checkpoint"
        )
    return [names.index(label) for label in CANONICAL_LABELS]


@dataclass(frozen=True)
class ModelFacts:
    name: str  # served family name: finbert, distilbert
    source: str  # hub id or checkpoint directory it was exported from
    model_type: str  # transformers model_type: bert, distilbert, ...
    id2label: list[str]  # the checkpoint's label order (output column i)
    max_length: int  # tokens, [CLS]/[SEP] included; longer text is truncated
    input_names: list[str]  # ONNX inputs, in order; DistilBERT has no token_type_ids
    output_name: str = "logits"
    variant: str = "fp32"
    # Served probabilities are softmax(logits / temperature) (export/calibrate.py); 1.0: not fitted.
    temperature: float = 1.0
    calibration: dict | None = None  # what the temperature was fitted on: file, sha256, n, by whom
    canonical_labels: list[str] = field(default_factory=lambda: list(CANONICAL_LABELS))
    version: int = FACTS_VERSION

    def __post_init__(self):
        canonical_index(self.id2label)  # refuse unservable labels early
        if not (isinstance(self.temperature, (int, float)) and 0 < self.temperature < float("inf")):
            raise FactsError(f"temperature {self.temperature!r} must be a positive number")
        if self.max_length < MIN_MAX_LENGTH:
            raise FactsError(f"max_length {self.max_length} is too small")
        if "input_ids" not in self.input_names or "attention_mask" not in self.input_names:
            raise FactsError(f"inputs {self.input_names} lack input_ids/attention_mask")

    @property
    def canonical_index(self) -> list[int]:
        return canonical_index(self.id2label)

    def to_dict(self) -> dict:
        # canonical_index is derived, but written out so the Triton models need no logic for it
        return {**asdict(self), "canonical_index": self.canonical_index}

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FACTS_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> "ModelFacts":
        path = Path(path)
        if path.is_dir():
            path = path / FACTS_FILENAME
        data = json.loads(path.read_text())
        if data.get("version") != FACTS_VERSION:
            raise FactsError(f"{path}: facts version {data.get('version')} != {FACTS_VERSION}; re-export")
        data.pop("canonical_index", None)
        return cls(**data)
