"""Start, wait for and stop a local tritonserver (the binary bundled in PyPI nvidia-pytriton).

The wheel ships tritonserver 2.51 and its Python backend, not the ONNX Runtime backend, which
is why the local classifier runs ONNX Runtime in a Python model. triton_args() is the one
place that says how finsent runs Triton; the Helm chart's args are checked against it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from finsent.address import GRPC_PORT, HTTP_PORT, METRICS_PORT
from server.health import ADMIN_HEADER  # standard library only: the image's probes send it too

# Errors tritonserver always logs on a machine without a GPU.
NOISE = re.compile(r"cuda|pinned|nvml|dcgm", re.IGNORECASE)
PORT_FLAGS = {"http": "HTTP_PORT", "grpc": "GRPC_PORT", "metrics": "METRICS_PORT"}
# APIs remote callers must not reach (the k8s chart passes admin_key): they answer only requests
# carrying the header ADMIN_HEADER (gRPC: metadata "triton-grpc-protocol-" + ADMIN_HEADER) with that key.
RESTRICTED_APIS = ("model-repository", "shared-memory", "statistics", "trace", "logging")
# `make serve` leaves statistics open: perf_analyzer and Model Analyzer read them, and the metrics
# port (open too) publishes the same counters. The key itself is in ADMIN_KEY_FILE, readable by its owner only.
LOCAL_RESTRICTED_APIS = tuple(api for api in RESTRICTED_APIS if api != "statistics")
ADMIN_KEY_FILE = "admin-key"


class LaunchError(RuntimeError):
    """tritonserver could not be started or did not become ready."""


@dataclass(frozen=True)
class Ports:
    http: int = HTTP_PORT
    grpc: int = GRPC_PORT
    metrics: int = METRICS_PORT

    def items(self):
        return (("http", self.http), ("grpc", self.grpc), ("metrics", self.metrics))


def triton_args(
    model_repository: str,
    ports: Ports = Ports(),
    *,
    exit_timeout_s: int = 30,
    control_mode: str = "none",
    admin_key: str | None = None,
    restricted_apis: tuple[str, ...] = RESTRICTED_APIS,
) -> list[str]:
    """tritonserver arguments shared by the local launcher and the Helm chart (minus paths).

    control_mode: "explicit" loads every model at start (--load-model=*) and lets the watchdog
    (server/health.py) reload a model whose Python stub died; "none" forbids model control.
    admin_key: restrict restricted_apis to callers sending it in ADMIN_HEADER (None: open).
    """
    restricted = ",".join(restricted_apis)
    return [
        f"--model-repository={model_repository}",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=true",
        "--allow-cpu-metrics=true",
        f"--model-control-mode={control_mode}",
        *(["--load-model=*"] if control_mode == "explicit" else []),
        "--strict-readiness=true",
        f"--exit-timeout-secs={exit_timeout_s}",
        "--log-verbose=0",
    ] + (
        []
        if admin_key is None
        else [
            f"--http-restricted-api={restricted}:{ADMIN_HEADER}={admin_key}",
            f"--grpc-restricted-protocol={restricted}:{ADMIN_HEADER}={admin_key}",
        ]
    )


def pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise LaunchError("nvidia-pytriton is not installed: run `make setup`") from exc
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def server_library() -> Path:
    """The wheel's libtritonserver.so, shipped under an auditwheel name."""
    libs = pytriton_root().parent.parent / "nvidia_pytriton.libs"
    found = sorted(libs.glob("libtritonserver*.so*"))
    if not found:
        raise LaunchError(f"libtritonserver is missing from {libs}: reinstall nvidia-pytriton (make setup)")
    return found[0]


