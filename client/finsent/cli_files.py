"""The finsent CLI's file commands: `score` (a CSV, JSONL or Parquet file, streaming and resumable),
`merge` (the shards of a --shard run, in input order) and `aggregate` (a scored file by columns)."""

from __future__ import annotations

import argparse
from pathlib import Path

from finsent.bulk.errors import ScoreError
from finsent.bulk.job import score_file
from finsent.bulk.shards import Shard
from finsent.cli_options import add_connection, at_least_one, make_client, need


def shard_of(value: str) -> Shard:
    try:
        return Shard.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def default_output(source: str) -> str:
    """INPUT.scored.EXT beside INPUT (also in a bucket: gs://b/news.csv -> gs://b/news.scored.csv)."""
    stem, dot, ext = source.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = source, ""
    return f"{stem}.scored.{ext}" if ext else f"{stem}.scored"


def cmd_score(args) -> int:
    need(
        "cli",
        *(["tqdm"] if not args.no_progress else []),
        *(["pyarrow"] if ".parquet" in (args.input + str(args.output)).lower() else []),
    )
    output = args.output or default_output(args.input)
    # Bulk work is background traffic: it yields to interactive texts and backs off while the server is full.
    with make_client(args, patient=True, max_in_flight=args.max_in_flight, traffic="background") as client:
        summary = score_file(
            client,
            args.input,
            output,
            column=args.column,
            chunk_size=args.chunk_size,
            prefix=args.prefix,
            overwrite=args.overwrite,
            progress_bar=not args.no_progress,
            documents=args.documents,
            sentences=Path(args.sentences) if args.sentences else None,
            shard=args.shard,
            dedup=not args.no_dedup,
        )
    print(summary)
    return 0


def cmd_aggregate(args) -> int:
    from finsent.bulk.aggregate import aggregate, write

    by = [c.strip() for c in args.by.split(",") if c.strip()]
    if not by:
        raise ScoreError("--by names no column: e.g. --by ticker,date")
    write(aggregate(Path(args.input), by, args.prefix), by, Path(args.output) if args.output else None)
    return 0


def cmd_merge(args) -> int:
    need("cli", *(["pyarrow"] if ".parquet" in " ".join([*args.inputs, args.output]).lower() else []))
    from finsent.bulk.merge import merge_files

    rows, outputs = merge_files(args.inputs, args.output, prefix=args.prefix, overwrite=args.overwrite)
    print(f"wrote {args.output}: {rows} rows from {outputs} shard outputs")
    return 0


def add_file_commands(sub) -> None:
    """score, aggregate and merge, on the CLI's subparsers."""
    p = sub.add_parser(
        "score",
        help="score a CSV, JSONL or Parquet file (streaming, resumable)",
        description="Adds label, score, p_negative, p_neutral, p_positive, net (p_positive - "
        "p_negative) and error columns; with --documents also sentences, share_negative and "
        "share_positive (one row per document). "
        "Re-running after an interruption resumes where the last complete chunk ended.",
    )
    p.add_argument("input", help="a .csv, .jsonl/.ndjson or .parquet file")
    p.add_argument("-o", "--output", help="output file; its extension picks the format (default INPUT.scored.EXT)")
    p.add_argument("--column", default="text", help="column holding the text (default text)")
    p.add_argument(
        "--chunk-size", type=at_least_one, default=1024, help="rows read, scored and appended at a time (default 1024)"
    )
    p.add_argument("--max-in-flight", type=at_least_one, default=4, help="concurrent requests to Triton (default 4)")
    p.add_argument("--prefix", default="", help="prefix for the added column names, e.g. finsent_")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming / skipping")
    p.add_argument(
        "--documents",
        action="store_true",
        help="each text is a document: scored sentence by sentence by the model's document model",
    )
    p.add_argument(
        "--sentences",
        help="with --documents: also write each sentence's scores to this CSV or JSONL file "
        "(row, sentence, start, end, text, label, p_*, net, windows)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--shard",
        type=shard_of,
        metavar="K/N",
        help="score only shard K (0..N-1) of N, chosen by text, and add an input_row column; N workers "
        "with K = 0..N-1 score every row once; `finsent merge` joins their outputs in input order",
    )
    p.add_argument(
        "--no-dedup",
        action="store_true",
        help="send every row's text, even one already scored in this run (default: each distinct text once)",
    )
    add_connection(p)
    p.set_defaults(run=cmd_score)

    p = sub.add_parser(
        "aggregate",
        help="group a scored file by columns: count, mean and std of net, shares",
        description="Groups a file written by finsent score (or score --documents) by the columns "
        "given: per group the rows scored and refused, mean and standard deviation of net, and the "
        "shares labelled negative and positive. Prints a table, or writes -o (CSV, JSONL, Parquet).",
    )
    p.add_argument("input", help="a scored .csv, .jsonl or .parquet file")
    p.add_argument("--by", required=True, help="columns to group by, comma-separated, e.g. ticker,date")
    p.add_argument("-o", "--output", help="write the groups here instead of printing them")
    p.add_argument("--prefix", default="", help="the --prefix the file was scored with")
    p.set_defaults(run=cmd_aggregate)

    p = sub.add_parser(
        "merge",
        help="join the outputs of finsent score --shard K/N, K = 0..N-1, in input order",
        description="Streams the shard outputs into OUTPUT in input order, without their input_row "
        "column: the file one unsharded finsent score would have written. Refuses a missing or "
        "repeated row.",
    )
    p.add_argument("inputs", nargs="+", help="the shard outputs (.csv, .jsonl/.ndjson or .parquet), any order")
    p.add_argument("-o", "--output", required=True, help="merged file; its extension picks the format")
    p.add_argument("--prefix", default="", help="the --prefix the shards were scored with")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=cmd_merge)
