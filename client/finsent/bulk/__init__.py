"""Bulk work on files: `finsent score`, `finsent merge` and `finsent aggregate`.

Modules, bottom first (each imports only those above it in this list):
    errors      ScoreError, what every bulk module raises for a bad file or argument
    storage     a local path or an object-storage URL (gs://), behind the few operations needed
    tables      input formats (CSV, JSONL, Parquet): a file opened once, its columns, its rows in chunks
    columns     the columns a run adds, named in the server's label order
    shards      `--shard K/N`: which rows a worker owns
    progress    the resume record beside a partial output, and a run's summary
    writers     appending scored chunks durably (a file, a folder of Parquet parts, or objects)
    dedupe      a chunk's results, each distinct text sent once per run
    job         score_file: check, open or resume, the chunks, finish
    merge       shard outputs back into one file in input order
    aggregate   a scored file grouped by columns
"""
