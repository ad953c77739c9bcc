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

from finsent.score import ENCODING, READERS, ScoreError, as_dicts, file_format, row_column

CHUNK = 1024


def numbered_rows(path: Path, column: str) -> Iterator[tuple[int, dict]]:
    """(input row, the row without that column) of one shard output, in its order."""
    fmt = file_format(path)
    if not path.is_file():
        raise ScoreError(f"{path}: no such file")
    if fmt == "parquet":
        import pyarrow.parquet as pq
        names = pq.ParquetFile(path).schema_arrow.names
        if not names:               # a shard that owned no row
            return
        if column not in names:
            raise ScoreError(f"{path} has no column {column!r}: not an output of finsent score --shard")
    elif fmt == "csv" and path.stat().st_size == 0:
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
    inputs, output = [Path(p) for p in inputs], Path(output)
    if not inputs:
        raise ScoreError("no shard outputs given")
    fmt = file_format(output)
    for path in inputs:
        file_format(path)
        if output.exists() and path.exists() and os.path.samefile(path, output):
            raise ScoreError(f"{output} is one of the shard outputs: write the merge to another file (-o)")
    if output.exists() and not overwrite:
        raise ScoreError(f"{output} already exists; use --overwrite to replace it")
    column = row_column(prefix)
    streams = [((number, k, row) for number, row in numbered_rows(path, column)) for k, path in enumerate(inputs)]
    tmp = output.with_name(output.name + ".merging")
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
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, output)
    return expected


def parquet_schema(inputs: list[Path], column: str):
    """The column types of the shards' own Parquet (the unsharded output's), less the row number."""
    import pyarrow.parquet as pq
    for path in inputs:
        if file_format(path) == "parquet" and path.is_file():
            schema = pq.ParquetFile(path).schema_arrow
            if column in schema.names:
                return schema.remove(schema.get_field_index(column)).remove_metadata()
    return None


class Writer:
    """CSV, JSONL or Parquet written a chunk of rows at a time."""

    def __init__(self, path: Path, fmt: str, schema=None):
        self.path, self.fmt, self.rows, self.header, self.parquet = path, fmt, [], None, None
        self.schema = schema
        self.file = None if fmt == "parquet" else open(path, "w", newline="", **ENCODING)

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
                self.parquet = pq.ParquetWriter(self.path, table.schema)
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
        try:
            self.flush()
        finally:
            if self.file is not None and not self.file.closed:
                self.file.close()
            if self.parquet is not None:
                self.parquet.close()
                self.parquet = None
            elif self.fmt == "parquet" and not self.path.exists():
                import pyarrow as pa
                import pyarrow.parquet as pq
                pq.write_table(pa.table({}), self.path)
