"""The finsent CLI as users run it (a subprocess), against the session's tritonserver."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from finsent import Client
from server.triton import free_ports

ROOT = Path(__file__).resolve().parents[2]


# A deadline for a hang, not a speed: the gs:// resume scores 2,000 rows in chunks of 10 through the
# storage emulator, which took up to 119 s on 2 cores beside other work.
def finsent(*args, stdin=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "finsent", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_classify_prints_a_table_or_json(triton):
    args = ["--url", triton.grpc_url]
    table = finsent("classify", "Profit rose 12%.", "Shares fell.", *args)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["text", "label", "score"] and lines[0].split()[3:] == [
        "negative",
        "neutral",
        "positive",
        "net",
    ]
    assert len(lines) == 3
    out = finsent(
        "classify",
        "--json",
        "--protocol",
        "http",
        "--url",
        triton.http_url,
        "--model",
        "distilbert",
        stdin="Profit rose 12%.\n\nShares fell.\n",
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    with Client(triton.grpc_url, model="distilbert") as client:
        want = client.classify(["Profit rose 12%.", "Shares fell."])
    assert rows == [{"text": t, **p.as_dict()} for t, p in zip(["Profit rose 12%.", "Shares fell."], want)]
    refused = finsent("classify", "--json", "fine", "  ", *args)
    assert refused.returncode == 1 and json.loads(refused.stdout)[1]["error"] == "text 1 is empty or whitespace only"


def test_http_to_the_grpc_port_is_an_error_not_a_traceback(triton):
    run = finsent("classify", "Profit rose 12%.", "--protocol", "http", "--url", triton.grpc_url)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"error: {triton.grpc_url} does not speak HTTP") and "gRPC port?" in run.stderr


@pytest.mark.parametrize("command", [["classify", "Profit rose."], ["models"], ["gateway", "--triton"]])
@pytest.mark.parametrize("address", ["localhost:abc", "localhost", "localhost:99999", "http://"])
def test_an_address_that_is_not_host_port_is_refused_before_any_retry(command, address):
    run = finsent(*command, *([] if command[0] == "gateway" else ["--url"]), address, timeout=60)
    assert run.returncode == 2 and f"'{address.removeprefix('http://')}' is not host:port" in run.stderr, run.stderr
    # The CLI says its first retry ("waiting for Triton ..."): none was made.
    assert "waiting for Triton" not in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_server_that_is_down_is_waited_for_out_loud(protocol):
    dead = f"localhost:{free_ports(1)[0]}"
    run = finsent("classify", "Profit rose.", "--protocol", protocol, "--url", dead, "--retries", "2")
    assert run.returncode == 1
    waiting, error = run.stderr.splitlines()
    assert waiting.startswith(f"waiting for Triton at {dead} (") and error.startswith(
        f"error: Triton at {dead} is unavailable"
    )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_models_works_against_a_server_run_as_make_serve_runs_it(restricted_triton, protocol):
    server = restricted_triton
    run = finsent("models", "--protocol", protocol, "--url", server.grpc_url if protocol == "grpc" else server.http_url)
    assert run.returncode == 0, run.stderr
    assert "waiting for Triton" not in run.stderr  # not 8-16 s of retries (the CLI says the first one)
    rows = [line.split(maxsplit=3) for line in run.stdout.splitlines()]
    assert rows == [
        ["distilbert", "-", "UNAVAILABLE", "not loaded, or not in the repository"],
        *(
            [name, "1", "READY"]
            for name in (
                "finbert",
                "finbert_background",  # background work's copy (model_repository/classes.py)
                "finbert_classifier",
                "finbert_classifier_background",
                "finbert_document",
                "finbert_postprocess",
                "finbert_tokenizer",
            )
        ),
    ]
    assert "repository index" in run.stderr and "admin key" in run.stderr


@pytest.mark.parametrize("stdin", ["", "\n  \n"])
def test_classify_without_text_says_so(triton, stdin):
    run = finsent("classify", "--url", triton.grpc_url, stdin=stdin)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == "error: no text given: pass texts as arguments, or one per line on stdin\n"


def test_serve_passes_its_arguments_to_the_local_launcher(tmp_path):
    run = finsent("serve", "--finbert", "", "--distilbert", "", "--build", tmp_path)
    assert run.returncode == 2 and "skipping finbert: no source given" in run.stderr
    assert "no model to serve" in run.stderr
