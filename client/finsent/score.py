"""Bulk scoring of CSV, JSONL and Parquet files: `finsent score INPUT -o OUTPUT --column text`.

Streaming: the input is read `chunk_size` rows at a time and each chunk is appended to the
output once scored, so memory does not grow with the file.

Resumable: the output is built as `OUTPUT.partial` (a file; for Parquet a folder of one
file per chunk, each a row group of the final file) with a progress record
`OUTPUT.partial.json` (rows done, bytes of the partial file that hold them, counts), which
is replaced atomically after each chunk's data is flushed to disk. A re-run truncates the
partial file to the recorded bytes (dropping a chunk torn by a kill), skips the recorded rows
of the input, and goes on. When the input is exhausted the partial becomes OUTPUT (rename),
so OUTPUT only ever exists complete, and the record is kept as `OUTPUT.finsent.json`; a re-run
of the same job then does nothing, and any other job (or an OUTPUT without that record) is refused.

Bad rows do not stop a run: a text the server refuses (empty, invalid UTF-8) or a row with
no text (missing, not a string, a JSONL line that is not a JSON object) gets empty
label/score/probabilities and the reason in the `error` column, and is counted as a failure.
Errors of the server itself (down past the retries) stop the run; re-running resumes it.

Documents (`--documents`): each row's text is a document, scored by the model's document model:
one output row per document (its label, probabilities, net score, sentence count and the shares
of negative and positive sentences), and optionally one row per sentence in a second file
(`--sentences`, CSV or JSONL: the document's row number, the sentence's number, offsets, text,
scores), built and resumed alongside the output.

Bulk (issue 19): `--shard K/N` scores only the rows of shard K, chosen by a hash of the text, so
N workers together score each row once and every copy of a text lands in the same shard; each
shard's output carries the `input_row` column that `finsent merge` orders the shards back by.
Each distinct text is scored once per run (exact-text de-duplication), every copy gets its result.
INPUT and OUTPUT may be gs:// URLs (storage.py): object storage cannot append, so a remote output
is built as one object per chunk instead (PartsWriter), with the same progress record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from finsent import storage
from finsent.core import DocumentPrediction, Failure, Prediction, Result, describe

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
LABELS = ("negative", "neutral", "positive")
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}  # bytes that are not UTF-8 survive to the server


class ScoreError(RuntimeError):
    """A problem with the files or arguments, reported without a traceback."""


def file_format(path: Path) -> str:
    try:
        return FORMATS[storage.suffix(path).lower()]
    except KeyError:
        raise ScoreError(f"{path}: unknown format {storage.suffix(path)!r}; use one of {', '.join(FORMATS)}") from None


DOCUMENT_COLUMNS = ("sentences", "share_negative", "share_positive")
SENTENCE_COLUMNS = ("row", "sentence", "start", "end", "text", "label", *(f"p_{l}" for l in LABELS), "net", "windows")


def new_columns(prefix: str, documents: bool = False) -> list[str]:
    return [
        prefix + c
        for c in (
            "label",
            "score",
            *(f"p_{l}" for l in LABELS),
            "net",
            *(DOCUMENT_COLUMNS if documents else ()),
            "error",
        )
    ]


def is_documents(columns: list[str]) -> bool:
    """Whether a writer's columns are a --documents run's (they end in the document columns, then error)."""
    return any(c.endswith("share_positive") for c in columns)


def result_values(result: Result, documents: bool = False) -> list:
    extra = 3 if documents else 0
    if isinstance(result, DocumentPrediction):
        return [
            result.label,
            result.score,
            *(result.probabilities.get(l) for l in LABELS),
            result.net,
            result.sentence_count,
            result.negative_share,
            result.positive_share,
            None,
        ]
    if isinstance(result, Prediction):
        return [result.label, result.score, *(result.probabilities.get(l) for l in LABELS), result.net, None]
    return [None] * (6 + extra) + [describe(result.reason)]


def sentence_rows(row: int, result: Result) -> list[dict]:
    """A document's sentences as rows of the --sentences file (none for a refused document)."""
    if not isinstance(result, DocumentPrediction):
        return []
    return [
        dict(
            zip(
                SENTENCE_COLUMNS,
                (row, k, s.start, s.end, s.text, s.label, *(s.probabilities.get(l) for l in LABELS), s.net, s.windows),
            )
        )
        for k, s in enumerate(result.sentences)
    ]


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


