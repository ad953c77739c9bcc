"""finsent.bulk.dedupe (issue 19): each distinct text is scored once per run, every copy gets its
result, and a resumed run reuses what it already wrote; counted by the server's statistics."""

import time

import pytest

from finsent import Client
from tests.client.bulk.test_job import (
    check_scored,
    kill_after,
    read_output,
    rows_recorded,
    start_score,
)
from tests.client.bulk.test_shards import score, write_news
from tests.statistics import stats_of


def inferences(triton, model="finbert"):
    """Texts the ensemble and its background copy (where finsent score sends them) have scored."""
    with Client(triton.grpc_url, model=model) as client:
        elsewhere = client.info.background_model
    return sum(stats_of(triton, m)[0] for m in (model, elsewhere) if m)


def inferences_since(triton, before: int, expected: int) -> int:
    """The server's texts scored since `before`, once it counts at least `expected` (or after 30 s):
    its statistics are recorded just after a response is sent, so they can lag the CLI's exit."""
    deadline = time.monotonic() + 30
    while (seen := inferences(triton) - before) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_each_distinct_text_is_scored_once_and_every_copy_gets_its_result(triton, tmp_path, suffix):
    news = tmp_path / f"news{suffix}"
    rows = write_news(news, 900)  # 301 distinct texts, 2 rows without one
    distinct = {r["text"] for r in rows if r["text"]}
    before = inferences(triton)
    run = score(news, "-o", tmp_path / f"out{suffix}", "--chunk-size", 64, "--url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    assert inferences_since(triton, before, len(distinct)) == len(distinct)  # what the server saw
    # as the file holds them: CSV cannot tell a missing text from an empty one (refused once, reused once)
    strings = [t for t in ("" if suffix == ".csv" and r["text"] is None else r["text"] for r in rows) if t is not None]
    duplicates = len(strings) - len(set(strings))
    assert f"duplicates: {duplicates} of 900 rows ({100 * duplicates / 900:.1f}%)" in run.stdout, run.stdout
    out = read_output(tmp_path / f"out{suffix}")
    check_scored(triton, rows, out, bad=(7, 11))
    first = {}
    for row in out:
        if row["text"]:
            first.setdefault(row["text"], row)
            assert {k: v for k, v in row.items() if k not in ("id", "source")} == {
                k: v for k, v in first[row["text"]].items() if k not in ("id", "source")
            }
    # --no-dedup sends every row again
    before = inferences(triton)
    plain = score(news, "-o", tmp_path / f"plain{suffix}", "--no-dedup", "--url", triton.grpc_url)
    assert plain.returncode == 0 and inferences_since(triton, before, 898) == 898, plain.stderr
    assert "duplicates: 0 of 900 rows" in plain.stdout


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_resumed_run_does_not_score_again_the_texts_it_already_wrote(triton, tmp_path, suffix):
    news = tmp_path / f"news{suffix}"
    rows = write_news(news, 1800)  # 601 distinct texts, each about 3 times, spread
    distinct = {r["text"] for r in rows if r["text"]}
    out, record = tmp_path / f"out{suffix}", tmp_path / f"out{suffix}.partial.json"
    before = inferences(triton)
    proc = start_score(news, "-o", out, url=triton.grpc_url)
    [done] = kill_after([proc], [lambda: rows_recorded(record.read_text)], 600)
    assert 600 <= done < 1800 and not out.exists(), "the kill must land mid-file"
    resumed = score(news, "-o", out, "--chunk-size", 10, "--url", triton.grpc_url)
    assert resumed.returncode == 0 and "(resumed after " in resumed.stdout, resumed.stderr
    # the results already written are the cache of the resumed run: only the chunk in flight at the kill
    # (at most 10 texts) is scored twice
    assert inferences_since(triton, before, len(distinct)) <= len(distinct) + 10
    out_rows = read_output(out)
    check_scored(triton, rows, out_rows, bad=(7, 11))
    first = {}
    for row in out_rows:
        if row["text"]:
            first.setdefault(row["text"], row)
            assert [row[c] for c in ("label", "score", "p_negative", "p_neutral", "p_positive")] == [
                first[row["text"]][c] for c in ("label", "score", "p_negative", "p_neutral", "p_positive")
            ]
