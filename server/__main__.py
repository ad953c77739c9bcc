"""Export the models (cached), assemble the repository and serve it: `make serve`.

    python -m server --finbert ProsusAI/finbert --distilbert build/checkpoints/distilbert-fpb
    python -m server --target container --device cpu     # the repository the NGC image serves on GKE

--target container serves the container repository with Triton's native onnxruntime backend,
built here once (server/native_backend.py); its gpu profile runs on CPU instances without a GPU.

A model whose source cannot be had (offline hub id, missing directory) is skipped with the
reason; the server starts with the others, and fails clearly when none is left.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

from export.facts import FactsError
from export.onnx import ParityError, SourceUnavailable, export_model
from export.optimize import MIN_AGREEMENT, GuardError
from export.runtime import (
    ALL_VARIANTS,
    CONTAINER_ORT,
    DEFAULT_ENGINE,
    DEFAULT_VARIANT,
    ENGINE_DEFAULT_VARIANT,
    ENGINES,
    served_choice,
)
from model_repository.assemble import FAMILIES, TARGETS, TargetOptions, available_cores
from model_repository.build import served_variants
from server import native_backend, stack
from server.health import Watchdog
from server.native_backend import BuildError
from server.triton import (
    ADMIN_HEADER,
    LOCAL_RESTRICTED_APIS,
    LaunchError,
    Ports,
    check_ports,
)


def prepare(
    sources: dict[str, str],
    build: Path,
    variant: str = "fp32",
    min_agreement: float = MIN_AGREEMENT,
    runtime: str | None = None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Export every family that has a source and build its variant; say why any is skipped.

    Returns ({family: export dir}, {family: variant to serve}). A variant the accuracy guard refuses
    for one model falls back to that model's fp32 export (said on stderr): the others keep theirs."""
    exports, skipped = {}, {}
    for family, source in sources.items():
        if not source:
            skipped[family] = "no source given"
            continue
        try:
            path = export_model(source, family, build / "export" / family).path
        except (SourceUnavailable, FactsError, ParityError) as exc:
            skipped[family] = str(exc)
            continue
        exports[family] = path
    for family, why in skipped.items():
        print(f"skipping {family}: {why}", file=sys.stderr)
    if not exports:
        raise LaunchError(
            "no model to serve. Point FINBERT= or DISTILBERT= at a Hugging Face hub id (needs the "
            "internet) or a local checkpoint directory, e.g. `make serve FINBERT=path/to/checkpoint`"
            " (`make finetune` writes the DistilBERT default)"
        )
    return exports, served_variants(exports, variant, min_agreement, runtime)


