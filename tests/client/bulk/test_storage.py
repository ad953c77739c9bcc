"""finsent.bulk.storage (issue 19): `finsent score` and `finsent merge` on gs:// paths, against a local Cloud Storage
emulator (gcp-storage-emulator, from PyPI; no network): streaming in and out, sharded, resumed
after a kill."""

import os
import subprocess
import sys
import time

import fsspec
import pytest

from server.triton import free_ports
from tests.client.bulk.test_job import (
    check_scored,
    kill_after,
    read_output,
    rows_recorded,
    start_score,
    write_input,
)
from tests.client.bulk.test_shards import write_news
from tests.client.test_cli import finsent


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    (port,) = free_ports(1)
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "start",
                "--port",
                str(port),
                "--in-memory",
                "--default-bucket",
                "news",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    env = {
        "STORAGE_EMULATOR_HOST": f"http://localhost:{port}",
        "FSSPEC_GCS_TOKEN": "anon",  # no credentials to look for
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }  # the emulator has no storage-control API
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    deadline = time.monotonic() + 30
    while True:
        try:
            fsspec.filesystem("gcs", skip_instance_cache=True).ls("news")
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the emulator did not start: {log.read_text()}")
            time.sleep(0.2)
    yield fsspec.filesystem("gcs")
    proc.terminate()
    proc.wait(10)
    for k, v in old.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def put(gcs, local, url):
    gcs.pipe(url, local.read_bytes())


def get(gcs, url, local):
    local.write_bytes(gcs.cat(url))
    return read_output(local)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_gs_input_and_output_score_and_merge_as_local_files_do(triton, emulator, tmp_path, suffix):
    rows = write_news(tmp_path / f"news{suffix}", 400)
    put(emulator, tmp_path / f"news{suffix}", f"gs://news/{suffix[1:]}/news{suffix}")
    base = f"gs://news/{suffix[1:]}"
    whole = finsent("score", f"{base}/news{suffix}", "--chunk-size", 64, "--no-progress", "--url", triton.grpc_url)
    assert whole.returncode == 0, whole.stderr
    assert f"wrote {base}/news.scored{suffix}: 400 rows" in whole.stdout
    check_scored(triton, rows, get(emulator, f"{base}/news.scored{suffix}", tmp_path / f"whole{suffix}"), bad=(7, 11))
    listing = sorted(p.rsplit("/", 1)[1] for p in emulator.ls(base, refresh=True))
    assert listing == sorted([f"news.scored{suffix}", f"news.scored{suffix}.finsent.json", f"news{suffix}"])
    for k in range(2):
        run = finsent(
            "score",
            f"{base}/news{suffix}",
            "-o",
            f"{base}/part-{k}{suffix}",
            "--shard",
            f"{k}/2",
            "--chunk-size",
            64,
            "--no-progress",
            "--url",
            triton.grpc_url,
        )
        assert run.returncode == 0, run.stderr
    merged = finsent("merge", f"{base}/part-*{suffix}", "-o", f"{base}/merged{suffix}")  # expanded by merge
    assert merged.returncode == 0 and "400 rows" in merged.stdout, merged.stderr
    check_scored(triton, rows, get(emulator, f"{base}/merged{suffix}", tmp_path / f"merged{suffix}"), bad=(7, 11))
    again = finsent("score", f"{base}/news{suffix}", "--no-progress", "--url", triton.grpc_url)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_gs_output_resumes_after_a_kill(triton, emulator, tmp_path, suffix):
    rows = write_input(tmp_path / f"in{suffix}", 2000)
    base = f"gs://news/resume{suffix[1:]}"
    put(emulator, tmp_path / f"in{suffix}", f"{base}/in{suffix}")
    out, record = f"{base}/out{suffix}", f"{base}/out{suffix}.partial.json"
    proc = start_score(f"{base}/in{suffix}", "-o", out, url=triton.grpc_url)
    [done] = kill_after([proc], [lambda: rows_recorded(lambda: emulator.cat(record))], 30, timeout_s=90, poll_s=0.05)
    emulator.invalidate_cache()
    assert 30 <= done < len(rows) and not emulator.exists(out), "the kill must land mid-file"
    # A part uploaded after the last progress record (killed before the record) is dropped on resume.
    emulator.pipe(f"{base}/out{suffix}.partial/part-999999{suffix}", b'999999,"half a row')
    resumed = finsent(
        "score", f"{base}/in{suffix}", "-o", out, "--chunk-size", "10", "--url", triton.grpc_url, "--no-progress"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "2000 rows (resumed after " in resumed.stdout, resumed.stdout
    check_scored(triton, rows, get(emulator, out, tmp_path / f"out{suffix}"))
    emulator.invalidate_cache()
    assert not emulator.exists(f"{base}/out{suffix}.partial") and not emulator.exists(record)


def test_a_missing_gs_input_is_one_clear_error(emulator, tmp_path):
    run = finsent("score", "gs://news/nothing.csv", "--no-progress")
    assert run.returncode == 2 and run.stderr == "error: gs://news/nothing.csv: no such file\n", run.stderr
