"""Writers of a partial output: each appends one scored chunk, durable when append returns, and
returns what the progress record keeps (bytes for a file, parts for a folder or a bucket prefix).

Made with `written` None they start empty; with the recorded `written` they resume, dropping
whatever a kill left after it. finish() turns the partial into OUTPUT, which only exists complete.
    TextWriter     CSV or JSONL appended to one local file
    ParquetWriter  one Parquet file per chunk in a folder, joined as the row groups of OUTPUT
    PartsWriter    object storage, which cannot append: one object per chunk, streamed into OUTPUT
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from finsent.bulk import storage
from finsent.bulk.columns import Columns
from finsent.bulk.errors import ScoreError
from finsent.bulk.tables import ENCODING, as_dicts, file_format, open_table
from finsent.results import Result

READ_BACK_ROWS = 4096  # rows at a time when a resumed run reads back what it wrote


class TextEncoder:
    """A chunk's rows and results as CSV (the header first, once per output) or JSONL bytes."""

    def __init__(self, fmt: str, columns: Columns, header: list[str] | None = None):
        self.fmt, self.columns, self.header = fmt, columns, header

    def encode(self, rows, results: list[Result], numbers: list[int] | None = None) -> bytes:
        rows, names = as_dicts(rows), self.columns.names
        values = [self.columns.values(r, n) for r, n in zip(results, numbers or [None] * len(results))]
        buf = io.StringIO(newline="")
        if self.fmt == "csv":
            if self.header is None:
                self.header = [c for c in rows[0] if c not in names] + names
                csv.writer(buf).writerow(self.header)
            writer = csv.writer(buf)
            for row, value in zip(rows, values):
                merged = {**row, **dict(zip(names, value))}
                writer.writerow(["" if merged.get(c) is None else merged[c] for c in self.header])
        else:
            for row, value in zip(rows, values):
                # as the input had it, not \u escapes
                buf.write(json.dumps({**row, **dict(zip(names, value))}, ensure_ascii=False) + "\n")
        return buf.getvalue().encode(**ENCODING)


def append_durably(path: Path, data: bytes) -> int:
    """`data` appended to a local file and on disk; the file's size after it."""
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


class TextWriter:
    """CSV or JSONL appended to one local file."""

    def __init__(self, path: Path, fmt: str, columns: Columns, written: int | None):
        self.path, self.fmt = path, fmt
        header = None
        if written is None:
            path.write_bytes(b"")
        else:
            truncate(path, written)
            if fmt == "csv" and written:
                with open(path, newline="", **ENCODING) as f:
                    header = next(csv.reader(f), None)
        self.encoder = TextEncoder(fmt, columns, header)

    def append(self, rows, results: list[Result], numbers: list[int] | None = None) -> int:
        return append_durably(self.path, self.encoder.encode(rows, results, numbers))

    def written_rows(self, column: str) -> Iterator[dict]:
        """The rows this partial file holds (read, not chunks: no row need have the text column)."""
        with open_table(self.path, self.fmt) as table:
            for rows, _ in table.read(column, 0, READ_BACK_ROWS):
                yield from as_dicts(rows)

    def finish(self, output: Path, empty_ok: bool = False) -> None:
        os.replace(self.path, output)


class SentenceWriter:
    """The --sentences file (CSV or JSONL), appended per chunk next to the output, resumed with it."""

    def __init__(self, path: Path, columns: Columns, written: int | None):
        self.path, self.fmt = path, file_format(Path(str(path).removesuffix(".partial")))
        self.names = columns.sentence_names
        if self.fmt == "parquet":
            raise ScoreError(f"{path.name}: the sentence file is CSV or JSONL")
        if written is None:
            path.write_bytes(b"")
        else:
            truncate(path, written)

    def append(self, rows: list[dict]) -> int:
        buf = io.StringIO(newline="")
        if self.fmt == "csv":
            writer = csv.DictWriter(buf, self.names)
            if self.path.stat().st_size == 0:
                writer.writeheader()
            writer.writerows(rows)
        else:
            buf.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return append_durably(self.path, buf.getvalue().encode(**ENCODING))


def chunk_table(columns: Columns, rows, results: list[Result], numbers: list[int] | None = None):
    """A chunk's rows and results as one Arrow table (a Parquet part)."""
    import pyarrow as pa

    table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else pa.Table.from_pylist(rows)
    values = list(zip(*(columns.values(r, n) for r, n in zip(results, numbers or [None] * len(results)))))
    types = [
        pa.string(),  # label
        *[pa.float64()] * (2 + len(columns.labels)),  # score, the probabilities, net
        *([pa.int64(), pa.float64(), pa.float64()] if columns.documents else []),
        pa.string(),  # error
        *([pa.int64()] if columns.shard else []),  # input_row
    ]
    for name, column, kind in zip(columns.names, values, types):
        table = table.append_column(pa.field(name, kind), pa.array(column, type=kind))
    return table


