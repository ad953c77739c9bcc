"""finsent.bulk.aggregate: `finsent aggregate`: a scored file grouped by columns (count, mean and std of net, shares)."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from tests.client.test_cli import finsent


def write_scored(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["ticker", "date", "text", "label", "net", "error"])
        writer.writeheader()
        writer.writerows(rows)


ROWS = [
    {"ticker": "ACME", "date": "2024-01-02", "text": "a", "label": "positive", "net": 0.5, "error": ""},
    {"ticker": "ACME", "date": "2024-01-02", "text": "b", "label": "negative", "net": -0.25, "error": ""},
    {"ticker": "ACME", "date": "2024-01-03", "text": "c", "label": "neutral", "net": 0.0, "error": ""},
    {"ticker": "XYZ", "date": "2024-01-02", "text": "", "label": "", "net": "", "error": "text is empty"},
    {"ticker": "XYZ", "date": "2024-01-02", "text": "d", "label": "positive", "net": 0.75, "error": ""},
]


def test_aggregate_groups_a_scored_file_by_columns(tmp_path):
    scored, out = tmp_path / "scored.csv", tmp_path / "by_ticker.jsonl"
    write_scored(scored, ROWS)
    run = finsent("aggregate", scored, "--by", "ticker", "-o", out)
    assert run.returncode == 0, run.stderr
    groups = [json.loads(line) for line in out.read_text().splitlines()]
    acme, xyz = groups
    assert (acme["ticker"], acme["count"], acme["errors"]) == ("ACME", 3, 0)
    assert acme["mean_net"] == pytest.approx(0.25 / 3) and acme["std_net"] == pytest.approx(
        statistics.stdev([0.5, -0.25, 0])
    )
    assert acme["share_negative"] == pytest.approx(1 / 3) and acme["share_positive"] == pytest.approx(1 / 3)
    assert (xyz["count"], xyz["errors"], xyz["std_net"], xyz["share_positive"]) == (1, 1, None, 1.0)
    table = finsent("aggregate", scored, "--by", "ticker,date")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ticker",
        "date",
        "count",
        "errors",
        "mean_net",
        "std_net",
        "share_negative",
        "share_positive",
    ]
    assert len(lines) == 4 and lines[1].split()[:3] == ["ACME", "2024-01-02", "2"]


def test_aggregate_names_a_missing_column(tmp_path):
    scored = tmp_path / "scored.csv"
    write_scored(scored, ROWS)
    run = finsent("aggregate", scored, "--by", "sector")
    assert run.returncode == 2 and "no column 'sector'" in run.stderr
