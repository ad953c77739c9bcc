"""Requests and answers as data, the same for both clients and both protocols (no I/O here): texts
to the TEXT tensor, a model's outputs and config to results, and a request's texts with the rows
the server refused (Chunk)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from finsent.errors import FinsentError, ModelError, TextError
from finsent.results import DocumentPrediction, Failure, ModelInfo, ModelStatus, Prediction, Result, Sentence
from finsent.traffic import BACKGROUND_MODEL_PARAMETER, BACKGROUND_ROWS_PARAMETER
from finsent.wire import BREAKDOWN_VERSION, DOCUMENT_OUTPUTS, INPUT, LOGITS


def encode(texts: Sequence[str | bytes]) -> np.ndarray:
    """[B, 1] BYTES. str is encoded with surrogateescape so bytes that were not UTF-8 in a
    file reach the server unchanged (and it names them) instead of failing here."""
    rows = []
    for i, t in enumerate(texts):
        if isinstance(t, str):
            try:
                rows.append([t.encode("utf-8", "surrogateescape")])
            except UnicodeEncodeError as exc:  # a lone surrogate that stands for no byte
                raise TextError(i, f"is not encodable as UTF-8 ({exc.reason} at {exc.start})") from None
        elif isinstance(t, (bytes, bytearray)):
            rows.append([bytes(t)])
        else:
            raise TypeError(f"texts must be str or bytes, got {type(t).__name__}")
    return np.array(rows, dtype=np.object_).reshape(len(rows), 1)


def text_input(types, texts: Sequence[str | bytes]):
    """The INPUT tensor of `texts`; `types`: the tritonclient.grpc or tritonclient.http module."""
    batch = encode(texts)
    tensor = types.InferInput(INPUT, list(batch.shape), "BYTES")
    tensor.set_data_from_numpy(batch)
    return tensor


def decode(result, labels: tuple[str, ...], logits: bool = False) -> list[Prediction]:
    names = [x.decode() for x in result.as_numpy("LABEL").reshape(-1)]
    scores = result.as_numpy("SCORE").reshape(-1)
    probs = result.as_numpy("PROBABILITIES")
    raw = result.as_numpy(LOGITS) if logits else [None] * len(names)
    return [
        Prediction(
            n, float(s), dict(zip(labels, map(float, p))), None if z is None else dict(zip(labels, map(float, z)))
        )
        for n, s, p, z in zip(names, scores, probs, raw)
    ]


def decode_documents(result, labels: tuple[str, ...], texts: Sequence[str | bytes]) -> list[DocumentPrediction]:
    """The document model's outputs; sentence texts are cut from the documents sent (offsets are
    characters of the UTF-8-decoded document)."""
    out = []
    columns = {name: result.as_numpy(name).reshape(len(texts), -1) for name in DOCUMENT_OUTPUTS}
    for i, text in enumerate(texts):
        breakdown = json.loads(columns["BREAKDOWN"][i][0])
        if breakdown.get("version") != BREAKDOWN_VERSION:
            raise ModelError(
                f"the document model's BREAKDOWN is version {breakdown.get('version')}; this client "
                f"reads version {BREAKDOWN_VERSION}: upgrade finsent-client"
            )
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        sentences = tuple(
            Sentence(
                s["start"],
                s["end"],
                text[s["start"] : s["end"]],
                s["label"],
                dict(zip(labels, s["probabilities"])),
                s["net"],
                s["windows"],
            )
            for s in breakdown["sentences"]
        )
        out.append(
            DocumentPrediction(
                columns["LABEL"][i][0].decode(),
                float(columns["SCORE"][i][0]),
                dict(zip(labels, map(float, columns["PROBABILITIES"][i]))),
                float(columns["NET"][i][0]),
                int(columns["SENTENCES"][i][0]),
                float(columns["NEGATIVE_SHARE"][i][0]),
                float(columns["POSITIVE_SHARE"][i][0]),
                sentences,
            )
        )
    return out


def model_info(name: str, config: dict) -> ModelInfo:
    """ModelInfo from get_model_config(as_json=True) of either protocol."""
    config = config.get("config", config)  # gRPC wraps it in {"config": ...}
    parameters = config.get("parameters", {})
    labels = parameters.get("labels", {}).get("string_value", "")
    background = int(parameters.get(BACKGROUND_ROWS_PARAMETER, {}).get("string_value") or 0)
    max_batch = int(config.get("max_batch_size", 0))
    if not labels or max_batch < 1:
        raise ModelError(
            f"model {name!r} is not a finsent ensemble (needs a `labels` parameter and "
            f"max_batch_size > 0, has labels={labels!r}, max_batch_size={max_batch})"
        )
    elsewhere = parameters.get(BACKGROUND_MODEL_PARAMETER, {}).get("string_value", "")
    return ModelInfo(name, max_batch, tuple(labels.split(",")), min(background, max_batch), elsewhere)


def model_statuses(index) -> list[ModelStatus]:
    """get_model_repository_index() of either protocol (gRPC JSON: {"models": [...]}; HTTP: [...])."""
    rows = index.get("models", []) if isinstance(index, dict) else index
    return [ModelStatus(m["name"], str(m.get("version", "")), m.get("state", ""), m.get("reason", "")) for m in rows]


@dataclass
class Chunk:
    """One request's worth of texts; rows the server refuses are taken out one by one (the
    server names the first bad row of a request) and the rest is sent again."""

    texts: Sequence[str | bytes]
    offset: int
    raise_errors: bool = True
    pending: list[int] = field(default_factory=list)
    out: list = field(default_factory=list)

    def __post_init__(self):
        self.pending = list(range(len(self.texts)))
        self.out = [None] * len(self.texts)

    def batch(self) -> list:
        return [self.texts[i] for i in self.pending]

    def refused(self, exc: TextError) -> None:
        if exc.index >= len(self.pending):  # the server named a row we did not send
            raise FinsentError(f"server named row {exc.index} of a {len(self.pending)}-row request: {exc.reason}")
        local = self.pending.pop(exc.index)
        error = TextError(self.offset + local, exc.reason)
        if self.raise_errors:
            raise error from None
        self.out[local] = Failure(error.index, error.reason)

    def served(self, predictions: list[Prediction]) -> list[Result]:
        for i, p in zip(self.pending, predictions):
            self.out[i] = p
        self.pending = []
        return self.out


def chunks(texts: Sequence, size: int, raise_errors: bool) -> list[Chunk]:
    return [Chunk(texts[i : i + size], i, raise_errors) for i in range(0, len(texts), size)]


def check_on_error(on_error: str) -> bool:
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error {on_error!r}: 'raise' or 'return'")
    return on_error == "raise"
