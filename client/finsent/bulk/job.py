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

score_file runs in phases (Job): check (arguments, then the input opened once: its column, the
model) -> open or resume (the records beside OUTPUT) -> chunks (read, shard, classify, append,
record) -> finish (the partial becomes OUTPUT). The client is any object with `info` (name, labels)
and `classify` (`classify_documents` for --documents), e.g. finsent.Client.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from finsent.bulk import storage
from finsent.bulk.columns import Columns
from finsent.bulk.dedupe import classify_rows, text_key, written_results
from finsent.bulk.errors import ScoreError
from finsent.bulk.progress import Progress, Summary
from finsent.bulk.shards import Shard
from finsent.bulk.tables import Table, file_format, open_table
from finsent.bulk.writers import SentenceWriter, open_writer
from finsent.results import Failure, Result

SHARD_READ_FACTOR = 64  # a shard reads up to this many chunks' worth of input per chunk of its own rows


def score_file(client, input_path: Path | str, output: Path | str, **options) -> Summary:
    """Score a column of input_path into output (see the module's doc). options are Job's: column,
    chunk_size, prefix, overwrite, progress_bar, documents, sentences, shard, dedup."""
    return Job(client, input_path, output, **options).run()


@dataclass
class Run:
    """An open run: its progress record, the writers of its partial files, the results to reuse."""

    progress: Progress
    columns: Columns
    writer: object
    sentence_writer: SentenceWriter | None
    cache: dict[bytes, Result] | None  # text digest -> result; None: no de-duplication
    resumed_from: int