def claim(build: Path):
    """Hold build/serve.lock while serving: a second `make serve` on the same build folder would
    rebuild the repository and delete the log under the running server (even if its ports clash)."""
    build.mkdir(parents=True, exist_ok=True)
    lock = open(build / "serve.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        owner = lock.read().strip() or "another process"
        lock.close()
        raise LaunchError(
            f"{build} is in use by a running `make serve` (pid {owner}): stop it, or give this one "
            f"its own folder, e.g. `make serve BUILD=build-2`"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock  # the lock lasts as long as this file object (the process)


def usage(variants: dict[str, str], ports: Ports, admin_key_file: Path | None = None) -> str:
    model = next(iter(variants))
    served = ", ".join(f"{family} ({variant})" for family, variant in variants.items())
    return f"""
finsent is serving {served}:  HTTP :{ports.http}  gRPC :{ports.grpc}  metrics :{ports.metrics}

  curl -s localhost:{ports.http}/v2/models/{model}/infer -d \\
    '{{"inputs":[{{"name":"TEXT","datatype":"BYTES","shape":[2,1],"data":["Profit rose 12%.","Shares fell."]}}]}}'

  python -c "import numpy as np, tritonclient.grpc as g; c=g.InferenceServerClient('localhost:{ports.grpc}'); \\
i=g.InferInput('TEXT',[1,1],'BYTES'); i.set_data_from_numpy(np.array([[b'Profit rose 12%.']],dtype=object)); \\
r=c.infer('{model}',[i]); print(r.as_numpy('LABEL'), r.as_numpy('PROBABILITIES'))"

Outputs: LABEL, SCORE, PROBABILITIES (negative, neutral, positive). Ctrl-C stops the server.
""" + (
        ""
        if admin_key_file is None
        else f"""\
Model control and the repository index need header {ADMIN_HEADER}: <the key in {admin_key_file}, readable by you only>
(gRPC: metadata triton-grpc-protocol-{ADMIN_HEADER}); statistics are open to perf_analyzer and Model Analyzer.
"""
    )


def target_options(args, gpu_here: bool | None = None) -> TargetOptions:
    """What to assemble; the container is served with this machine's cores (the image's default is the
    CPU profile's request), and its gpu profile with CPU instances where no GPU is visible."""
    if args.target == "local" and args.device != "cpu":
        raise ValueError("--device gpu is the container target's profile: add --target container")
    if gpu_here is None:
        gpu_here = Path("/dev/nvidia0").exists()
    no_gpu = args.device == "gpu" and not gpu_here
    if no_gpu:
        print(
            "no GPU here: the gpu profile's classifier runs on CPU instances (KIND_CPU), batching as on a GPU",
            file=sys.stderr,
        )
    # Without a GPU the gpu profile runs its CPU instances with the cpu default variant (int8: fp16 is slow there).
    profile = "gpu" if args.device == "gpu" and not no_gpu else "cpu"
    if args.device == "gpu" and args.engine not in (None, "onnxruntime"):
        raise ValueError(f"engine {args.engine!r}: the gpu profile runs onnxruntime only (Triton's native backend)")
    variant = served_choice(profile, args.engine if args.device == "cpu" else "onnxruntime", args.variant)
    return TargetOptions(
        args.target,
        args.device,
        available_cores(),
        variant=variant,
        cpu_instances=no_gpu,
        max_rows_per_run=1 if args.reproducible else 0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(  # prog: argparse would say "__main__.py"
        prog="python -m server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for family, row in FAMILIES.items():
        parser.add_argument(
            f"--{family}",
            default=row.source,
            help=f"hub id or checkpoint directory (default {row.source}; '' skips it)",
        )
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="local",
        help="local (default) or container: the NGC image's repository, on Triton's native "
        "onnxruntime backend built here",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="container target: the cpu (default) or gpu profile (CPU instances if no GPU here)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"the classifier's engine on CPU (local target, container cpu profile): onnxruntime or openvino "
        f"(default {DEFAULT_ENGINE}: the fastest the guard passes here, docs/benchmarks/cpu-engines.md)",
    )
    parser.add_argument(
        "--variant",
        choices=ALL_VARIANTS,
        help=f"the engine's variant. onnxruntime: int8 (default on CPU), fp32 (exact parity with PyTorch) or "
        f"fp16 (default where the gpu profile has a GPU); openvino: int8-static (default), fp32. "
        f"Defaults: {DEFAULT_VARIANT} (onnxruntime), {ENGINE_DEFAULT_VARIANT['openvino']} (openvino)",
    )
    parser.add_argument(
        "--reproducible",
        action="store_true",
        help="int8: run each text alone in the classifier, so that its probabilities never depend "
        "on the texts batched with it (dynamic quantization scales a run's activations as a "
        "whole); ~12%% fewer texts/s at 16 clients. fp32 is batch-independent already",
    )
    parser.add_argument("--http-port", type=int, default=Ports.http)
    parser.add_argument("--grpc-port", type=int, default=Ports.grpc)
    parser.add_argument("--metrics-port", type=int, default=Ports.metrics)
    parser.add_argument(
        "--watchdog-interval",
        type=float,
        default=1.0,
        help="seconds between inference health checks; a model whose Python stub died is "
        "reloaded (0 disables the watchdog)",
    )
    parser.add_argument("--build", type=Path, default=Path("build"), help="exports, repository and logs go here")
    args = parser.parse_args(argv)
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    started = time.monotonic()
    try:
        options = target_options(args)
        check_ports(ports)  # before anything is built or deleted
        lock = claim(args.build)  # noqa: F841 (held until the process exits)
        native = args.build / "native"
        if options.classifier == "onnxruntime":  # before exporting: a missing toolchain fails in seconds
            native_backend.build(native, log=lambda line: print(line, file=sys.stderr))
        # The container's classifier runs under the image's ONNX Runtime: its variants are judged there.
        exports, variants = prepare(
            {f: getattr(args, f) for f in FAMILIES},
            args.build,
            options.variant,
            runtime=CONTAINER_ORT if args.target == "container" else None,
        )
        log = args.build / "triton" / "tritonserver.log"
        log.unlink(missing_ok=True)
        # Explicit model control lets the watchdog reload a model whose stub died; the key keeps
        # model control (and the other admin APIs) away from everyone else who can reach the port.
        server = stack.serve(
            exports,
            args.build / "triton",
            options,
            variants=variants,
            ports=ports,
            admin=True,
            log_path=log,
            repository=args.build / "repository" / args.target,
            started=False,
            native_build=native,
            restricted_apis=LOCAL_RESTRICTED_APIS,
        )
        print(f"starting tritonserver (log: {log}) ...")
        server.start()
    except (LaunchError, BuildError, GuardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ready in {time.monotonic() - started:.1f} s")
    print(usage(variants, ports, server.admin_key_file))
    watchdog = None
    if args.watchdog_interval > 0:
        watchdog = Watchdog(
            server.http_url,
            list(exports),
            server.admin_key,
            args.watchdog_interval,
            log=lambda line: print(f"watchdog: {line}", flush=True),
            server_pid=server.process.pid,
        )
        watchdog.start()
    stop = {"signal": None}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stop.update(signal=signum))
    while stop["signal"] is None and server.process.poll() is None:
        time.sleep(0.2)
    if stop["signal"] is None:
        print(f"tritonserver exited with code {server.process.returncode}; see {log}", file=sys.stderr)
        return 1
    if watchdog:
        watchdog.stop()
    print("stopping tritonserver (draining in-flight requests) ...")
    code = server.stop()
    print(f"stopped (exit code {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
