"""Input formats: CSV, JSONL and Parquet, each opened once (`open_table`).

Opening reads what the format states before its rows (the CSV header, the Parquet footer, the keys
of a JSONL's first objects), so a missing column is refused before anything is written; the rows
then stream from the same open file in chunks of (rows, texts): rows are dicts (CSV, JSONL) or an
Arrow RecordBatch (Parquet), texts the cells of the text column. Only Parquet knows its row count
up front (its footer); CSV and JSONL would need a pass of their own to count, so they go without.
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from finsent.bulk import storage
from finsent.bulk.errors import ScoreError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}  # bytes that are not UTF-8 survive to the server


def file_format(path: Path) -> str:
    try:
        return FORMATS[storage.suffix(path).lower()]
    except KeyError:
        raise ScoreError(f"{path}: unknown format {storage.suffix(path)!r}; use one of {', '.join(FORMATS)}") from None


@dataclass(frozen=True)
class Unusable:
    """A row or value that has no text to send: a JSONL line that is not a JSON object (the row is
    written as {}), or a value that is not a string."""

    reason: str


def text_value(value, column: str):
    """A cell as the text to send: a string (or the bytes of a Parquet binary column), None when
    missing; any other value is refused, in the gateway's words."""
    if value is None or isinstance(value, (str, bytes)):
        return value
    return Unusable(f'"{column}" must be a string, got {type(value).__name__}')


def as_dicts(rows) -> list[dict]:
    if not isinstance(rows, list):
        return rows.to_pylist()
    return [{} if isinstance(r, Unusable) else r for r in rows]


class Table:
    """An input file, open: `columns` and `row_count` are known before any row is read."""

    columns: list[str] | None  # None: a JSONL without a JSON object in its first lines
    row_count: int | None = None

    def __init__(self, path):
        self.path = path
        self.file = None

    def __enter__(self) -> "Table":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def require(self, column: str) -> None:
        """The same refusal for every format when a column is not there."""
        if column not in (self.columns or ()):
            raise ScoreError(f"{self.path} has no column {column!r}; columns: {self.columns}")

    def chunks(self, column: str, skip: int, size: int) -> Iterator[tuple[object, list]]:
        """(rows, texts of `column`) `size` rows at a time, after the first `skip` rows; once per table."""
        self.require(column)
        return self.read(column, skip, size)

    def read(self, column: str, skip: int, size: int) -> Iterator[tuple[object, list]]:
        raise NotImplementedError


class CsvTable(Table):
    def __init__(self, path):
        super().__init__(path)
        self.file = storage.open_file(path, "r", newline="", **ENCODING)
        self.reader = csv.DictReader(self.file)
        self.columns = self.reader.fieldnames  # reads the header line, and only it

    def read(self, column, skip, size):
        rows = []
        for i, row in enumerate(self.reader):
            if i < skip:
                continue
            rows.append(row)
            if len(rows) == size:
                yield rows, [r.get(column) for r in rows]
                rows = []
        if rows:
            yield rows, [r.get(column) for r in rows]


# JSONL has no header: its columns are the keys of the objects in its first lines, which are kept
# (not read again) for the rows.
JSONL_HEADER_LINES = 1000


class JsonlTable(Table):
    def __init__(self, path):
        super().__init__(path)
        self.file = storage.open_file(path, "r", **ENCODING)
        self.head, names, seen = [], {}, 0
        for line in self.file:
            self.head.append(line)
            try:
                row = json.loads(line) if line.strip() else None
            except ValueError:
                row = None  # a bad line is that row's failure, not the file's
            if isinstance(row, dict):
                names.update(dict.fromkeys(row))
                seen += 1
            if len(self.head) == JSONL_HEADER_LINES:
                break
        self.columns = list(names) if seen else None

    def require(self, column):
        if self.columns is not None:  # no objects seen: each row fails on its own
            super().require(column)

    def read(self, column, skip, size):
        def text(row):
            return row if isinstance(row, Unusable) else text_value(row.get(column), column)

        rows, seen = [], 0
        for n, line in enumerate(itertools.chain(self.head, self.file), 1):
            if not line.strip():
                continue  # blank lines are not rows (skipped identically on every run)
            seen += 1
            if seen <= skip:
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    row = Unusable(f"line {n} is not a JSON object")
            except ValueError as exc:
                row = Unusable(f"line {n} is not JSON ({exc})")
            rows.append(row)
            if len(rows) == size:
                yield rows, [text(r) for r in rows]
                rows = []
        if rows:
            yield rows, [text(r) for r in rows]


class ParquetTable(Table):
    def __init__(self, path):
        import pyarrow.parquet as pq

        super().__init__(path)
        self.file = storage.open_file(path) if storage.is_url(path) else None
        self.parquet = pq.ParquetFile(self.file or path)
        self.columns = self.parquet.schema_arrow.names
        self.row_count = self.parquet.metadata.num_rows

    def close(self):
        self.parquet.close()
        super().close()

    def read(self, column, skip, size):
        groups, start = [], 0  # whole row groups before `skip` are not even read
        for g in range(self.parquet.num_row_groups):
            rows = self.parquet.metadata.row_group(g).num_rows
            if groups or start + rows > skip:
                groups.append(g)
            else:
                start += rows
        drop = skip - start
        for batch in self.parquet.iter_batches(batch_size=size, row_groups=groups):
            if drop:
                cut = min(drop, batch.num_rows)
                batch, drop = batch.slice(cut), drop - cut
                if not batch.num_rows:
                    continue
            yield batch, [text_value(v, column) for v in batch.column(column).to_pylist()]


TABLES = {"csv": CsvTable, "jsonl": JsonlTable, "parquet": ParquetTable}


def open_table(path, fmt: str | None = None) -> Table:
    """`path` (a local path or a URL) open as its format's Table; a context manager that closes it."""
    return TABLES[fmt or file_format(path)](path)
