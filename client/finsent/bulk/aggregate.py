"""`finsent aggregate SCORED --by ticker,date`: a file written by `finsent score` grouped by columns.

Per group: count (rows scored), errors (rows refused), mean_net and std_net (the sample standard
deviation of net = P(positive) - P(negative); none below two rows), share_negative and
share_positive (of the rows scored, those labelled so). For `finsent score --documents` output a
row is a document: the shares are of documents, and each document's own sentence shares stay in
its share_negative/share_positive columns. Streams the file: memory grows with the groups only.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from finsent.bulk.errors import ScoreError
from finsent.bulk.tables import as_dicts, file_format, open_table

STATS = ("count", "errors", "mean_net", "std_net", "share_negative", "share_positive")


@dataclass
class Group:
    count: int = 0
    errors: int = 0
    total: float = 0.0
    squares: float = 0.0
    negative: int = 0
    positive: int = 0

    def add(self, net, label) -> None:
        if net in (None, ""):
            self.errors += 1
            return
        net = float(net)
        self.count += 1
        self.total += net
        self.squares += net * net
        self.negative += label == "negative"
        self.positive += label == "positive"

    def stats(self) -> list:
        n = self.count
        mean = self.total / n if n else None
        std = math.sqrt(max(0.0, (self.squares - n * mean * mean) / (n - 1))) if n > 1 else None
        return [n, self.errors, mean, std, self.negative / n if n else None, self.positive / n if n else None]


def aggregate(path: Path, by: list[str], prefix: str = "") -> list[dict]:
    """One dict per group (the `by` values, then STATS), in order of first appearance."""
    fmt = file_format(path)
    if not path.is_file():
        raise ScoreError(f"{path}: no such file")
    net, label = prefix + "net", prefix + "label"
    groups: dict[tuple, Group] = {}
    with open_table(path, fmt) as table:
        for column in (*by, net, label):
            table.require(column)
        for rows, _ in table.chunks(net, 0, 10_000):
            for row in as_dicts(rows):
                key = tuple(row.get(c) for c in by)
                groups.setdefault(key, Group()).add(row.get(net), row.get(label))
    return [{**dict(zip(by, key)), **dict(zip(STATS, group.stats()))} for key, group in groups.items()]


def write(rows: list[dict], by: list[str], output: Path | None) -> None:
    columns = [*by, *STATS]
    if output is None:
        cells = [
            [f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v) for v in r.values()] for r in rows
        ]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        for line in [columns, *cells]:
            print("  ".join(f"{v:<{w}}" for v, w in zip(line, widths)).rstrip())
        return
    fmt = file_format(output)
    if fmt == "csv":
        with open(output, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        output.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), output)
    print(f"wrote {output}: {len(rows)} groups", file=sys.stderr)