def text_key(text) -> bytes | None:
    """A stable digest of a text (Python's hash() differs per process), the same for the shard
    choice of every worker and the de-duplication; None for a row without a text."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=16).digest() if isinstance(text, bytes) else None


@dataclass(frozen=True)
class Shard:
    """`K/N`: shard K (0-based, as Kubernetes' JOB_COMPLETION_INDEX) of N."""

    index: int
    count: int

    @classmethod
    def parse(cls, value: str) -> "Shard":
        try:
            index, count = (int(v) for v in value.split("/"))
        except ValueError:
            index = count = None
        if count is None or count < 1 or not 0 <= index < count:
            raise ValueError(f"must be K/N with 0 <= K < N, e.g. 0/8, got {value!r}")
        return cls(index, count)

    def owns(self, key: bytes | None, row: int) -> bool:
        # By text, not by position: every copy of a text is in one shard, so de-duplication within a
        # shard is de-duplication across the whole input. Rows without a text are spread by position.
        n = int.from_bytes(key[:8], "big") if key is not None else row
        return n % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def row_column(prefix: str) -> str:
    return prefix + "input_row"


# -- readers: yield (rows, texts) per chunk; rows are dicts (CSV, JSONL) or a RecordBatch ----
def read_csv(path: Path, column: str, skip: int, size: int) -> Iterator[tuple[list, list]]:
    with storage.open_file(path, "r", newline="", **ENCODING) as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise ScoreError(f"{path} has no column {column!r}; columns: {reader.fieldnames}")
        rows = []
        for i, row in enumerate(reader):
            if i < skip:
                continue
            rows.append(row)
            if len(rows) == size:
                yield rows, [r.get(column) for r in rows]
                rows = []
        if rows:
            yield rows, [r.get(column) for r in rows]


def read_jsonl(path: Path, column: str, skip: int, size: int) -> Iterator[tuple[list, list]]:
    def text(row):
        return row if isinstance(row, Unusable) else text_value(row.get(column), column)

    with storage.open_file(path, "r", **ENCODING) as f:
        rows, seen = [], 0
        for n, line in enumerate(f, 1):
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


def read_parquet(path: Path, column: str, skip: int, size: int) -> Iterator[tuple[object, list]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(storage.open_file(path) if storage.is_url(path) else path)
    if column not in pf.schema_arrow.names:
        raise ScoreError(f"{path} has no column {column!r}; columns: {pf.schema_arrow.names}")
    groups, start = [], 0  # whole row groups before `skip` are not even read
    for g in range(pf.num_row_groups):
        rows = pf.metadata.row_group(g).num_rows
        if groups or start + rows > skip:
            groups.append(g)
        else:
            start += rows
    drop = skip - start
    for batch in pf.iter_batches(batch_size=size, row_groups=groups):
        if drop:
            cut = min(drop, batch.num_rows)
            batch, drop = batch.slice(cut), drop - cut
            if not batch.num_rows:
                continue
        yield batch, [text_value(v, column) for v in batch.column(column).to_pylist()]


# JSONL has no header: its columns are the keys of its first rows (JSON objects).
JSONL_HEADER_ROWS = 1000


def columns_of(path: Path, fmt: str) -> list[str] | None:
    """The input's column names, read before anything is written (None: a JSONL without objects)."""
    if fmt == "csv":
        with storage.open_file(path, "r", newline="", **ENCODING) as f:
            return csv.DictReader(f).fieldnames
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with storage.open_file(path) as f:
            return pq.ParquetFile(f).schema_arrow.names
    names, seen = {}, 0
    with storage.open_file(path, "r", **ENCODING) as f:
        for line in f:
            try:
                row = json.loads(line) if line.strip() else None
            except ValueError:
                continue  # a bad line is that row's failure, not the file's
            if isinstance(row, dict):
                names.update(dict.fromkeys(row))
                seen += 1
                if seen == JSONL_HEADER_ROWS:
                    break
    return list(names) if seen else None


def check_column(path: Path, fmt: str, column: str) -> None:
    """The same refusal for every format when the text column is not there."""
    names = columns_of(path, fmt)
    if (names is not None or fmt == "csv") and column not in (names or ()):
        raise ScoreError(f"{path} has no column {column!r}; columns: {names}")


def count_rows(path: Path, fmt: str) -> int | None:
    """Known without reading the data only for Parquet (its footer)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with storage.open_file(path) as f:
            return pq.ParquetFile(f).metadata.num_rows
    return None


READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


def as_dicts(rows) -> list[dict]:
    if not isinstance(rows, list):
        return rows.to_pylist()
    return [{} if isinstance(r, Unusable) else r for r in rows]


# -- writers: append one chunk, durable on return ------------------------------------------
class TextWriter:
    """CSV or JSONL appended to one file; returns its size after each durable append."""

    def __init__(self, path: Path, fmt: str, columns: list[str], size: int | None):
        self.path, self.fmt, self.columns = path, fmt, columns
        self.documents = is_documents(columns)
        self.header: list[str] | None = None
        if size is not None:  # resuming: drop whatever a kill left after `size`
            with open(path, "r+b") as f:
                f.truncate(size)
            if fmt == "csv" and size:
                with open(path, newline="", **ENCODING) as f:
                    self.header = next(csv.reader(f), None)

    def append(self, rows, results: list[Result], numbers: list[int] | None = None) -> int:
        data = self.encode(rows, results, numbers)
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            return f.tell()

    def encode(self, rows, results: list[Result], numbers: list[int] | None = None) -> bytes:
        """A chunk's rows as CSV (the header first, once) or JSONL."""
        rows = as_dicts(rows)
        values = [
            result_values(r, self.documents) + ([] if numbers is None else [n])
            for r, n in zip(results, numbers or results)
        ]
        buf = io.StringIO(newline="")
        if self.fmt == "csv":
            if self.header is None:
                self.header = [c for c in rows[0] if c not in self.columns] + self.columns
                csv.writer(buf).writerow(self.header)
            writer = csv.writer(buf)
            for row, value in zip(rows, values):
                merged = {**row, **dict(zip(self.columns, value))}
                writer.writerow(["" if merged.get(c) is None else merged[c] for c in self.header])
        else:
            for row, value in zip(rows, values):
                buf.write(
                    json.dumps({**row, **dict(zip(self.columns, value))}, ensure_ascii=False) + "\n"
                )  # as the input had it, not \u escapes
        return buf.getvalue().encode(**ENCODING)

    def finish(self, output: Path) -> None:
        os.replace(self.path, output)


class SentenceWriter:
    """The --sentences file (CSV or JSONL), appended per chunk next to the output, resumed with it."""

    def __init__(self, path: Path, size: int | None):
        self.path, self.fmt = path, file_format(Path(str(path).removesuffix(".partial")))
        if self.fmt == "parquet":
            raise ScoreError(f"{path.name}: the sentence file is CSV or JSONL")
        if size is None:
            path.write_bytes(b"")
        else:
            with open(path, "r+b") as f:
                f.truncate(size)

    def append(self, rows: list[dict]) -> int:
        buf = io.StringIO(newline="")
        if self.fmt == "csv":
            writer = csv.DictWriter(buf, SENTENCE_COLUMNS)
            if self.path.stat().st_size == 0:
                writer.writeheader()
            writer.writerows(rows)
        else:
            buf.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        with open(self.path, "ab") as f:
            f.write(buf.getvalue().encode(**ENCODING))
            f.flush()
            os.fsync(f.fileno())
            return f.tell()


def chunk_table(columns: list[str], rows, results: list[Result], numbers: list[int] | None = None):
    """A chunk's rows and results as one Arrow table (a Parquet part)."""
    import pyarrow as pa

    table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else pa.Table.from_pylist(rows)
    documents = is_documents(columns)
    values = list(
        zip(
            *(
                result_values(r, documents) + ([] if numbers is None else [n])
                for r, n in zip(results, numbers or results)
            )
        )
    )
    types = [
        pa.string(),
        *[pa.float64()] * 5,
        *([pa.int64(), pa.float64(), pa.float64()] if documents else []),
        pa.string(),
    ]
    types += [pa.int64()] * (len(columns) - len(types))  # a shard's input_row
    for name, column, kind in zip(columns, values, types):
        table = table.append_column(pa.field(name, kind), pa.array(column, type=kind))
    return table


class ParquetWriter:
    """One Parquet file per chunk in a folder; finish() joins them as the row groups of OUTPUT."""

    empty_ok = False

    def __init__(self, path: Path, fmt: str, columns: list[str], size: int | None):
        self.path, self.columns = path, columns
        path.mkdir(parents=True, exist_ok=True)
        for stray in path.glob("*.tmp"):
            stray.unlink()

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

    def keep(self, count: int) -> None:
        for extra in self.parts()[count:]:  # parts written after the last progress record
            extra.unlink()

    def finish(self, output: Path) -> None:
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
            if not self.empty_ok:
                raise ScoreError("no rows were scored")
            pq.write_table(pa_empty(), tmp)  # a shard may own no row: its output is there, empty
        os.replace(tmp, output)
        shutil.rmtree(self.path)


class PartsWriter:
    """An OUTPUT in object storage, which cannot append or truncate: each chunk is one object
    OUTPUT.partial/part-N (an upload is there whole or not at all), and finish() streams the parts,
    in order, into OUTPUT, which appears only once its upload completes."""

    empty_ok = False

    def __init__(self, path: str, fmt: str, columns: list[str], count: int | None):
        self.path, self.fmt, self.columns = path, fmt, columns
        self.fs = storage.filesystem(path)
        self.text = None if fmt == "parquet" else TextWriter(None, fmt, columns, None)  # its encoder only
        if count and self.text is not None and fmt == "csv":  # resuming: the header is in part 0
            with self.fs.open(self.parts()[0], "r", newline="", **ENCODING) as f:
                self.text.header = next(csv.reader(f), None)

    def parts(self) -> list[str]:
        self.fs.invalidate_cache(self.path)
        found = self.fs.glob(f"{self.path}/part-*") if self.fs.exists(self.path) else []
        return sorted(self.fs.unstrip_protocol(p) for p in found)

    def keep(self, count: int) -> None:
        for extra in self.parts()[count:]:  # parts written after the last progress record
            self.fs.rm(extra)

    def append(self, rows, results: list[Result], numbers: list[int] | None = None) -> int:
        count = len(self.parts())
        if self.text is not None:
            data = self.text.encode(rows, results, numbers)
        else:
            import pyarrow.parquet as pq

            buf = io.BytesIO()
            pq.write_table(chunk_table(self.columns, rows, results, numbers), buf)
            data = buf.getvalue()
        self.fs.pipe(f"{self.path}/part-{count:06d}.{self.fmt}", data)
        return count + 1

    def finish(self, output: str) -> None:
        parts = self.parts()
        if not parts and self.fmt == "parquet" and not self.empty_ok:
            raise ScoreError("no rows were scored")
        with self.fs.open(output, "wb") as out:
            if self.text is not None:
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


def pa_indices(keep: list[int]):
    import pyarrow as pa

    return pa.array(keep, type=pa.int64())  # typed: an empty list would be of type null


def pa_empty():
    import pyarrow as pa

    return pa.table({})


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


def score_file(
    client,
    input_path: Path,
    output: Path,
    column: str = "text",
    chunk_size: int = 1024,
    prefix: str = "",
    overwrite: bool = False,
    progress_bar: bool = True,
    documents: bool = False,
    sentences: Path | None = None,
    shard: Shard | None = None,
    dedup: bool = True,
) -> Summary:
    """Score `column` of input_path into output (see the module's doc); documents: each text is a
    document (one row each), sentences: also write each document's sentences there (a local file)."""
    input_path, output = storage.location(input_path), storage.location(output)  # a URL: gs://...
    if chunk_size < 1:
        raise ScoreError(f"chunk_size must be 1 or more, got {chunk_size!r}")
    in_fmt, out_fmt = file_format(input_path), file_format(output)
    if not storage.is_file(input_path):
        raise ScoreError(f"{input_path}: no such file")
    # Before --overwrite deletes anything: the output must not be the input (also through a link).
    if (
        input_path == output
        or not storage.is_url(output)
        and not storage.is_url(input_path)
        and output.exists()
        and os.path.samefile(input_path, output)
    ):
        raise ScoreError(f"{output} is the input file: write the scores to another file (-o)")
    # Column and model are checked before any file is written: a failed first try leaves nothing to --overwrite.
    check_column(input_path, in_fmt, column)
    if sentences is not None and not documents:
        raise ScoreError("a sentence file (--sentences) comes with --documents")
    model = client.info.name
    partial = storage.sibling(output, ".partial")
    record = storage.sibling(output, ".partial.json")
    done = storage.sibling(output, ".finsent.json")  # the record of the run that wrote OUTPUT
    if sentences is not None and storage.is_url(sentences):
        raise ScoreError(f"{sentences}: the sentence file is a local file (it is appended to as it goes)")
    sentences_partial = Path(str(sentences) + ".partial") if sentences is not None else None
    if overwrite:
        for path in (output, record, done):
            storage.unlink(path)
        for path in [Path(sentences), sentences_partial] if sentences is not None else []:
            path.unlink(missing_ok=True)
        storage.remove(partial)
    name, size, mtime_ns, version = storage.identity(input_path)
    progress = Progress(
        name,
        size,
        mtime_ns,
        column,
        model,
        documents,
        shard=str(shard) if shard else None,
        read=0 if shard else None,
        input_version=version,
    )
    if storage.exists(output):
        if storage.exists(record):  # OUTPUT is only ever written complete: stopped before its record was kept
            storage.remove(partial)
            storage.move_text(record, done)
        if not storage.exists(done):
            raise ScoreError(
                f"{output} already exists without {storage.name(done)}, the record of the run that wrote it "
                f"(input, column, model): it may hold other scores; use --overwrite to replace it"
            )
        saved = Progress.load(done)
        saved.check(progress, f"{output} was scored")
        return Summary(output, saved.rows, 0, saved.rows, saved.failures, saved.labels, 0.0, already_complete=True)
    columns = new_columns(prefix, documents) + ([row_column(prefix)] if shard else [])
    Writer = PartsWriter if storage.is_url(output) else ParquetWriter if out_fmt == "parquet" else TextWriter
    sentence_writer = None
    # (a remote partial with no part yet is no object at all)
    if storage.exists(record) and (storage.is_url(partial) or partial.exists()):
        progress = Progress.load(record).check(progress, f"{partial} was started")
        writer = Writer(partial, out_fmt, columns, progress.written or 0)
        if not isinstance(writer, TextWriter):
            writer.keep(progress.written or 0)
        if sentences_partial is not None:
            if not sentences_partial.exists() and sentences.exists() and progress.rows:
                os.replace(sentences, sentences_partial)  # stopped between the two final renames
            if not sentences_partial.exists() and progress.rows:
                raise ScoreError(
                    f"{partial} was started without the sentence file {sentences}; use --overwrite to start over"
                )
            sentence_writer = SentenceWriter(sentences_partial, progress.sentences_written if progress.rows else None)
    else:
        if sentences_partial is not None:
            sentence_writer = SentenceWriter(sentences_partial, None)
        storage.remove(partial)
        if Writer is TextWriter:
            partial.touch()
        writer = Writer(partial, out_fmt, columns, None)
        progress.save(record)
    resumed_from = progress.rows
    labels = Counter(progress.labels)
    # text digest -> result: each distinct text is sent once per run (a few hundred bytes per distinct text);
    # a resumed run starts from the results it already wrote
    cache: dict[bytes, Result] | None = {} if dedup else None
    if cache is not None and progress.rows and not documents:  # (a document's sentences are not in its row)
        cache.update(written_results(writer, out_fmt, column, prefix))
    bar = None
    if progress_bar:
        from tqdm import tqdm

        bar = tqdm(
            total=count_rows(input_path, in_fmt),
            initial=progress.skip,
            unit=" texts",
            dynamic_ncols=True,
            desc=storage.name(output),
            file=sys.stderr,
            smoothing=0.1,
        )
    started, scored = time.monotonic(), 0
    try:
        # A shard reads N chunks' worth of input for about one chunk of its own rows.
        read_size = chunk_size * (min(shard.count, 64) if shard else 1)
        for rows, texts in READERS[in_fmt](input_path, column, progress.skip, read_size):
            names = (
                rows.schema.names
                if not isinstance(rows, list)
                else next((r.keys() for r in rows if isinstance(r, dict)), ())
            )
            clash = set(columns) & set(names)
            if clash:
                raise ScoreError(
                    f"{input_path} already has the output column(s) {sorted(clash)}; "
                    f"name ours differently with --prefix, e.g. --prefix finsent_"
                )
            first, read = progress.skip, len(texts)
            keys = [text_key(t) for t in texts]
            numbers = list(range(first, first + read))
            if shard:
                keep = [i for i, (k, n) in enumerate(zip(keys, numbers)) if shard.owns(k, n)]
                rows = [rows[i] for i in keep] if isinstance(rows, list) else rows.take(pa_indices(keep))
                texts, keys, numbers = ([v[i] for i in keep] for v in (texts, keys, numbers))
            results, reused = classify_rows(client, texts, column, numbers, keys, cache, documents)
            if sentence_writer is not None:  # a document's sentences name its input row
                progress.sentences_written = sentence_writer.append(
                    [s for n, r in zip(numbers, results) for s in sentence_rows(n, r)]
                )
            if texts:
                progress.written = writer.append(rows, results, numbers if shard else None)
            progress.rows += len(texts)
            progress.duplicates += reused
            if shard:
                progress.read += read
            for r in results:
                if isinstance(r, Failure):
                    progress.failures += 1
                else:
                    labels[r.label] += 1
            progress.labels = dict(labels)
            progress.save(record)
            scored += len(texts)
            if bar is not None:
                bar.update(read)
    except BaseException:
        if progress.skip == 0:  # nothing to resume: no partial file to block the next run
            storage.remove(partial)
            storage.unlink(record)
        raise
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - started
    if progress.skip == 0 and out_fmt == "parquet":
        raise ScoreError(f"{input_path} has no rows")
    if sentence_writer is not None:
        os.replace(sentences_partial, sentences)
    writer.empty_ok = shard is not None
    writer.finish(output)
    storage.move_text(record, done)
    return Summary(
        output,
        progress.rows,
        scored,
        resumed_from,
        progress.failures,
        dict(labels),
        elapsed,
        shard=progress.shard,
        read=progress.skip,
        duplicates=progress.duplicates,
    )


def written_results(writer, fmt: str, column: str, prefix: str) -> dict[bytes, Prediction]:
    """{text digest: prediction} of the rows a resumed run's partial output already holds."""
    sources = [writer.path] if isinstance(writer, TextWriter) else writer.parts()
    header = getattr(getattr(writer, "text", None), "header", None)  # PartsWriter CSV: header in part 0 only
    names = [prefix + c for c in ("label", "score", *(f"p_{l}" for l in LABELS), "error")]
    found = {}
    for n, source in enumerate(sources):
        if fmt == "csv" and header is not None:
            with storage.open_file(source, "r", newline="", **ENCODING) as f:
                chunks = [[r for r in csv.DictReader(f, fieldnames=header)][n == 0 :]]
        else:
            chunks = (as_dicts(rows) for rows, _ in READERS[fmt](source, column, 0, 4096))
        for rows in chunks:
            for row in rows:
                key, (label, score, *probabilities, error) = text_key(row.get(column)), (row.get(c) for c in names)
                if key is not None and label not in (None, "") and error in (None, ""):
                    found[key] = Prediction(label, float(score), dict(zip(LABELS, map(float, probabilities))))
    return found


def classify_rows(
    client, texts: list, column: str, numbers: list[int], keys: list, cache: dict | None, documents: bool = False
) -> tuple[list[Result], int]:
    """Results for one chunk (rows `numbers` of the input), and how many rows reused the result of an
    earlier row with the same text (`cache`, shared by the chunks of a run; None: no reuse). Rows
    without a usable text fail here, without a request. documents: each text is a document."""
    results: list[Result | None] = [None] * len(texts)
    send, first, reused = [], {}, 0  # first: key -> the row of this chunk that sends it
    for i, text in enumerate(texts):
        if isinstance(text, Unusable):
            results[i] = Failure(numbers[i], text.reason)
        elif text is None:
            results[i] = Failure(numbers[i], f"no value in column {column!r}")
        elif cache is not None and (keys[i] in cache or keys[i] in first):
            reused += 1
        else:
            first[keys[i]] = i
            send.append(i)
    classify = client.classify_documents if documents else client.classify
    served = classify([texts[i] for i in send], on_error="return") if send else []
    for i, result in zip(send, served):
        results[i] = result
        if cache is not None:
            cache[keys[i]] = result
    for i, result in enumerate(results):
        if result is None:
            results[i] = cache[keys[i]]
        if isinstance(results[i], Failure):  # a refusal is the row's, with its own number
            results[i] = Failure(numbers[i], results[i].reason)
    return results, reused
