"""Building Triton's native onnxruntime backend (server/native_backend.py): cached, and one clear error
line when it cannot be built. The build itself runs for real in the session fixtures (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server import native_backend
from server.triton import free_ports

ROOT = Path(__file__).resolve().parents[2]


def test_the_build_is_cached(container, monkeypatch):
    # The session's container server built it (or found it); asking again rebuilds nothing: no
    # toolchain check, no sources, no log line, the library untouched.
    def rebuilt(*_):
        raise AssertionError("the cached build was rebuilt")

    monkeypatch.setattr(native_backend, "_check_tools", rebuilt)
    monkeypatch.setattr(native_backend, "sources", rebuilt)
    library = native_backend.DEFAULT_WORK.resolve() / "onnxruntime" / native_backend.LIBRARY
    before, lines = library.stat().st_mtime_ns, []
    built = native_backend.build(log=lines.append)
    assert built / native_backend.LIBRARY == library and library.stat().st_mtime_ns == before and lines == []
    assert (built / f"libonnxruntime.so.{native_backend.ORT_VERSION}").exists()


def test_no_sources_and_no_network_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSENT_TRITON_SRC", str(tmp_path / "empty"))
    # Where GitHub would be: a port nothing listens on, so the test does not depend on the network.
    monkeypatch.setattr(native_backend, "GITHUB_SOURCE", "http://127.0.0.1:9/{repo}.tar.gz")
    with pytest.raises(native_backend.BuildError) as info:
        native_backend.build(tmp_path / "native", log=lambda *_: None)
    message = str(info.value)
    assert "FINSENT_TRITON_SRC" in message and "could not be downloaded" in message
    assert "\n" not in message


def test_a_missing_toolchain_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no cmake, no g++
    with pytest.raises(native_backend.BuildError, match="missing for the build: cmake, g\\+\\+.*make setup"):
        native_backend.build(tmp_path / "native", log=lambda *_: None)


def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", "--finbert", "", "--target", "container", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_serve_container_without_sources_fails_in_one_line(tmp_path):
    http, grpc, metrics = free_ports()
    done = serve(
        "--device",
        "gpu",
        "--build",
        str(tmp_path),
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        env={"FINSENT_TRITON_SRC": str(tmp_path / "none"), "FINSENT_TRITON_GITHUB": "http://127.0.0.1:9"},
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "FINSENT_TRITON_SRC" in errors[0], done.stderr


def test_serve_container_names_a_taken_port_before_building(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        done = serve("--device", "gpu", "--build", str(tmp_path), f"--http-port={port}")
    assert done.returncode == 2
    assert f"HTTP port {port} is already in use" in done.stderr
    assert not (tmp_path / "native").exists(), "nothing is built for a server that cannot start"


def test_serve_container_with_no_export_says_how_to_get_one(tmp_path):
    http, grpc, metrics = free_ports()
    done = serve(
        "--distilbert",
        str(tmp_path / "no-such-checkpoint"),
        "--build",
        str(tmp_path),
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
    )
    assert done.returncode == 2
    assert "error: no model to serve" in done.stderr
