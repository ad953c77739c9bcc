"""The README's command blocks, run as written (issue 17), against `make serve` serving DistilBERT
only (the README's offline route), serving both models, and serving both as GKE does
(`make serve TARGET=container DEVICE=gpu`), so that the README cannot drift from the code. Every command of a ```bash / ```python block is run, or skipped in SKIPPED with its reason.

What is substituted, and nothing else:
- servers: `make serve FINBERT=... DISTILBERT=... VARIANT=fp32` of the session's random-weight
  checkpoints (their exports copied in, so nothing is exported again), on free ports;
- ports: `make` takes HTTP_PORT, GRPC_PORT, METRICS_PORT and GATEWAY_PORT from the environment;
  in the text of every command, localhost:8000 / :8001 / :8080 become those ports, and FINSENT_URL
  points the CLI at the gRPC port;
- folders: commands run in a folder of symlinks to this checkout whose `build` is the server's
  BUILD; `python` is this venv's (first on PATH); `news.parquet` is written there first;
- load-test length: USERS=1 and STEP_SECONDS=1 from the environment (a command line's USERS stays);
- `make gateway` runs in the background until its block ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from server import native_backend
from server.triton import free_ports

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "gateway": 8080}

# Command (its start, as in the README) -> why this test does not run it.
SKIPPED = {
    "make serve": "the servers of this test are `make serve` (of random-weight checkpoints, on free ports)",
    "make test-fast": "the test suite's fast part (tests/test_makefile.py checks what it selects)",
    "make test": "the test suite itself",
    "make finetune": "minutes of training (tests/training/test_finetune.py covers it, and its offline start)",
    "make eval": "exports and serves a real checkpoint (tests/evaluation/test_evaluate.py)",
    "k8s/cluster.sh": "needs a Google Cloud project",
    "make repository TARGET=container DEVICE=gpu": "builds the fp16 variant for a GPU image (tests/model_repository)",
    "gcloud ": "needs a Google Cloud project",
    "helm ": "needs a Kubernetes cluster",
    "kubectl ": "needs a Kubernetes cluster",
    "export HOST=": "needs a Kubernetes cluster",
    "make loadtest HOST=$HOST:8001": "needs a Kubernetes cluster",
    "make faults": "a benchmark of minutes (tests/reliability/test_faults.py)",
    "make soak": "a benchmark of minutes (tests/reliability/test_soak.py)",
}
BACKGROUND = {"make gateway": "gateway"}  # long-running: started, waited for, stopped after its block


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, commands) of each ```bash / ```python block; bash commands joined across `\\`."""
    found = []
    for language, body in re.findall(r"```(bash|python)\n(.*?)```", text, re.DOTALL):
        if language == "python":
            found.append((language, [body]))
            continue
        commands, current = [], ""
        for line in body.splitlines():
            current += line + "\n" if line.endswith("\\") else line
            if not line.endswith("\\"):
                if current.strip() and not current.lstrip().startswith("#"):
                    commands.append(current)
                current = ""
        found.append((language, commands))
    return found


def skipped(command: str) -> str | None:
    return next((why for start, why in SKIPPED.items() if command.lstrip().startswith(start)), None)


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = [c for _, cs in blocks(README.read_text()) for c in cs]
    assert len(commands) > 20
    unused = [start for start in SKIPPED if not any(c.lstrip().startswith(start) for c in commands)]
    assert not unused, f"SKIPPED names commands the README no longer has: {unused}"
    ran = [c for c in commands if not skipped(c)]
    for must in (
        "curl -s localhost:8000/v2/models/$MODEL/infer",
        "from finsent import Client",
        ".venv/bin/finsent classify",
        "make loadtest",
        "python -m server.health",
        "python -m server.perf_analyzer",
    ):
        assert any(must in c for c in ran), must


