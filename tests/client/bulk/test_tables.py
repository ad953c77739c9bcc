"""finsent.bulk.tables: inputs opened once, their columns, their rows in chunks."""

import os
import threading

import pytest

from finsent.bulk.errors import ScoreError
from finsent.bulk.tables import open_table
from tests.client.bulk.test_job import write_input


@pytest.mark.parametrize("skip", [0, 30, 284, 285, 286, 1995, 2000])
def test_parquet_resume_skips_exactly_the_rows_done(tmp_path, skip):
    write_input(tmp_path / "in.parquet", 2000)  # row groups of 285 and a last one of 5
    with open_table(tmp_path / "in.parquet") as table:
        ids = [r["id"] for batch, _ in table.chunks("text", skip, 500) for r in batch.to_pylist()]
    assert ids == list(range(skip, 2000))


@pytest.mark.timeout(60)  # a second open of the pipe would wait for a writer forever
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_input_is_read_once_columns_and_rows_alike(tmp_path, suffix):
    """A named pipe can be read only once: the columns (a JSONL's from its first lines) and every row
    must all come from that one read, a skip included."""
    source, pipe = tmp_path / f"source{suffix}", tmp_path / f"pipe{suffix}"
    rows = write_input(source, 2500)  # past the JSONL lines read for the columns
    os.mkfifo(pipe)
    feeder = threading.Thread(target=lambda: pipe.write_bytes(source.read_bytes()), daemon=True)
    feeder.start()
    with open_table(pipe) as table:
        table.require("text")
        assert table.columns == ["id", "text", "source"] and table.row_count is None
        texts = [t for _, chunk in table.chunks("text", 7, 1000) for t in chunk]
    feeder.join(timeout=10)
    assert texts == [r["text"] for r in rows[7:]]


def test_a_missing_column_is_refused_on_opening_for_every_format(tmp_path):
    for suffix in (".csv", ".jsonl", ".parquet"):
        write_input(tmp_path / f"in{suffix}", 3)
        with open_table(tmp_path / f"in{suffix}") as table, pytest.raises(ScoreError, match="has no column 'headline'"):
            table.require("headline")
