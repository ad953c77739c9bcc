"""The resume record (`OUTPUT.partial.json`, kept as `OUTPUT.finsent.json` once OUTPUT is complete),
and the summary a run prints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from finsent.bulk import storage
from finsent.bulk.errors import ScoreError


@dataclass
class Progress:
    """The resume record, rewritten atomically after each durable chunk."""

    input: str
    input_size: int
    input_mtime_ns: int
    column: str
    model: str
    documents: bool = False  # --documents: one row per document
    rows: int = 0
    written: int | None = None  # bytes (CSV/JSONL) or part files (Parquet) that hold `rows`
    failures: int = 0
    labels: dict = field(default_factory=dict)
    sentences_written: int | None = None  # bytes of the --sentences file that hold `rows`' sentences
    shard: str | None = None  # K/N, or None: every row
    read: int | None = None  # input rows consumed (more than `rows` in a shard); None: `rows`
    duplicates: int = 0  # rows that reused an earlier identical text's result
    input_version: str | None = None  # an object's generation (gs://); local files: size and mtime

    @property
    def skip(self) -> int:
        return self.rows if self.read is None else self.read

    def same_job(self, other: "Progress") -> bool:
        keys = ("input", "input_size", "input_mtime_ns", "input_version", "column", "model", "documents", "shard")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def check(self, current: "Progress", what: str) -> "Progress":
        """self, when it records the job `current` describes; else a ScoreError saying `what` happened."""
        if not self.same_job(current):
            shard = f", shard {self.shard}" if self.shard else ""
            keys = "input, column, model or shard" if self.shard or current.shard else "input, column or model"
            raise ScoreError(
                f"{what} from a different {keys} ({self.input}, column "
                f"{self.column!r}, model {self.model!r}{shard}); use --overwrite to start over"
            )
        return self

    @classmethod
    def load(cls, path: Path) -> "Progress":
        return cls(**json.loads(storage.read_text(path)))

    def save(self, path: Path) -> None:
        storage.write_text(path, json.dumps(self.__dict__))


@dataclass
class Summary:
    output: Path
    rows: int
    scored_now: int
    resumed_from: int
    failures: int
    labels: dict
    seconds: float
    already_complete: bool = False
    shard: str | None = None
    read: int = 0
    duplicates: int = 0

    @property
    def texts_per_s(self) -> float:
        return self.scored_now / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        if self.already_complete:
            return (
                f"{self.output} is already complete ({self.rows} rows, {self.failures} failures); "
                f"nothing to do (--overwrite scores it again)"
            )
        total = sum(self.labels.values()) or 1
        dist = ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in sorted(self.labels.items()))
        resumed = f" (resumed after {self.resumed_from})" if self.resumed_from else ""
        shard = f" (shard {self.shard}: {self.rows} of {self.read} input rows)" if self.shard else ""
        dups = f"{self.duplicates} of {self.rows} rows ({100 * self.duplicates / (self.rows or 1):.1f}%)"
        return (
            f"wrote {self.output}: {self.rows} rows{resumed}{shard}, {self.failures} failures, "
            f"{self.texts_per_s:.1f} texts/s this run\nlabels: {dist or 'none'}\n"
            f"duplicates: {dups} had the text of an earlier row and reused its result"
        )