class Served:
    """`make serve` in a folder of symlinks to the checkout, as a user runs it."""

    def __init__(self, where: Path, build: Path, sources: dict[str, str], target: tuple[str, ...] = ()):
        self.where, self.build = where, build
        http, grpc, metrics, gateway = free_ports(4)
        self.ports = {"http": http, "grpc": grpc, "gateway": gateway}
        where.mkdir(parents=True)
        for entry in ROOT.iterdir():
            if entry.name not in ("build", ".venv", ".git"):
                (where / entry.name).symlink_to(entry)
        (where / ".venv").symlink_to(Path(sys.prefix))  # the venv running the tests
        (where / "build").symlink_to(build)
        env = {k: v for k, v in os.environ.items() if k not in ("FINSENT_MODEL", "FINSENT_URL", "HOST", "MODEL")}
        self.env = env | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "HTTP_PORT": str(http),
            "GRPC_PORT": str(grpc),
            "METRICS_PORT": str(metrics),
            "GATEWAY_PORT": str(gateway),
            "FINSENT_URL": f"localhost:{grpc}",
            "USERS": "1",
            "STEP_SECONDS": "1",
        }
        args = [f"{family.upper()}={source}" for family, source in sources.items()]
        self.log = open(where / "serve.log", "w")
        self.process = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "serve", *args, "VARIANT=fp32", *target],
            cwd=where,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while "finsent is serving" not in (where / "serve.log").read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, (where / "serve.log").read_text()
            time.sleep(0.5)

    def text(self, command: str) -> str:
        for name, default in DEFAULT_PORTS.items():
            command = command.replace(f"localhost:{default}", f"localhost:{self.ports[name]}")
        return command

    def run(self, language: str, command: str, timeout: int = 180) -> subprocess.CompletedProcess:
        argv = ["bash", "-c", self.text(command)] if language == "bash" else [sys.executable, "-c", self.text(command)]
        return subprocess.run(argv, cwd=self.where, env=self.env, capture_output=True, text=True, timeout=timeout)

    def background(self, command: str, port: str) -> subprocess.Popen:
        process = subprocess.Popen(
            ["bash", "-c", self.text(command)],
            cwd=self.where,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://localhost:{self.ports[port]}/healthz", timeout=1).read()
                return process
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, f"{command} did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        stop_group(self.process, signal.SIGINT, 60)
        self.log.close()


def stop_group(process: subprocess.Popen, sig: int, timeout: float) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# The README's servers: make serve of DistilBERT alone, of both, and of both as GKE serves them
# (`make serve TARGET=container DEVICE=gpu`: the native onnxruntime backend, CPU instances here).
SERVERS = {
    "distilbert": ((), ()),
    "both": (("finbert",), ()),
    "container": (("finbert",), ("TARGET=container", "DEVICE=gpu")),
}


@pytest.fixture(scope="module", params=list(SERVERS))
def served(request, checkpoints, exports, tmp_path_factory):
    extra, target = SERVERS[request.param]
    families = (*extra, "distilbert")
    build = tmp_path_factory.mktemp(f"readme-build-{request.param}")
    for family in families:  # the session's exports: `make serve` finds them cached
        shutil.copytree(exports[family], build / "export" / family)
    if target:  # the session's build of the native backend, not another one
        (build / "native").symlink_to(native_backend.build().parent)
    sources = {family: str(checkpoints[family]) if family in families else "" for family in ("finbert", "distilbert")}
    server = Served(tmp_path_factory.mktemp(f"readme-{request.param}") / "checkout", build, sources, target)
    yield server
    server.stop()


def news_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"ticker": ["ACME", "XYZ"], "text": ["Operating profit rose to EUR 13.1 mn.", "Shares fell 8%."]}),
        path,
    )


FAILED = re.compile(r'"error"|^error:|Traceback', re.MULTILINE)


ASSIGNMENT = re.compile(
    r"^([A-Z_]+=(\$\([^)]*\)|\S+))\s*(#.*)?$"
)  # MODEL=$(...): a shell variable the block's later commands use


def test_the_readme_commands_work_as_written(served):
    news_parquet(served.where / "news.parquet")
    for language, commands in blocks(README.read_text()):
        started, variables = [], ""
        try:
            for command in commands:
                if skipped(command):
                    continue
                port = next((p for start, p in BACKGROUND.items() if command.lstrip().startswith(start)), None)
                if port:
                    started.append(served.background(command, port))
                    continue
                result = served.run(language, variables + command)
                assignment = ASSIGNMENT.match(command.strip()) if language == "bash" else None
                if assignment:
                    variables += assignment.group(1) + "\n"
                shown = f"{served.text(command).strip()}\n--- exit {result.returncode}\n{result.stdout}{result.stderr}"
                assert result.returncode == 0 and not FAILED.search(result.stdout + result.stderr), shown
        finally:
            for process in started:
                stop_group(process, signal.SIGTERM, 15)
