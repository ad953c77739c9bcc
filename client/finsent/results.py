"""What the clients return: predictions of texts and documents, refused texts, and the server's state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

from finsent.errors import describe


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    probabilities: Mapping[str, float]  # negative, neutral, positive (the server's `labels` order)
    logits: Mapping[str, float] | None = None  # raw scores, before the model's temperature: asked for only

    @property
    def net(self) -> float:
        """P(positive) - P(negative): FinBERT's authors' sentiment score, from -1 to 1."""
        return self.probabilities["positive"] - self.probabilities["negative"]

    def as_dict(self) -> dict:
        out = {"label": self.label, "score": self.score, "probabilities": dict(self.probabilities), "net": self.net}
        return out if self.logits is None else {**out, "logits": dict(self.logits)}


@dataclass(frozen=True)
class Sentence:
    """One sentence of a document: its characters text[start:end], and its scores."""

    start: int
    end: int
    text: str
    label: str
    probabilities: Mapping[str, float]
    net: float
    windows: int  # 1, or the overlapping windows a sentence past the max length was scored in

    def as_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "net": self.net,
            "windows": self.windows,
        }


@dataclass(frozen=True)
class DocumentPrediction:
    """A document's verdict: probabilities are the mean over its sentences; the shares are of
    sentences labelled negative / positive (docs/documents.md)."""

    label: str
    score: float
    probabilities: Mapping[str, float]
    net: float
    sentence_count: int
    negative_share: float
    positive_share: float
    sentences: tuple[Sentence, ...]

    def as_dict(self, sentences: bool = True) -> dict:
        out = {
            "label": self.label,
            "score": self.score,
            "probabilities": dict(self.probabilities),
            "net": self.net,
            "sentence_count": self.sentence_count,
            "negative_share": self.negative_share,
            "positive_share": self.positive_share,
        }
        return {**out, "sentences": [s.as_dict() for s in self.sentences]} if sentences else out


@dataclass(frozen=True)
class Failure:
    """A text the server refused (empty, invalid UTF-8); returned with on_error="return"."""

    index: int
    reason: str  # e.g. "is empty or whitespace only"

    @property
    def message(self) -> str:
        return describe(self.reason, self.index)


Result = Union[Prediction, Failure]
DocumentResult = Union[DocumentPrediction, Failure]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    max_batch_size: int
    labels: tuple[str, ...]
    background_batch_size: int = 0  # rows a background request holds at most (0: max_batch_size)
    background_model: str = ""  # where background requests go (finsent.traffic); "": this model


@dataclass(frozen=True)
class Health:
    live: bool
    ready: bool
    model: str
    model_ready: bool

    @property
    def ok(self) -> bool:
        return self.live and self.ready and self.model_ready


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: str
    state: str
    reason: str = ""
