"""`finsent merge SHARD_OUTPUT... -o OUTPUT`: the outputs of `finsent score --shard K/N` for
K = 0..N-1 back into one file in input order, as one unsharded `finsent score` would have written it.

Each shard output is already in input order and carries the input row numbers (`input_row`), so
this is a streaming k-way merge: memory holds one row per shard (and a chunk of the output).
Every input row must be in exactly one shard output; a missing or repeated row is refused, and
OUTPUT is written beside itself and renamed only once complete.
"""
from __future__ import annotations

import csv
import heapq
import io
import json
import os
from pathlib import Path
from typing import Iterator

from finsent import storage
from finsent.score import ENCODING, READERS, ScoreError, as_dicts, file_format, row_column

CHUNK = 1024


def numbered_rows(path: Path, column: str) -> Iterator[tuple[int, dict]]:
    """(input row, the row without that column) of one shard output, in its order."""
    fmt = file_format(path)
    if not storage.is_file(path):
        raise ScoreError(f"{path}: no such file")
    if fmt == "parquet":
        import pyarrow.parquet as pq
        with storage.open_file(path) as f:
            names = pq.ParquetFile(f).schema_arrow.names
        if not names:               # a shard that owned no row
            return
        if column not in names:
            raise ScoreError(f"{path} has no column {column!r}: not an output of finsent score --shard")
    elif fmt == "csv":
        with storage.open_file(path) as f:
            if not f.read(1):
                return
    previous = -1
    for rows, _ in READERS[fmt](path, column, 0, CHUNK):
        for row in as_dicts(rows):
            number = row.get(column)
            if number in (None, ""):
                raise ScoreError(f"{path} has a row without {column!r}: not an output of finsent score --shard")
            number = int(number)
            if number <= previous:
                raise ScoreError(f"{path} is not in input order (row {number} after {previous})")
            previous = number
            del row[column]
            yield number, row


def merge_files(inputs: list[Path], output: Path, prefix: str = "", overwrite: bool = False) -> int:
    inputs, output = [storage.location(p) for p in inputs], storage.location(output)
    if not inputs:
        raise ScoreError("no shard outputs given")
    fmt = file_format(output)
    for path in inputs:
        file_format(path)
        if path == output or not storage.is_url(path) and not storage.is_url(output) and output.exists() \
                and path.exists() and os.path.samefile(path, output):
            raise ScoreError(f"{output} is one of the shard outputs: write the merge to another file (-o)")
    if storage.exists(output) and not overwrite:
        raise ScoreError(f"{output} already exists; use --overwrite to replace it")
    column = row_column(prefix)
    streams = [((number, k, row) for number, row in numbered_rows(path, column)) for k, path in enumerate(inputs)]
    # Local: written beside OUTPUT and renamed; an object upload is only there once complete.
    tmp = output if storage.is_url(output) else storage.sibling(output, ".merging")
    writer, expected = Writer(tmp, fmt, parquet_schema(inputs, column) if fmt == "parquet" else None), 0
    try:
        for number, k, row in heapq.merge(*streams, key=lambda item: item[0]):
            if number != expected:
                what = f"row {expected} is in none of them" if number > expected else f"row {number} is in two of them"
                raise ScoreError(f"the shard outputs do not add up to the input: {what} "
                                 f"(pass the outputs of every shard K/N, K = 0..N-1, once)")
            writer.add(row)
            expected += 1
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if tmp != output:
        os.replace(tmp, output)
    return expected


def parquet_schema(inputs: list[Path], column: str):
    """The column types of the shards' own Parquet (the unsharded output's), less the row number."""
    import pyarrow.parquet as pq
    for path in inputs:
        if file_format(path) == "parquet" and storage.is_file(path):
            with storage.open_file(path) as f:
                schema = pq.ParquetFile(f).schema_arrow
            if column in schema.names:
                return schema.remove(schema.get_field_index(column)).remove_metadata()
    return None


class Writer:
    """CSV, JSONL or Parquet written a chunk of rows at a time."""

    def __init__(self, path: Path, fmt: str, schema=None):
        self.path, self.fmt, self.rows, self.header, self.parquet = path, fmt, [], None, None
        self.schema = schema
        self.binary = storage.open_file(path, "wb")
        self.file = None if fmt == "parquet" else io.TextIOWrapper(self.binary, newline="", **ENCODING)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) == CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            if self.parquet is None:
                table = pa.Table.from_pylist(self.rows, schema=self.schema)
                self.parquet = pq.ParquetWriter(self.binary, table.schema)
            else:
                table = pa.Table.from_pylist(self.rows, schema=self.parquet.schema)
            self.parquet.write_table(table)
        elif self.fmt == "csv":
            writer = csv.writer(self.file)
            if self.header is None:
                self.header = list(self.rows[0])
                writer.writerow(self.header)
            writer.writerows([["" if r.get(c) is None else r[c] for c in self.header] for r in self.rows])
        else:
            self.file.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows))
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.parquet is not None:
            self.parquet.close()
        elif self.fmt == "parquet":                 # no row at all
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.table({}), self.binary)
        (self.file or self.binary).close()

    def abort(self) -> None:
        """Nothing of a failed merge is left: a local file is removed, an upload is discarded."""
        if storage.is_url(self.path) and hasattr(self.binary, "discard"):
            self.binary.discard()
        else:
            if self.parquet is not None:
                self.parquet.close()
            (self.file or self.binary).close()
            if not storage.is_url(self.path):
                self.path.unlink(missing_ok=True)
