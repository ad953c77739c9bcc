"""The chart's readOnlyRootFilesystem: tritonserver and its Python backend run with only /tmp and
/dev/shm writable (the chart's two emptyDirs), the repository read-only like the image's /models.

The read-only root is a private mount namespace (unshare -m, root only): what the kubelet gives
the container, minus the image. Triton here is pytriton's build of the same version as the image.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from model_repository.assemble import TargetOptions, assemble
from server import health
from server.stack import stub_pids
from server.triton import Ports, TritonServer, free_ports

ROOT = Path(__file__).resolve().parents[2]


def namespaces_work() -> str | None:
    """Why a read-only root cannot be made here (None: it can)."""
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(
        read_only_root(["sh", "-c", "! touch /.finsent-ro 2>/dev/null"]), capture_output=True, text=True
    )
    return None if probe.returncode == 0 else f"cannot make a read-only root mount: {probe.stderr.strip()[:200]}"


def read_only_root(command: list[str], read_only=()) -> list[str]:
    """`command` in a mount namespace where / and `read_only` (dirs under /tmp) are read-only."""
    script = "mount --bind /tmp /tmp" + "".join(
        f" && mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}'" for d in read_only
    )
    return [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script + ' && mount -o remount,bind,ro / && exec "$@"',
        "sh",
        *command,
    ]


@dataclasses.dataclass
class ReadOnlyRootServer(TritonServer):
    """tritonserver with a read-only root and repository (like the image's /models); /tmp and /dev/shm writable."""

    def command(self) -> list[str]:
        # super() prepares the backends directory while / is still writable (the image has it).
        return read_only_root(super().command(), [str(Path(self.model_repository).resolve())])


@pytest.fixture
def readonly_server(exports, tmp_path):
    reason = namespaces_work()
    if reason:
        pytest.skip(reason)
    assert str(tmp_path).startswith("/tmp/"), "the test's files must sit in the writable /tmp"
    repository = assemble(exports, tmp_path / "repository", TargetOptions("local"))
    server = ReadOnlyRootServer(
        repository,
        Ports(*free_ports()),
        work_dir=tmp_path / "triton",
        log_path=tmp_path / "triton" / "tritonserver.log",
        control_mode="explicit",
        admin_key=secrets.token_urlsafe(16),
    )
    server.start()
    yield server
    server.stop(timeout_s=3)


def mount_options(pid: int, target: str) -> set[str]:
    """Options of the mount a process sees at `target` (the last one mounted there wins)."""
    options = set()
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == target:
            options = set(fields[5].split(","))
    return options


def test_triton_serves_and_heals_with_a_read_only_root(readonly_server):
    pid = readonly_server.process.pid
    assert "ro" in mount_options(pid, "/")  # really read-only
    assert "ro" in mount_options(pid, str(Path(readonly_server.model_repository).resolve()))
    assert "rw" in mount_options(pid, "/tmp") and "rw" in mount_options(pid, "/dev/shm")
    triton = health.Triton(readonly_server.http_url, readonly_server.admin_key)
    assert health.check(triton, ["finbert", "distilbert"]) == {}
    # A stub respawned by the repair (unload/load) also starts without a writable root.
    (stub,) = stub_pids(readonly_server, "finbert_tokenizer")
    os.kill(stub, signal.SIGKILL)
    time.sleep(0.5)
    errors = health.check(triton, ["finbert"])
    assert "finbert" in errors
    assert health.heal(triton, errors, log=lambda *_: None) == {}
    assert stub_pids(readonly_server, "finbert_tokenizer") not in ([], [stub])
    log = Path(readonly_server.log_path).read_text(errors="replace")
    assert "Read-only file system" not in log


def test_the_gateway_serves_with_a_read_only_root(readonly_server):
    port = free_ports(1)[0]
    env = {**os.environ, "TRITON_URL": readonly_server.grpc_url}
    proc = subprocess.Popen(
        read_only_root([sys.executable, "-m", "finsent", "gateway", "--port", str(port)]),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert "ro" in mount_options(proc.pid, "/")
        resp = httpx.post(
            f"http://127.0.0.1:{port}/v1/classify", json={"texts": ["Profit rose.", "Sales fell."]}, timeout=10
        )
        assert resp.status_code == 200 and len(resp.json()["predictions"]) == 2
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    assert "Read-only file system" not in output
