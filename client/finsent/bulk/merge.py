"""`finsent merge SHARD_OUTPUT... -o OUTPUT`: the outputs of `finsent score --shard K/N` for
K = 0..N-1 back into one file in input order, as one unsharded `finsent score` would have written it.

Each shard output is already in input order and carries the input row numbers (`input_row`), so
this is a streaming k-way merge: memory holds one row per shard (and a chunk of the output).
Every input row must be in exactly one shard output; a missing or repeated row is refused, and so
is a missing shard, from the records `finsent score` keeps beside each output (OUTPUT.finsent.json:
shard K/N, input rows read). OUTPUT is written beside itself and renamed only once complete.
A quoted pattern (gs://bucket/scored/part-*.parquet) is expanded here: no shell expands gs://.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import os
from pathlib import Path
from typing import Iterator

from finsent.bulk import storage
from finsent.bulk.columns import row_column
from finsent.bulk.errors import ScoreError
from finsent.bulk.progress import Progress
from finsent.bulk.shards import Shard
from finsent.bulk.tables import ENCODING, as_dicts, file_format, open_table

CHUNK = 1024


def numbered_rows(path: Path, column: str) -> Iterator[tuple[int, dict]]:
    """(input row, the row without that column) of one shard output, in its order."""
    fmt = file_format(path)
    if not storage.is_file(path):
        raise ScoreError(f"{path}: no such file")
    with open_table(path, fmt) as table:
        if fmt == "csv" and table.columns is None or fmt == "parquet" and not table.columns:
            return  # a shard that owned no row: an empty file
        if fmt == "parquet" and column not in table.columns:
            raise ScoreError(f"{path} has no column {column!r}: not an output of finsent score --shard")
        # CSV: a header without the column is refused by chunks(); JSONL: row by row, below
        chunks = table.read(column, 0, CHUNK) if fmt == "jsonl" else table.chunks(column, 0, CHUNK)
        previous = -1
        for rows, _ in chunks:
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


def expand(pattern: str) -> list:
    if not any(c in str(pattern) for c in "*?["):
        return [storage.location(pattern)]
    if storage.is_url(str(pattern)):
        fs = storage.filesystem(str(pattern))
        found = [fs.unstrip_protocol(p) for p in fs.glob(str(pattern))]
    else:
        import glob

        found = [Path(p) for p in glob.glob(str(pattern))]
    if not found:
        raise ScoreError(f"{pattern} matches no file")
    return sorted(found, key=str)


def check_shards(inputs: list) -> int | None:
    """The input's row count when every output has its record: then all N shards of one run must be
    there, once each (a missing shard whose rows all come last would leave no gap to see)."""
    records = []
    for path in inputs:
        record = storage.sibling(path, ".finsent.json")
        if not storage.exists(record):
            return None  # copied without its record: the row numbers must do
        records.append(Progress.load(record))
    if any(r.shard is None for r in records):
        raise ScoreError(f"{inputs[[r.shard for r in records].index(None)]} is not the output of finsent score --shard")
    if len({(r.input, r.input_size, r.input_mtime_ns, r.input_version, r.column, r.model) for r in records}) > 1:
        raise ScoreError("the shard outputs are of different inputs, columns or models")
    shards = [Shard.parse(r.shard) for r in records]
    count = shards[0].count
    have = sorted({(s.count, s.index) for s in shards})
    missing = [k for k in range(count) if (count, k) not in have]
    if missing or len(have) != len(shards) or any(s.count != count for s in shards):
        what = f"shard {missing[0]}/{count} is missing" if missing else "a shard is given twice or the N differ"
        raise ScoreError(f"{what} (the outputs are shards {', '.join(f'{k}/{n}' for n, k in have)})")
    return records[0].skip


def merge_files(inputs: list[Path], output: Path, prefix: str = "", overwrite: bool = False) -> tuple[int, int]:
    """(rows, shard outputs) merged into OUTPUT."""
    inputs, output = [p for pattern in inputs for p in expand(str(pattern))], storage.location(output)
    if not inputs:
        raise ScoreError("no shard outputs given")
    fmt = file_format(output)
    for path in inputs:
        file_format(path)
        if (
            path == output
            or not storage.is_url(path)
            and not storage.is_url(output)
            and output.exists()
            and path.exists()
            and os.path.samefile(path, output)
        ):
            raise ScoreError(f"{output} is one of the shard outputs: write the merge to another file (-o)")
    if storage.exists(output) and not overwrite:
        raise ScoreError(f"{output} already exists; use --overwrite to replace it")
    total = check_shards(inputs)
    column = row_column(prefix)
    streams = [((number, k, row) for number, row in numbered_rows(path, column)) for k, path in enumerate(inputs)]
    # Local: written beside OUTPUT and renamed; an object upload is only there once complete.
    tmp = output if storage.is_url(output) else storage.sibling(output, ".merging")
    writer, expected = Writer(tmp, fmt, parquet_schema(inputs, column) if fmt == "parquet" else None), 0
    try:
        for number, k, row in heapq.merge(*streams, key=lambda item: item[0]):
            if number != expected:
                what = f"row {expected} is in none of them" if number > expected else f"row {number} is in two of them"
                raise ScoreError(
                    f"the shard outputs do not add up to the input: {what} "
                    f"(pass the outputs of every shard K/N, K = 0..N-1, once)"
                )
            writer.add(row)
            expected += 1
        if total is not None and expected != total:
            raise ScoreError(f"the shard outputs hold {expected} rows, their input {total}")
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if tmp != output:
        os.replace(tmp, output)
    return expected, len(inputs)


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
        elif self.fmt == "parquet":  # no row at all
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