@dataclass
class Job:
    """One `finsent score` job: its arguments (documents: each text is a document, one row each;
    sentences: also write each document's sentences there, a local file), and the files they name
    beside OUTPUT."""

    client: object
    input: Path | str
    output: Path | str
    column: str = "text"
    chunk_size: int = 1024
    prefix: str = ""
    overwrite: bool = False
    progress_bar: bool = True
    documents: bool = False
    sentences: Path | None = None
    shard: Shard | None = None
    dedup: bool = True

    def __post_init__(self):
        self.input, self.output = storage.location(self.input), storage.location(self.output)  # a URL: gs://...
        self.partial = storage.sibling(self.output, ".partial")
        self.record = storage.sibling(self.output, ".partial.json")
        self.done = storage.sibling(self.output, ".finsent.json")  # the record of the run that wrote OUTPUT
        self.sentences_partial = Path(str(self.sentences) + ".partial") if self.sentences is not None else None

    def run(self) -> Summary:
        """The phases, in order; the input is opened once, for the column check and the chunks."""
        self.check()
        with open_table(self.input, self.in_fmt) as table:
            opened = self.open(self.check_input(table))
            if isinstance(opened, Summary):  # OUTPUT is complete, from this same job
                return opened
            scored, seconds = self.chunks(table, opened)
        return self.finish(opened, scored, seconds)

    # -- check: nothing is written before the arguments, the input's column and the model pass --------
    def check(self) -> None:
        if self.chunk_size < 1:
            raise ScoreError(f"chunk_size must be 1 or more, got {self.chunk_size!r}")
        self.in_fmt, self.out_fmt = file_format(self.input), file_format(self.output)
        if not storage.is_file(self.input):
            raise ScoreError(f"{self.input}: no such file")
        # Before --overwrite deletes anything: the output must not be the input (also through a link).
        if (
            self.input == self.output
            or not storage.is_url(self.output)
            and not storage.is_url(self.input)
            and self.output.exists()
            and os.path.samefile(self.input, self.output)
        ):
            raise ScoreError(f"{self.output} is the input file: write the scores to another file (-o)")

    def check_input(self, table: Table) -> Columns:
        """The columns this job adds, once the input has its column and the server the model: a failed
        first try leaves nothing to --overwrite."""
        table.require(self.column)
        if self.sentences is not None and not self.documents:
            raise ScoreError("a sentence file (--sentences) comes with --documents")
        info = self.client.info
        self.model = info.name
        if self.sentences is not None and storage.is_url(self.sentences):
            raise ScoreError(f"{self.sentences}: the sentence file is a local file (it is appended to as it goes)")
        return Columns(tuple(info.labels), self.prefix, self.documents, self.shard is not None)

    # -- open or resume: the records beside OUTPUT say which ------------------------------------------
    def open(self, columns: Columns) -> Run | Summary:
        """The run to go on with, or the Summary of an OUTPUT this same job already completed."""
        if self.overwrite:
            for path in (self.output, self.record, self.done):
                storage.unlink(path)
            for path in [self.sentences, self.sentences_partial] if self.sentences is not None else []:
                Path(path).unlink(missing_ok=True)
            storage.remove(self.partial)
        name, size, mtime_ns, version = storage.identity(self.input)
        progress = Progress(
            name,
            size,
            mtime_ns,
            self.column,
            self.model,
            self.documents,
            shard=str(self.shard) if self.shard else None,
            read=0 if self.shard else None,
            input_version=version,
        )
        if storage.exists(self.output):
            return self.completed(progress)
        # (a remote partial with no part yet is no object at all)
        if storage.exists(self.record) and (storage.is_url(self.partial) or self.partial.exists()):
            return self.resume(Progress.load(self.record).check(progress, f"{self.partial} was started"), columns)
        sentence_writer = None
        if self.sentences_partial is not None:
            sentence_writer = SentenceWriter(self.sentences_partial, columns, None)
        storage.remove(self.partial)
        writer = open_writer(self.partial, self.output, self.out_fmt, columns, None)
        progress.save(self.record)
        return Run(progress, columns, writer, sentence_writer, {} if self.dedup else None, 0)

    def completed(self, progress: Progress) -> Summary:
        if storage.exists(self.record):  # OUTPUT is only ever written complete: stopped before its record was kept
            storage.remove(self.partial)
            storage.move_text(self.record, self.done)
        if not storage.exists(self.done):
            raise ScoreError(
                f"{self.output} already exists without {storage.name(self.done)}, the record of the run that "
                f"wrote it (input, column, model): it may hold other scores; use --overwrite to replace it"
            )
        saved = Progress.load(self.done).check(progress, f"{self.output} was scored")
        return Summary(self.output, saved.rows, 0, saved.rows, saved.failures, saved.labels, 0.0, already_complete=True)

    def resume(self, progress: Progress, columns: Columns) -> Run:
        writer = open_writer(self.partial, self.output, self.out_fmt, columns, progress.written or 0)
        sentence_writer = None
        if self.sentences_partial is not None:
            sentences, partial = Path(self.sentences), self.sentences_partial
            if not partial.exists() and sentences.exists() and progress.rows:
                os.replace(sentences, partial)  # stopped between the two final renames
            if not partial.exists() and progress.rows:
                raise ScoreError(
                    f"{self.partial} was started without the sentence file {sentences}; use --overwrite to start over"
                )
            sentence_writer = SentenceWriter(partial, columns, progress.sentences_written if progress.rows else None)
        cache = {} if self.dedup else None
        if cache is not None and progress.rows and not self.documents:  # (a document's sentences are not in its row)
            cache.update(written_results(writer, columns, self.column))
        return Run(progress, columns, writer, sentence_writer, cache, progress.rows)

    # -- chunks: read, keep the shard's rows, classify, append, record ---------------------------------
    def chunks(self, table: Table, run: Run) -> tuple[int, float]:
        """(rows scored, seconds) once the input is exhausted; the record is saved after each chunk."""
        progress, names = run.progress, run.columns.names
        bar = self.bar(table, progress) if self.progress_bar else None
        started, scored = time.monotonic(), 0
        try:
            # A shard reads N chunks' worth of input for about one chunk of its own rows.
            read_size = self.chunk_size * (min(self.shard.count, SHARD_READ_FACTOR) if self.shard else 1)
            for rows, texts in table.chunks(self.column, progress.skip, read_size):
                clash = set(names) & set(row_names(rows))
                if clash:
                    raise ScoreError(
                        f"{self.input} already has the output column(s) {sorted(clash)}; "
                        f"name ours differently with --prefix, e.g. --prefix finsent_"
                    )
                first, read = progress.skip, len(texts)
                keys = [text_key(t) for t in texts]
                numbers = list(range(first, first + read))
                if self.shard:
                    keep = [i for i, (k, n) in enumerate(zip(keys, numbers)) if self.shard.owns(k, n)]
                    rows = [rows[i] for i in keep] if isinstance(rows, list) else rows.take(arrow_indices(keep))
                    texts, keys, numbers = ([v[i] for i in keep] for v in (texts, keys, numbers))
                results, reused = classify_rows(
                    self.client, texts, self.column, numbers, keys, run.cache, self.documents
                )
                if run.sentence_writer is not None:  # a document's sentences name its input row
                    progress.sentences_written = run.sentence_writer.append(
                        [s for n, r in zip(numbers, results) for s in run.columns.sentence_rows(n, r)]
                    )
                if texts:
                    progress.written = run.writer.append(rows, results, numbers if self.shard else None)
                record_chunk(progress, results, reused, read if self.shard else None)
                progress.save(self.record)
                scored += len(texts)
                if bar is not None:
                    bar.update(read)
        except BaseException:
            if progress.skip == 0:  # nothing to resume: no partial file to block the next run
                storage.remove(self.partial)
                storage.unlink(self.record)
            raise
        finally:
            if bar is not None:
                bar.close()
        return scored, time.monotonic() - started

    def bar(self, table: Table, progress: Progress):
        from tqdm import tqdm

        return tqdm(
            total=table.row_count,  # None (no total) for CSV and JSONL: counting would read them twice
            initial=progress.skip,
            unit=" texts",
            dynamic_ncols=True,
            desc=storage.name(self.output),
            file=sys.stderr,
            smoothing=0.1,
        )

    # -- finish: the partial files become OUTPUT (and the sentence file), the record is kept -----------
    def finish(self, run: Run, scored: int, seconds: float) -> Summary:
        progress = run.progress
        if progress.skip == 0 and self.out_fmt == "parquet":
            raise ScoreError(f"{self.input} has no rows")
        if run.sentence_writer is not None:
            os.replace(self.sentences_partial, self.sentences)
        run.writer.finish(self.output, empty_ok=self.shard is not None)  # a shard may own no row
        storage.move_text(self.record, self.done)
        return Summary(
            self.output,
            progress.rows,
            scored,
            run.resumed_from,
            progress.failures,
            progress.labels,
            seconds,
            shard=progress.shard,
            read=progress.skip,
            duplicates=progress.duplicates,
        )


def row_names(rows) -> list[str]:
    """A chunk's column names: a RecordBatch's schema, or the keys of its first JSON object / CSV row."""
    if not isinstance(rows, list):
        return rows.schema.names
    return list(next((r.keys() for r in rows if isinstance(r, dict)), ()))


def record_chunk(progress: Progress, results: list[Result], reused: int, read: int | None) -> None:
    """A chunk's rows, failures, labels and duplicates added to the record (read: input rows, for a shard)."""
    labels = Counter(progress.labels)
    labels.update(r.label for r in results if not isinstance(r, Failure))
    progress.rows += len(results)
    progress.failures += sum(isinstance(r, Failure) for r in results)
    progress.labels = dict(labels)
    progress.duplicates += reused
    if read is not None:
        progress.read += read


def arrow_indices(keep: list[int]):
    import pyarrow as pa

    return pa.array(keep, type=pa.int64())  # typed: an empty list would be of type null
