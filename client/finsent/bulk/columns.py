"""The columns `finsent score` adds to each row, and a result's values for them.

The probability columns (p_negative, p_neutral, p_positive) follow the label order the server
states (the ensemble's `labels` parameter, read into ModelInfo.labels): it is not restated here.
"""

from __future__ import annotations

from dataclasses import dataclass

from finsent.errors import describe
from finsent.results import DocumentPrediction, Prediction, Result

DOCUMENT_COLUMNS = ("sentences", "share_negative", "share_positive")


def row_column(prefix: str) -> str:
    """The input row number a shard's output carries, which `finsent merge` orders the shards by."""
    return prefix + "input_row"


@dataclass(frozen=True)
class Columns:
    """What one run adds: label, score, p_<label>..., net, [the document columns], error, [input_row]."""

    labels: tuple[str, ...]  # the server's label order (client.info.labels)
    prefix: str = ""
    documents: bool = False  # --documents: one row per document
    shard: bool = False  # --shard: each row also carries its input row number

    @property
    def probabilities(self) -> list[str]:
        return [f"p_{label}" for label in self.labels]

    @property
    def names(self) -> list[str]:
        added = ("label", "score", *self.probabilities, "net", *(DOCUMENT_COLUMNS if self.documents else ()), "error")
        return [self.prefix + c for c in added] + ([row_column(self.prefix)] if self.shard else [])

    def values(self, result: Result, number: int | None = None) -> list:
        """A result's values for `names` (number: its input row, for a shard)."""
        shares = ()
        if isinstance(result, DocumentPrediction):
            shares = (result.sentence_count, result.negative_share, result.positive_share)
        if isinstance(result, (Prediction, DocumentPrediction)):
            scores = [result.label, result.score, *(result.probabilities.get(l) for l in self.labels), result.net]
            values = [*scores, *shares, None]
        else:  # a failure: no scores, the reason
            extra = len(DOCUMENT_COLUMNS) if self.documents else 0
            values = [None] * (3 + len(self.labels) + extra) + [describe(result.reason)]
        return values + ([number] if self.shard else [])

    def prediction(self, row: dict) -> Prediction | None:
        """The prediction a written row holds (None: the row failed): what a resumed run reuses."""
        label, score, *probabilities, error = (
            row.get(self.prefix + c) for c in ("label", "score", *self.probabilities, "error")
        )
        if label in (None, "") or error not in (None, ""):
            return None
        return Prediction(label, float(score), dict(zip(self.labels, map(float, probabilities))))

    @property
    def sentence_names(self) -> list[str]:
        """The --sentences file's columns: a document's input row, then each sentence's place and scores."""
        return ["row", "sentence", "start", "end", "text", "label", *self.probabilities, "net", "windows"]

    def sentence_rows(self, row: int, result: Result) -> list[dict]:
        """A document's sentences as rows of the --sentences file (none for a refused document)."""
        if not isinstance(result, DocumentPrediction):
            return []
        return [
            dict(
                zip(
                    self.sentence_names,
                    (
                        row,
                        k,
                        s.start,
                        s.end,
                        s.text,
                        s.label,
                        *(s.probabilities.get(l) for l in self.labels),
                        s.net,
                        s.windows,
                    ),
                )
            )
            for k, s in enumerate(result.sentences)
        ]
