"""Run the finsent stack on this machine: a repository assembled for a target, served by tritonserver.

The one home for it: `make serve`, `make eval`, the benchmarks, the load tests and the test
fixtures start their servers here, so a target plugs in once.

  local      the pytriton wheel's tritonserver 2.51, Python backend only (the classifier is
             ONNX Runtime in a Python model)
  container  the repository the NGC image serves on GKE, on the same server with Triton's native
             onnxruntime backend built here (server/native_backend.py): the same server, backend
             and ONNX Runtime as the image. Its gpu profile runs with CPU instances here.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from model_repository.assemble import TargetOptions, assemble
from server import native_backend
from server.triton import RESTRICTED_APIS, Ports, TritonServer, free_ports


def needs_native_backend(repository: Path) -> bool:
    """Whether any model of the repository runs on Triton's onnxruntime backend."""
    return any('backend: "onnxruntime"' in config.read_text() for config in Path(repository).glob("*/config.pbtxt"))


def start(
    repository: Path,
    work: Path,
    *,
    ports: Ports | None = None,
    admin: bool = False,
    log_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 120.0,
    started: bool = True,
    native_build: Path | None = None,
    restricted_apis: tuple[str, ...] = RESTRICTED_APIS,
) -> TritonServer:
    """tritonserver on `repository` (free ports unless given), log in work/tritonserver.log.

    admin: explicit model control (the watchdog reloads a model whose stub died) behind a random admin
    key, which guards `restricted_apis` (`make serve` leaves statistics open: LOCAL_RESTRICTED_APIS). The native backend is built (once, in native_build, default
    build/native of this checkout) if a model needs it: raises native_backend.BuildError if it cannot be."""
    work = Path(work)
    server = TritonServer(
        Path(repository),
        ports or Ports(*free_ports()),
        work_dir=work,
        log_path=log_path or work / "tritonserver.log",
        extra_args=tuple(extra_args),
        control_mode="explicit" if admin else "none",
        admin_key=secrets.token_urlsafe(24) if admin else None,
        restricted_apis=restricted_apis,
        onnxruntime=native_backend.build(native_build) if needs_native_backend(repository) else None,
    )
    return server.start(timeout_s) if started else server


def serve(
    exports: dict[str, Path],
    work: Path,
    options: TargetOptions = TargetOptions(),
    *,
    variants: dict[str, str] | None = None,
    repository: Path | None = None,
    **start_args,
) -> TritonServer:
    """Assemble `exports` ({family: export dir}) for `options` under work/repository and start serving it."""
    repository = assemble(exports, repository or Path(work) / "repository", options, variants=variants)
    return start(repository, work, **start_args)


def stub_pids(server: TritonServer, model: str) -> list[int]:
    """Python-backend stubs of `model` started by this server (other servers on the machine left alone)."""
    from server import health

    return [pid for pid, name in health.python_stubs(server.process.pid).items() if name == model]


def server_rss_mb(server: TritonServer) -> float:
    """Resident memory of tritonserver and its stubs (children), in MB."""
    from server.health import proc_stat

    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = proc_stat(f"{entry}/stat")
            if int(entry.name) == server.process.pid or int(stat[1]) == server.process.pid:
                total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) process `pid` has used so far; 0 once it is gone."""
    from server.health import proc_stat

    try:
        fields = proc_stat(f"/proc/{pid}/stat")
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