def pa_empty():
    import pyarrow as pa

    return pa.table({})


class ParquetWriter:
    """One Parquet file per chunk in a folder; finish() joins them as the row groups of OUTPUT."""

    def __init__(self, path: Path, fmt: str, columns: Columns, written: int | None):
        self.path, self.columns = path, columns
        path.mkdir(parents=True, exist_ok=True)
        for stray in path.glob("*.tmp"):
            stray.unlink()
        if written is not None:
            for extra in self.parts()[written:]:  # parts written after the last progress record
                extra.unlink()

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

    def append(self, rows, results: list[Result], numbers: list[int] | None = None) -> int:
        import pyarrow.parquet as pq

        table = chunk_table(self.columns, rows, results, numbers)
        part = self.path / f"part-{len(self.parts()):06d}.parquet"
        tmp = part.with_suffix(".tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, part)  # a part is there complete or not at all
        return len(self.parts())

    def written_rows(self, column: str) -> Iterator[dict]:
        for part in self.parts():
            with open_table(part, "parquet") as table:
                for rows, _ in table.read(column, 0, READ_BACK_ROWS):
                    yield from as_dicts(rows)

    def finish(self, output: Path, empty_ok: bool = False) -> None:
        import pyarrow.parquet as pq

        tmp = output.with_name(output.name + ".tmp")
        writer = None
        try:
            for part in self.parts():
                table = pq.read_table(part)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            if not empty_ok:
                raise ScoreError("no rows were scored")
            pq.write_table(pa_empty(), tmp)  # a shard may own no row: its output is there, empty
        os.replace(tmp, output)
        shutil.rmtree(self.path)


class PartsWriter:
    """An OUTPUT in object storage, which cannot append or truncate: each chunk is one object
    OUTPUT.partial/part-N (an upload is there whole or not at all), and finish() streams the parts,
    in order, into OUTPUT, which appears only once its upload completes."""

    def __init__(self, path: str, fmt: str, columns: Columns, written: int | None):
        self.path, self.fmt, self.columns = path, fmt, columns
        self.fs = storage.filesystem(path)
        self.encoder = None if fmt == "parquet" else TextEncoder(fmt, columns)
        if written is not None:
            for extra in self.parts()[written:]:  # parts written after the last progress record
                self.fs.rm(extra)
        if written and fmt == "csv":  # resuming: the header is in part 0
            with self.fs.open(self.parts()[0], "r", newline="", **ENCODING) as f:
                self.encoder.header = next(csv.reader(f), None)

    def parts(self) -> list[str]:
        self.fs.invalidate_cache(self.path)
        found = self.fs.glob(f"{self.path}/part-*") if self.fs.exists(self.path) else []
        return sorted(self.fs.unstrip_protocol(p) for p in found)

    def append(self, rows, results: list[Result], numbers: list[int] | None = None) -> int:
        count = len(self.parts())
        if self.encoder is not None:
            data = self.encoder.encode(rows, results, numbers)
        else:
            import pyarrow.parquet as pq

            buf = io.BytesIO()
            pq.write_table(chunk_table(self.columns, rows, results, numbers), buf)
            data = buf.getvalue()
        self.fs.pipe(f"{self.path}/part-{count:06d}.{self.fmt}", data)
        return count + 1

    def written_rows(self, column: str) -> Iterator[dict]:
        for n, part in enumerate(self.parts()):
            if self.fmt == "csv":  # the header is in part 0 only
                with storage.open_file(part, "r", newline="", **ENCODING) as f:
                    yield from list(csv.DictReader(f, fieldnames=self.encoder.header))[n == 0 :]
            else:
                with open_table(part, self.fmt) as table:
                    for rows, _ in table.read(column, 0, READ_BACK_ROWS):
                        yield from as_dicts(rows)

    def finish(self, output: str, empty_ok: bool = False) -> None:
        parts = self.parts()
        if not parts and self.fmt == "parquet" and not empty_ok:
            raise ScoreError("no rows were scored")
        with self.fs.open(output, "wb") as out:
            if self.encoder is not None:
                for part in parts:
                    out.write(self.fs.cat(part))
            else:
                import pyarrow.parquet as pq

                writer = None
                for part in parts:
                    with self.fs.open(part, "rb") as f:
                        table = pq.read_table(f)
                    writer = writer or pq.ParquetWriter(out, table.schema)
                    writer.write_table(table.cast(writer.schema))
                if writer is not None:
                    writer.close()
                else:
                    pq.write_table(pa_empty(), out)  # a shard may own no row
        storage.remove(self.path)


def open_writer(partial, output, fmt: str, columns: Columns, written: int | None):
    """The writer for OUTPUT's place and format, building `partial`."""
    Writer = PartsWriter if storage.is_url(output) else ParquetWriter if fmt == "parquet" else TextWriter
    return Writer(partial, fmt, columns, written)
