"""Issue 17: `finsent score` that fails before its first row leaves nothing behind (the corrected
rerun needs no --overwrite); a column the input lacks is refused at once for every format;
JSONL output keeps non-ASCII text as it is."""

import json

import pytest

from tests.client.test_cli import finsent, write_input


def leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if ".scored" in p.name)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_missing_column_is_refused_at_once_for_every_format(triton, tmp_path, suffix):
    news = tmp_path / f"news{suffix}"
    write_input(news, 20)
    run = finsent("score", news, "--column", "headline", "--no-progress", "--url", triton.grpc_url)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: {news} has no column 'headline'; columns: ['id', 'text', 'source']"
    ], run.stderr
    assert leftovers(tmp_path) == []


def test_a_run_that_fails_before_its_first_row_leaves_nothing_behind(triton, tmp_path):
    news = tmp_path / "news.jsonl"
    write_input(news, 20)
    wrong = finsent("score", news, "-m", "nope", "--no-progress", "--url", triton.grpc_url)
    assert wrong.returncode == 1 and "'nope' is not served" in wrong.stderr, wrong.stderr
    assert leftovers(tmp_path) == []
    right = finsent("score", news, "--no-progress", "--url", triton.grpc_url)
    assert right.returncode == 0 and "20 rows" in right.stdout, right.stderr


def test_jsonl_output_keeps_non_ascii_text(triton, tmp_path):
    news = tmp_path / "news.jsonl"
    news.write_text(
        json.dumps({"text": "Le bénéfice a augmenté de 12 € ."}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    run = finsent("score", news, "--no-progress", "--url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    line = (tmp_path / "news.scored.jsonl").read_text(encoding="utf-8")
    assert "bénéfice a augmenté de 12 €" in line and json.loads(line)["text"] == "Le bénéfice a augmenté de 12 € ."
