"""Step-load sweep against a running server: per-step CSVs, a latency-vs-throughput plot,
a markdown table and the knee (highest throughput whose p95 stays within the SLO).

    python -m loadtest.sweep --protocol grpc --host localhost:8001 --model finbert \\
        --users "1 4 16" --step-seconds 10 --slo-ms 200 --out build/loadtest/grpc-finbert

`make loadtest` runs this. It targets only the address you give (default: this machine's
`make serve` ports) and checks that something answers before it starts. Locust runs headless
in a child process under a hard time limit (a Locust run can hang after its summary).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from finsent.address import GATEWAY_PORT, GRPC_PORT, HTTP_PORT
from loadtest import analysis
from loadtest.recorder import parse_levels

HERE = Path(__file__).resolve().parent
# mixed: one bulk/document user (background) and, at each level, the other users interactive (gRPC).
USER_CLASSES = {
    "grpc": "TritonGrpcUser",
    "http": "TritonHttpUser",
    "gateway": "GatewayUser",
    "mixed": "InteractiveUser BackgroundUser",
}
DEFAULT_HOSTS = {
    "grpc": f"localhost:{GRPC_PORT}",
    "http": f"http://localhost:{HTTP_PORT}",
    "gateway": f"http://localhost:{GATEWAY_PORT}",
    "mixed": f"localhost:{GRPC_PORT}",
}
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


class TargetDown(RuntimeError):
    """Nothing (ready) answers at the target."""


def host_name(host: str) -> str:
    rest = host.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[: rest.index("]") + 1]
    return rest.split("/", 1)[0].rsplit(":", 1)[0]


def preflight(protocol: str, host: str, model: str | None, gateway_path: str = "/") -> str:
    """Fail fast, with the fix, when the target does not answer or the model is not served.
    Returns the model the load goes to: `model`, else the one the server (or the gateway) serves."""
    hint = (
        f"Start the server first, e.g. `make serve` in another terminal (Triton: HTTP {HTTP_PORT}, gRPC {GRPC_PORT}), "
        "or point HOST= (and PROTOCOL=) at a running one."
    )
    if protocol in ("grpc", "http", "mixed"):
        from finsent import Client, FinsentError, Retry, UnavailableError

        address = host.split("://", 1)[-1]
        # Only the APIs every caller may use (readiness, config): `make serve` restricts the rest.
        transport = "http" if protocol == "http" else "grpc"
        with Client(address, transport, model, timeout_s=5, retry=Retry(attempts=0)) as client:
            health = client.health()
            if not health.live:
                raise TargetDown(f"nothing answers over {protocol} at {address}. {hint}")
            if not health.ready:
                raise TargetDown(f"Triton at {address} answers but is not ready. {hint}")
            try:
                return client.info.name
            except UnavailableError as exc:
                raise TargetDown(f"{exc}. {hint}") from None
            except FinsentError as exc:
                raise TargetDown(str(exc)) from None
    base = host if "://" in host else f"http://{host}"
    for url in (f"{base}/healthz", f"{base}/readyz"):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                ready = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise TargetDown(
                f"{url} answered HTTP {exc.code}: the gateway is up but Triton behind it is not "
                f"ready ({exc.read().decode(errors='replace')[:200]})"
            ) from None
        except (OSError, ValueError) as exc:
            raise TargetDown(f"nothing answers at {url} ({exc.__class__.__name__}). {hint}") from None
    # POST / always goes to the gateway's own model; /v1/classify to `model` when given.
    return ready.get("model") if gateway_path == "/" or not model else model


def describe_machine() -> str:
    """CPU model, logical CPUs and GPUs of this machine (the server's, when it is on loopback)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs"
    try:
        gpus = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
            )
            .stdout.strip()
            .splitlines()
        )
        if gpus:
            text += ", GPUs: " + ", ".join(gpus)
    except (OSError, subprocess.SubprocessError):
        text += ", no GPU"
    return text


def locust_command(args, out: Path, levels: list[int]) -> list[str]:
    files = f"{HERE / 'locustfile.py'},{HERE / 'step_shape.py'}"
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        files,
        "--headless",
        "--host",
        args.host,
        "--csv",
        str(out / "locust"),
        "--csv-full-history",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
        "--model",
        args.model,
        "--texts-per-request",
        str(args.texts_per_request),
        "--gateway-path",
        args.gateway_path,
        "--request-timeout",
        str(args.request_timeout),
        "--record-dir",
        str(out),
        "--warmup-seconds",
        str(args.warmup_seconds),
        "--steps",
        " ".join(map(str, levels)),
        "--step-seconds",
        str(args.step_seconds),
    ]
    if args.corpus:
        command += ["--corpus", str(args.corpus)]
    return command + USER_CLASSES[args.protocol].split()


