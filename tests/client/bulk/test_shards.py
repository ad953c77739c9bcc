"""finsent.bulk.shards (issue 19): `finsent score --shard K/N`, each row in exactly one shard chosen by
its text, the shards merged back equal to the unsharded output; against the session's tritonserver
through the CLI as users run it. write_news and score serve the other bulk tests."""

import pytest

from tests.client.bulk.test_job import (
    check_scored,
    kill_after,
    read_output,
    rows_recorded,
    start_score,
    texts,
    write_input,
    write_rows,
)
from tests.client.test_cli import finsent


def write_news(path, n, copies=3):
    """Rows whose texts repeat (one in `copies` is new, the copies spread over the file), with an
    empty (row 7) and a missing text (row 11)."""
    distinct = texts(n // copies + 1)
    rows = [{"id": i, "text": distinct[(i * 7919) % len(distinct)], "source": f"feed-{i % 3}"} for i in range(n)]
    rows[7]["text"], rows[11]["text"] = "", None
    return write_rows(path, rows)


def score(*args):
    return finsent("score", *args, "--no-progress")


def same_rows(merged, whole):
    """Row for row the same; the scores within float noise (the shards' batches differ)."""
    assert len(merged) == len(whole)
    for a, b in zip(merged, whole):
        assert list(a) == list(b)
        for column in a:
            if column in ("score", "p_negative", "p_neutral", "p_positive") and a[column] not in ("", None):
                assert abs(float(a[column]) - float(b[column])) < 1e-6, (a, b)
            else:
                assert a[column] == b[column], (column, a, b)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_the_shards_merged_are_the_unsharded_output_row_for_row(triton, tmp_path, suffix):
    news = tmp_path / f"news{suffix}"
    rows = write_news(news, 600)
    whole = score(news, "-o", tmp_path / f"whole{suffix}", "--chunk-size", 50, "--url", triton.grpc_url)
    assert whole.returncode == 0, whole.stderr
    parts = [tmp_path / f"part-{k}{suffix}" for k in range(3)]
    numbers = []
    for k, part in enumerate(parts):
        run = score(news, "-o", part, "--shard", f"{k}/3", "--chunk-size", 50, "--url", triton.grpc_url)
        assert run.returncode == 0, run.stderr
        assert f"(shard {k}/3: " in run.stdout and "of 600 input rows)" in run.stdout, run.stdout
        shard_rows = read_output(part)
        assert 100 < len(shard_rows) < 300  # each shard does its part of the work
        numbers += [int(r["input_row"]) for r in shard_rows]
        # every copy of a text is in the same shard (de-duplication within a shard is across the input)
        others = {r["text"] for p in parts[:k] for r in read_output(p)}
        assert not others & {r["text"] for r in shard_rows if r["text"]}
    assert sorted(numbers) == list(range(600))  # each row in exactly one shard
    merged = finsent("merge", *reversed(parts), "-o", tmp_path / f"merged{suffix}")
    assert merged.returncode == 0 and "600 rows from 3 shard outputs" in merged.stdout, merged.stderr
    same_rows(read_output(tmp_path / f"merged{suffix}"), read_output(tmp_path / f"whole{suffix}"))
    check_scored(triton, rows, read_output(tmp_path / f"merged{suffix}"), bad=(7, 11))

    missing = finsent("merge", parts[0], parts[2], "-o", tmp_path / f"short{suffix}")
    assert (
        missing.returncode == 2 and missing.stderr == "error: shard 1/3 is missing (the outputs are shards 0/3, 2/3)\n"
    ), missing.stderr
    for part in parts:  # outputs copied without their records: the row numbers tell
        part.with_name(part.name + ".finsent.json").unlink()
    missing = finsent("merge", parts[0], parts[2], "-o", tmp_path / f"short{suffix}")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "the shard outputs do not add up to the input: row " in missing.stderr
    assert not (tmp_path / f"short{suffix}").exists() and not list(tmp_path.glob("short*"))


def one_row_in_four_shards(triton, tmp_path, suffix):
    write_input(tmp_path / f"one{suffix}", 1)
    outputs = [tmp_path / f"p{k}{suffix}" for k in range(4)]
    for k, out in enumerate(outputs):
        assert (
            score(tmp_path / f"one{suffix}", "-o", out, "--shard", f"{k}/4", "--url", triton.grpc_url).returncode == 0
        )
    return outputs


def test_a_shard_that_owns_no_row_still_writes_its_output(triton, tmp_path):
    outputs = one_row_in_four_shards(triton, tmp_path, ".parquet")
    merged = finsent("merge", *outputs, "-o", tmp_path / "one.scored.parquet")
    assert merged.returncode == 0 and "1 rows" in merged.stdout, merged.stderr


@pytest.mark.parametrize("value", ["3/3", "-1/2", "1", "a/b", "0/0"])
def test_a_shard_that_is_not_k_of_n_is_one_clear_error(value, tmp_path):
    write_input(tmp_path / "in.csv", 3)
    run = score(tmp_path / "in.csv", f"--shard={value}")
    assert run.returncode == 2 and "must be K/N with 0 <= K < N" in run.stderr, run.stderr
    assert not list(tmp_path.glob("in.scored*"))


def test_shards_resume_independently_after_a_kill(triton, tmp_path):
    news = tmp_path / "news.jsonl"
    rows = write_news(news, 3000, copies=1)
    outs = [tmp_path / f"part-{k}.jsonl" for k in range(2)]
    records = [out.with_name(out.name + ".partial.json") for out in outs]

    def done(k):
        return rows_recorded(records[k].read_text)

    procs = [start_score(news, "-o", outs[k], "--shard", f"{k}/2", url=triton.grpc_url) for k in range(2)]
    kill_after(procs, [lambda: done(0), lambda: done(1)], 30)
    assert all(30 <= done(k) < 1400 for k in range(2)) and not any(o.exists() for o in outs), "kill mid-file"
    # Shard 1 resumes alone; shard 0 stays half done until it is run again, and is not disturbed.
    left = records[0].read_text()
    again = score(news, "-o", outs[1], "--shard", "1/2", "--chunk-size", "300", "--url", triton.grpc_url)
    assert again.returncode == 0 and "(resumed after " in again.stdout, again.stderr
    assert records[0].read_text() == left and not outs[0].exists()
    again = score(news, "-o", outs[0], "--shard", "0/2", "--chunk-size", "300", "--url", triton.grpc_url)
    assert again.returncode == 0 and "(resumed after " in again.stdout, again.stderr
    # A shard's partial output is not another shard's to resume.
    wrong = score(news, "-o", outs[0], "--shard", "1/2", "--url", triton.grpc_url)
    assert wrong.returncode == 2 and "different input, column, model or shard" in wrong.stderr, wrong.stderr
    assert finsent("merge", *outs, "-o", tmp_path / "merged.jsonl").returncode == 0
    check_scored(triton, rows, read_output(tmp_path / "merged.jsonl"), bad=(7, 11))
