"""finsent.bulk.job: `finsent score` as users run it (a subprocess), against the session's tritonserver:
every row with its prediction or error, refusals before anything is written, resume after a kill,
a run that fails before its first row leaves nothing behind (issue 17). The helpers here write
inputs and check outputs for the other bulk tests."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finsent import Client, Prediction
from finsent.bulk.errors import ScoreError
from finsent.bulk.job import score_file
from finsent.errors import UnavailableError
from finsent.results import Failure, ModelInfo
from tests.client.test_cli import ROOT, finsent

ADDED = ["label", "score", "p_negative", "p_neutral", "p_positive", "net", "error"]


def start_score(*args, url: str) -> subprocess.Popen:
    """`finsent score ARGS` in chunks of 10, in the background: a run slow enough to kill mid-file."""
    command = [sys.executable, "-m", "finsent", "score", *map(str, args), "--chunk-size", "10", "--url", url]
    return subprocess.Popen([*command, "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rows_recorded(read) -> int:
    """The rows a progress record (read() -> its text) says are written; 0 while missing or half-written."""
    try:
        return json.loads(read())["rows"]
    except (OSError, ValueError):
        return 0


def kill_after(procs: list[subprocess.Popen], progress: list, rows: int, timeout_s: float = 60, poll_s: float = 0.01):
    """SIGKILL `procs` once each one's progress() (rows_recorded) reaches `rows`, one of them exits or
    timeout_s passes; returns the last counts, for the test to check that the kill landed mid-file."""
    deadline, done = time.monotonic() + timeout_s, [0] * len(procs)
    while time.monotonic() < deadline and all(p.poll() is None for p in procs) and min(done) < rows:
        done = [read() for read in progress]
        time.sleep(poll_s)
    for proc in procs:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return done


def texts(n):
    return [
        f"Row {i}: quarterly revenue {'increased' if i % 3 else 'dropped'} by {i % 89} percent"
        + " year on year" * (i % 4)
        for i in range(n)
    ]


def write_input(path: Path, n: int, bad: dict | None = None):
    """Rows {id, text, source}; `bad` replaces some texts (None: missing value)."""
    rows = [{"id": i, "text": t, "source": f"feed-{i % 3}"} for i, t in enumerate(texts(n))]
    for i, text in (bad or {}).items():
        rows[i]["text"] = text
    return write_rows(path, rows)


def write_rows(path: Path, rows: list[dict]):
    n = len(rows)
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["id", "text", "source"])
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=max(1, n // 7))
    return rows


def read_output(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            return [{**r, "id": int(r["id"])} for r in csv.DictReader(f)]
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return pq.read_table(path).to_pylist()


def expected(triton, rows):
    good = [r["text"] for r in rows if isinstance(r["text"], str) and r["text"].strip()]
    with Client(triton.grpc_url) as client:
        return dict(zip(good, client.classify(good)))


def check_scored(triton, rows, out_rows, bad=()):
    assert [r["id"] for r in out_rows] == [r["id"] for r in rows]  # each row once, in order
    assert list(out_rows[0])[:3] == ["id", "text", "source"] and list(out_rows[0])[3:] == ADDED
    want = expected(triton, rows)
    for row, out in zip(rows, out_rows):
        assert out["source"] == row["source"]
        if row["id"] in bad:
            assert out["error"] and out["label"] in ("", None), out
            continue
        p: Prediction = want[row["text"]]
        assert out["label"] == p.label and out["error"] in ("", None)
        assert abs(float(out["score"]) - p.score) < 1e-6
        assert abs(float(out["p_negative"]) - p.probabilities["negative"]) < 1e-6


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_score_writes_every_row_with_its_prediction_or_error(triton, tmp_path, suffix):
    bad = {5: "   ", 11: None}
    rows = write_input(tmp_path / f"in{suffix}", 150, bad if suffix != ".csv" else {5: "   ", 11: ""})
    out = tmp_path / f"out{suffix}"
    run = finsent("score", tmp_path / f"in{suffix}", "-o", out, "--chunk-size", 40, "--url", triton.grpc_url)
    assert run.returncode == 0, run.stderr
    assert "150 rows" in run.stdout and "2 failures" in run.stdout and "texts/s" in run.stdout
    assert "labels: " in run.stdout and "texts/s" in run.stderr  # the progress bar
    out_rows = read_output(out)
    check_scored(triton, rows, out_rows, bad=bad)
    assert out_rows[5]["error"] == "text is empty or whitespace only"
    assert not list(tmp_path.glob("*.partial*"))
    if suffix == ".parquet":
        assert pq.ParquetFile(out).num_row_groups == 4  # one row group per chunk
    again = finsent("score", tmp_path / f"in{suffix}", "-o", out, "--url", triton.grpc_url)
    assert again.returncode == 0 and "already complete" in again.stdout


def test_score_error_column_names_each_bad_row_as_the_docs_do(triton, tmp_path):
    """The exact `error` values (docs/client.md): not-a-string values in the gateway's words."""
    lines = [
        '{"text": "Profit rose 12%."}',
        '{"text": 5}',
        '{"text": true}',
        '{"text": ["a"]}',
        '{"text": null}',
        '{"id": 6}',
        '{"text": "   "}',
        "not json",
        "[1, 2]",
        "",
        '{"text": "Shares fell."}',
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    run = finsent(
        "score", tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl", "--no-progress", "--url", triton.grpc_url
    )
    assert run.returncode == 0 and "10 rows, 8 failures" in run.stdout, run.stdout + run.stderr
    rows = read_output(tmp_path / "out.jsonl")
    assert [r["error"] for r in rows] == [
        None,
        'text: "text" must be a string, got int',
        'text: "text" must be a string, got bool',
        'text: "text" must be a string, got list',
        "text: no value in column 'text'",
        "text: no value in column 'text'",
        "text is empty or whitespace only",
        "text: line 8 is not JSON (Expecting value: line 1 column 1 (char 0))",
        "text: line 9 is not a JSON object",
        None,
    ]
    assert rows[1]["text"] == 5 and rows[0]["label"] and rows[9]["label"] and rows[1]["label"] is None


def test_score_parquet_text_column_types(triton, tmp_path):
    pq.write_table(
        pa.table({"text": pa.array([b"Profit rose 12%.", b"caf\xe9"]), "n": [1, 2]}), tmp_path / "in.parquet"
    )
    run = finsent(
        "score", tmp_path / "in.parquet", "-o", tmp_path / "out.parquet", "--no-progress", "--url", triton.grpc_url
    )
    assert run.returncode == 0, run.stderr
    rows = read_output(tmp_path / "out.parquet")  # a binary column is sent as it is
    assert rows[0]["label"] == expected(triton, [{"text": "Profit rose 12%."}])["Profit rose 12%."].label
    assert rows[1]["error"].startswith("text is not valid UTF-8")
    run = finsent(
        "score",
        tmp_path / "in.parquet",
        "-o",
        tmp_path / "n.parquet",
        "--column",
        "n",
        "--no-progress",
        "--url",
        triton.grpc_url,
    )
    assert run.returncode == 0 and "2 failures" in run.stdout
    assert [r["error"] for r in read_output(tmp_path / "n.parquet")] == ['text: "n" must be a string, got int'] * 2


def test_score_keeps_bytes_that_are_not_utf8_and_reports_them(triton, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b"id,text\n0,Profit rose 12%.\n1,caf\xe9 sales fell\n2,Shares fell.\n")
    out = tmp_path / "out.csv"
    run = finsent("score", source, "-o", out, "--url", triton.grpc_url, "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "1 failures" in run.stdout
    raw = out.read_bytes()
    assert b"caf\xe9 sales fell" in raw  # the original bytes, unchanged
    rows = read_output(out)
    assert rows[1]["error"].startswith("text is not valid UTF-8") and rows[0]["label"] and rows[2]["label"]


def test_score_refuses_a_missing_column_or_a_clash(triton, tmp_path):
    write_input(tmp_path / "in.csv", 5)
    run = finsent(
        "score", tmp_path / "in.csv", "-o", tmp_path / "o.csv", "--column", "headline", "--url", triton.grpc_url
    )
    assert run.returncode == 2 and "no column 'headline'" in run.stderr
    (tmp_path / "clash.jsonl").write_text(json.dumps({"text": "Profit rose.", "label": "gold"}) + "\n")
    run = finsent("score", tmp_path / "clash.jsonl", "-o", tmp_path / "o.jsonl", "--url", triton.grpc_url)
    assert run.returncode == 2 and "--prefix" in run.stderr
    run = finsent(
        "score", tmp_path / "clash.jsonl", "-o", tmp_path / "o.jsonl", "--prefix", "finsent_", "--url", triton.grpc_url
    )
    assert run.returncode == 0 and read_output(tmp_path / "o.jsonl")[0]["label"] == "gold"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_score_refuses_to_write_over_its_input(triton, tmp_path, overwrite):
    write_input(tmp_path / "in.csv", 5)
    (tmp_path / "link.csv").symlink_to(tmp_path / "in.csv")
    before = (tmp_path / "in.csv").read_bytes()
    for output in (tmp_path / "in.csv", tmp_path / "sub" / ".." / "in.csv", tmp_path / "link.csv"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        run = finsent("score", tmp_path / "in.csv", "-o", output, *overwrite, "--url", triton.grpc_url)
        assert run.returncode == 2 and f"{output} is the input file" in run.stderr, run.stderr
        assert (tmp_path / "in.csv").read_bytes() == before and (tmp_path / "link.csv").is_symlink()


def test_a_complete_output_counts_only_for_the_job_that_wrote_it(triton, tmp_path):
    news, other, out = tmp_path / "news.csv", tmp_path / "other.csv", tmp_path / "news.scored.csv"
    write_input(news, 30, {4: ""})
    write_input(other, 12)
    (tmp_path / "headline.csv").write_text("headline\nProfit rose.\n")
    score = lambda source, *args: finsent("score", source, "-o", out, "--no-progress", "--url", triton.grpc_url, *args)
    assert score(news).returncode == 0
    scored = out.read_bytes()
    again = score(news)
    assert again.returncode == 0 and f"{out} is already complete (30 rows, 1 failures); nothing to do" in again.stdout
    for source, args in (
        (other, []),
        (news, ["-m", "distilbert"]),
        (tmp_path / "headline.csv", ["--column", "headline"]),
    ):
        run = score(source, *args)
        assert (
            run.returncode == 2
            and f"{out} was scored from a different input, column or model ({news}, "
            f"column 'text', model 'finbert'); use --overwrite"
            in run.stderr
        ), run.stderr
    news.write_text(news.read_text() + "30,Shares fell.,feed-0\n")  # the same input, changed since
    assert score(news).returncode == 2
    assert out.read_bytes() == scored
    rescored = score(news, "--overwrite")
    assert rescored.returncode == 0 and "31 rows" in rescored.stdout
    # Stopped between writing OUTPUT and keeping its record: the next run keeps it and is done.
    os.replace(tmp_path / "news.scored.csv.finsent.json", tmp_path / "news.scored.csv.partial.json")
    resumed = score(news)
    assert resumed.returncode == 0 and "already complete (31 rows" in resumed.stdout
    assert not list(tmp_path.glob("*.partial*"))
    # An OUTPUT that no run of finsent score wrote (or one of a version without the record) is not "complete".
    (tmp_path / "news.scored.csv.finsent.json").unlink()
    foreign = score(news)
    assert foreign.returncode == 2 and "already exists without news.scored.csv.finsent.json" in foreign.stderr


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_score_refuses_a_chunk_size_below_one(triton, tmp_path, suffix):
    write_input(tmp_path / f"in{suffix}", 5)
    for size in ("0", "-5", "1.5"):
        run = finsent(
            "score",
            tmp_path / f"in{suffix}",
            "-o",
            tmp_path / f"out{suffix}",
            "--chunk-size",
            size,
            "--url",
            triton.grpc_url,
        )
        assert run.returncode == 2 and f"--chunk-size: must be a whole number, 1 or more, got '{size}'" in run.stderr
        assert "Traceback" not in run.stderr and not list(tmp_path.glob("out*"))
    with Client(triton.grpc_url) as client, pytest.raises(ScoreError, match="chunk_size must be 1 or more, got 0"):
        score_file(client, tmp_path / f"in{suffix}", tmp_path / f"out{suffix}", chunk_size=0)
    assert not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_score_resumes_after_a_kill_and_writes_each_row_exactly_once(triton, tmp_path, suffix):
    rows = write_input(tmp_path / f"in{suffix}", 2000)
    out = tmp_path / f"out{suffix}"
    record = tmp_path / f"out{suffix}.partial.json"
    proc = start_score(tmp_path / f"in{suffix}", "-o", out, url=triton.grpc_url)
    [done] = kill_after([proc], [lambda: rows_recorded(record.read_text)], 30)
    assert 30 <= done < len(rows) and not out.exists(), "the kill must land mid-file"
    if suffix != ".parquet":  # a torn append after the last progress record: dropped on resume
        with open(tmp_path / f"out{suffix}.partial", "ab") as f:
            f.write(b'999999,"half a row')
    resumed = finsent(
        "score", tmp_path / f"in{suffix}", "-o", out, "--chunk-size", "500", "--url", triton.grpc_url, "--no-progress"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "2000 rows (resumed after " in resumed.stdout
    check_scored(triton, rows, read_output(out))


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


# -- The job's phases with a stand-in client: any object with `info` and `classify` (no server). --------
class StandIn:
    """A client that answers from the text itself (its length picks the label), counts what it is sent,
    and, when `down_after` chunks have been answered, is down (UnavailableError), as a server past the
    client's retries is."""

    def __init__(self, labels=("negative", "neutral", "positive"), down_after=None):
        self.info = ModelInfo(name="standin", max_batch_size=64, labels=tuple(labels))
        self.sent, self.calls, self.down_after = [], 0, down_after

    def classify(self, texts, on_error="raise"):
        if self.down_after is not None and self.calls >= self.down_after:
            raise UnavailableError("standin: down")
        self.calls += 1
        self.sent.extend(texts)
        return [self.predict(i, t) for i, t in enumerate(texts)]

    def predict(self, i, text):
        if not text.strip():
            return Failure(i, "is empty or whitespace only")
        p = [0.1, 0.1, 0.1]
        p[len(text) % 3] = 0.8
        probabilities = dict(zip(self.info.labels, p))
        label = max(probabilities, key=probabilities.get)
        return Prediction(label, probabilities[label], probabilities)


def scored_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_each_distinct_text_is_sent_once_and_every_copy_gets_its_result(tmp_path):
    rows = [{"id": i, "text": f"headline {i % 7}" + " up" * (i % 2)} for i in range(100)]
    with open(tmp_path / "in.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    client = StandIn()
    summary = score_file(client, tmp_path / "in.csv", tmp_path / "out.csv", chunk_size=9, progress_bar=False)
    assert sorted(client.sent) == sorted({r["text"] for r in rows})  # across chunks too
    out = scored_rows(tmp_path / "out.csv")
    assert [r["id"] for r in out] == [str(r["id"]) for r in rows] and summary.rows == 100
    for row in out:
        assert row["label"] == client.predict(0, row["text"]).label


def test_the_probability_columns_follow_the_servers_label_order(tmp_path):
    write_input(tmp_path / "in.csv", 5)
    client = StandIn(labels=("positive", "negative", "neutral"))  # FinBERT's order, not the columns'
    score_file(client, tmp_path / "in.csv", tmp_path / "out.csv", progress_bar=False)
    for row in scored_rows(tmp_path / "out.csv"):
        expected = client.predict(0, row["text"]).probabilities
        assert {k: float(row[f"p_{k}"]) for k in expected} == pytest.approx(expected)


def test_a_server_that_goes_down_stops_the_run_and_a_rerun_resumes_it(tmp_path):
    rows = write_input(tmp_path / "in.csv", 50)
    with pytest.raises(UnavailableError):
        score_file(StandIn(down_after=3), tmp_path / "in.csv", tmp_path / "out.csv", chunk_size=7, progress_bar=False)
    assert not (tmp_path / "out.csv").exists() and rows_recorded((tmp_path / "out.csv.partial.json").read_text) == 21
    client = StandIn()
    summary = score_file(client, tmp_path / "in.csv", tmp_path / "out.csv", chunk_size=7, progress_bar=False)
    assert len(client.sent) == 50 - 21 and summary.rows == 50  # only the rows not yet written
    assert [r["id"] for r in scored_rows(tmp_path / "out.csv")] == [str(r["id"]) for r in rows]