def backend_directory(where: Path, onnxruntime: Path | None = None) -> Path:
    """A backends directory holding symlinks to the wheel's Python backend, and to the native
    onnxruntime backend built by server/native_backend.py when `onnxruntime` (its folder) is given.

    Symlinks, not copies: the stub finds its bundled libraries through $ORIGIN, which must
    resolve inside site-packages.
    """
    if onnxruntime is not None:
        from server.native_backend import install

        install(where, onnxruntime, server_library())
    root = pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    sources = {
        "libtriton_python.so": root / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": root / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    python_dir = Path(where) / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        if not src.exists():
            raise LaunchError(f"{src} is missing from nvidia-pytriton (Python {version} unsupported?)")
        link = python_dir / name
        if link.is_symlink() or link.exists():
            if link.resolve() == src.resolve():
                continue
            link.unlink()
        link.symlink_to(src)
    return Path(where)


def check_libpython() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    lib = f"libpython{version}.so.1.0"
    found = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    if lib not in found:
        raise LaunchError(
            f"{lib} is missing: the Python backend stub links against it. "
            f"Install it with `apt-get install libpython{version}` (make setup tries)."
        )


def check_ports(ports: Ports) -> None:
    for kind, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                raise LaunchError(
                    f"{kind.upper()} port {port} is already in use; choose another, e.g. "
                    f"`make serve {PORT_FLAGS[kind]}={port + 10}`"
                ) from None


def free_ports(count: int = 3) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class TritonServer:
    """A running tritonserver process; use as a context manager or call stop()."""

    model_repository: Path
    ports: Ports = field(default_factory=Ports)
    work_dir: Path = Path("build/triton")
    log_path: Path | None = None  # None: inherit stdout/stderr
    extra_args: tuple[str, ...] = ()
    control_mode: str = "none"
    admin_key: str | None = None  # restrict restricted_apis, as on k8s
    restricted_apis: tuple[str, ...] = RESTRICTED_APIS
    onnxruntime: Path | None = None  # the native onnxruntime backend's build (container repositories)
    process: subprocess.Popen | None = None

    @property
    def admin_key_file(self) -> Path:
        return Path(self.work_dir) / ADMIN_KEY_FILE

    @property
    def http_url(self) -> str:
        return f"localhost:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    def command(self) -> list[str]:
        backends = backend_directory(Path(self.work_dir) / "backends", self.onnxruntime)
        return [
            str(pytriton_root() / "bin" / "tritonserver"),
            *triton_args(
                str(Path(self.model_repository).resolve()),
                self.ports,
                control_mode=self.control_mode,
                admin_key=self.admin_key,
                restricted_apis=self.restricted_apis,
            ),
            f"--backend-directory={backends.resolve()}",
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The Python stub takes its interpreter prefix (and site-packages) from the first
        # python3 on PATH and ignores PYTHONPATH: put this interpreter's venv first.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def start(self, timeout_s: float = 120.0) -> "TritonServer":
        check_libpython()
        check_ports(self.ports)
        out = None
        if self.log_path:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out:
            out.close()
        if self.admin_key:  # for its owner's tools (tritonclient, Model Analyzer); 0600
            self.admin_key_file.unlink(missing_ok=True)
            Path(self.work_dir).mkdir(parents=True, exist_ok=True)
            with os.fdopen(os.open(self.admin_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(self.admin_key + "\n")
        self.wait_ready(timeout_s)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LaunchError(
                    f"tritonserver exited with code {self.process.returncode} before it was ready" + self._log_hint()
                )
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        raise LaunchError(f"tritonserver was not ready after {timeout_s:.0f} s" + self._log_hint())

    def _log_hint(self) -> str:
        if not self.log_path or not Path(self.log_path).exists():
            return ""
        lines = Path(self.log_path).read_text(errors="replace").splitlines()
        errors = [line for line in lines if line.startswith("E") and not NOISE.search(line)]
        return "\n  " + "\n  ".join((errors or lines)[-8:]) + f"\n(full log: {self.log_path})"

    def stop(self, timeout_s: float = 40.0) -> int | None:
        """Drain (explicit model control: unload the ensembles, which waits for their in-flight
        requests), SIGTERM, then SIGKILL after timeout_s."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        if self.control_mode == "explicit":
            from server.health import Triton, drain

            drain(Triton(self.http_url, self.admin_key), log=lambda line: print(line, file=sys.stderr))
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
