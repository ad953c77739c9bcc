"""Issue 17: `python -m server.health` says which port it needs and what it checked."""

import subprocess
import sys
from pathlib import Path

from export.facts import FAMILIES
from finsent import address
from server.health import DEFAULT_MODELS, HTTP_PORT
from server.triton import free_ports

ROOT = Path(__file__).resolve().parents[2]


def health(*args):
    return subprocess.run(
        [sys.executable, "-m", "server.health", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_a_healthy_run_says_what_it_checked(triton):
    run = health("--url", triton.http_url)
    assert run.returncode == 0 and run.stderr == ""
    assert run.stdout == f"ok: finbert, distilbert classified a text at http://{triton.http_url}\n"


def test_the_grpc_port_is_named_in_one_line(triton):
    run = health("--url", triton.grpc_url)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.splitlines() == [
        f"error: http://{triton.grpc_url} does not speak HTTP (its answer is not an "
        "HTTP response): is it the gRPC port? --url needs Triton's HTTP port "
        "(8000 under make serve)"
    ]


def test_nothing_listening_is_one_line():
    port = free_ports(1)[0]
    run = health("--url", f"localhost:{port}")
    assert run.returncode == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"error: nothing answers at http://localhost:{port}")


def test_the_probes_know_every_family():
    # server/health.py runs alone in the image (standard library only), so it keeps its own list.
    assert DEFAULT_MODELS == tuple(FAMILIES)


def test_the_probes_default_port_is_tritons():
    # Its own copy too (standard library only), kept equal to the one the clients and the server read.
    assert HTTP_PORT == address.HTTP_PORT