def run_locust(command: list[str], limit_s: float, log: Path) -> tuple[int | None, bool]:
    """Run Locust in its own process group; SIGTERM then SIGKILL it past limit_s. (rc, timed_out)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
        )

        def forward():  # progress lines to the terminal, the rest to the log
            for line in process.stderr:
                (sys.stderr if line.startswith("step ") else log_file).write(line)

        reader = threading.Thread(target=forward, daemon=True)
        reader.start()
        try:
            return process.wait(limit_s), False
        except subprocess.TimeoutExpired:
            stop(process)
            return process.returncode, True
        finally:
            reader.join(5)
            if not reader.is_alive():  # a child of Locust may still hold the pipe: leave it then
                process.stderr.close()


def stop(process: subprocess.Popen) -> None:
    """SIGTERM Locust's process group, then SIGKILL it if it is still there after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def sweep(args) -> dict:
    levels = parse_levels(args.users)
    args.model = preflight(args.protocol, args.host, args.model, args.gateway_path)
    out = Path(args.out.format(protocol=args.protocol, model=args.model))  # made once the target answers
    out.mkdir(parents=True, exist_ok=True)
    local = host_name(args.host) in LOOPBACK
    hardware = args.hardware or ("local" if local else "unknown")
    machine = describe_machine() if local else "remote target: hardware not known to this client"
    limit = len(levels) * (args.step_seconds + 1.5) + args.grace_seconds
    print(
        f"sweeping {args.protocol} {args.host} model={args.model}: users {levels}, {args.step_seconds:g} s each "
        f"(hard limit {limit:.0f} s) -> {out}",
        file=sys.stderr,
    )
    load_before = os.getloadavg()[0]
    rc, timed_out = run_locust(locust_command(args, out, levels), limit, out / "locust.log")
    load_after = os.getloadavg()[0]
    if timed_out:
        print(
            f"warning: Locust did not exit within {limit:.0f} s and was killed; the recorded steps are kept",
            file=sys.stderr,
        )
    steps = analysis.step_results(out, args.warmup_seconds)
    if not steps:
        raise RuntimeError(f"Locust recorded no step (exit code {rc}); see {out / 'locust.log'}")
    result = {
        "tool": "finsent loadtest.sweep",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "target": {
            "protocol": args.protocol,
            "host": args.host,
            "model": args.model,
            "texts_per_request": args.texts_per_request,
            "endpoint": args.gateway_path if args.protocol == "gateway" else None,
            "corpus": str(args.corpus) if args.corpus else "built-in (loadtest/corpus.py)",
        },
        "hardware": hardware,
        "machine": machine,
        "note": args.note,
        "slo_ms": args.slo_ms,
        "step_seconds": args.step_seconds,
        "warmup_seconds": args.warmup_seconds,
        "users": levels,
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "locust_exit_code": rc,
        "timed_out": timed_out,
        "steps": steps,
    }
    result["knee"] = analysis.find_knee(steps, args.slo_ms)
    paths = analysis.write_outputs(result, out)
    print(analysis.markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()) + f", per-step samples in {out / 'steps'}")
    if not any(s["requests"] > s["failures"] for s in steps):  # nothing measured: not a success
        errors = [e for s in steps for e in s["errors"]]
        raise RuntimeError(
            (f"every request failed, e.g. {errors[0]}" if errors else "no request completed inside a step's window")
            + f" (results in {out})"
        )
    return result


def parser(local_models: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The sweep's options. local_models: loadtest.local's, which serves these models itself on free
    ports: Triton's protocols only; --host and --gateway-path do not apply there and are hidden."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=("grpc", "http") if local_models else sorted(USER_CLASSES), default="grpc")
    p.add_argument(
        "--host",
        help=argparse.SUPPRESS
        if local_models
        else f"target address (default: {DEFAULT_HOSTS['grpc']} for grpc, {DEFAULT_HOSTS['http']} for http, "
        f"{DEFAULT_HOSTS['gateway']} for gateway)",
    )
    p.add_argument(
        "--model",
        choices=local_models or None,
        help="ensemble (default: the one the server serves, finsent.core.DEFAULT_MODEL among several"
        + ("" if local_models else "; with --protocol gateway and path /, the gateway's")
        + ")",
    )
    p.add_argument("--users", default="1 4 16", help='concurrency levels, e.g. "1 4 16"')
    p.add_argument("--step-seconds", type=float, default=10.0)
    p.add_argument(
        "--warmup-seconds", type=float, help="left out at the start of each step (default: 20%% of a step, at most 2 s)"
    )
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--slo-ms", type=float, default=200.0, help="p95 latency objective for the knee (default 200)")
    p.add_argument("--corpus", help="texts file (one per line, CSV `text` column, or FPB Sentences_*Agree.txt)")
    p.add_argument(
        "--gateway-path",
        default="/",
        choices=["/", "/v1/classify"],
        help=argparse.SUPPRESS if local_models else "the gateway's endpoint (--protocol gateway)",
    )
    p.add_argument("--request-timeout", type=float, default=60.0)
    p.add_argument(
        "--hardware",
        help="the instance type the server ran on, as named in loadtest/prices.yaml "
        "(e.g. g2-standard-8); default 'local' for a loopback target",
    )
    p.add_argument("--note", default="", help="free text stored with the result (model variant, server flags...)")
    p.add_argument(
        "--out",
        default="build/loadtest/{protocol}-{model}",
        help="results folder; {protocol} and {model} are filled in (default build/loadtest/{protocol}-{model})",
    )
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=30.0,
        help="start-up and shutdown time allowed on top of the steps before Locust is killed",
    )
    return p


def problem(args) -> str | None:
    """The first thing wrong with the arguments, found without any load or server (None: nothing)."""
    if args.warmup_seconds is None:
        args.warmup_seconds = min(2.0, 0.2 * args.step_seconds)
    try:
        parse_levels(args.users)
    except ValueError as exc:
        return str(exc)
    return next(
        (
            why
            for bad, why in (
                (args.step_seconds <= 0, "--step-seconds must be positive"),
                (
                    not 0 <= args.warmup_seconds < args.step_seconds,
                    "--warmup-seconds must be shorter than --step-seconds",
                ),
                (args.texts_per_request < 1, "--texts-per-request must be at least 1"),
                (args.corpus and not Path(args.corpus).is_file(), f"corpus file {args.corpus} does not exist"),
            )
            if bad
        ),
        None,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.host = args.host or DEFAULT_HOSTS[args.protocol]
    if why := problem(args):
        print(f"error: {why}", file=sys.stderr)
        return 2
    try:
        sweep(args)
    except (TargetDown, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
