"""A real inference health check, and the repair of a dead Python-backend stub.

Triton does not restart a Python-backend stub that died (OOM kill, segfault): the server and the
model keep answering READY while every request to that model fails ("Stub process ... is not
healthy"). So health here means one tiny text through each ensemble, and repair means unloading
and loading the broken composing model (explicit model control), which starts a new stub.

    python -m server.health --url localhost:8000                       # exit 0 healthy, 1 not
    python -m server.health --url localhost:8000 --heal                # and repair what is broken
    python -m server.health --url localhost:8000 --watch --interval 1  # a watchdog: check and heal
    python -m server.health --url localhost:8000 --drain               # before SIGTERM: finish in-flight

Standard library only: the k8s chart runs this file as the pod's probes inside the NGC image.
The model-control calls need the admin key (env TRITON_ADMIN_KEY) when Triton restricts them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

ADMIN_HEADER = "finsent-admin"  # the admin key's header; server.triton imports it from here
DEFAULT_MODELS = ("finbert", "distilbert")  # export.facts.FAMILIES (stdlib only; a test keeps them equal)
HTTP_PORT = 8000  # finsent.address.HTTP_PORT, Triton's (stdlib only; a test keeps them equal)
PROBE_TEXT = "Profit rose."
# finsent.traffic's HEALTH level and TRAFFIC_PARAMETER (stdlib only; a test keeps them equal): the
# probes pass every queue, and their texts are not counted in the finsent_* series.
PRIORITY = 1
TRAFFIC_PARAMETER = "finsent_traffic"
# A busy server's answers: a full queue, a queue timeout, a probe that did not finish in time. Overload
# is shed by the bounded queues (model_repository/classes.py); a probe that fails for it would restart
# (liveness) or unlist (readiness) every replica of an overloaded service at once.
BUSY = ("Exceeds maximum queue size", "Request timeout expired", "timed out")
# The Python backend's error for a request to a dead stub (libtriton_python.so: "Stub process
# '<model>_0_0' is not healthy."). Nothing else is healed: a timeout is an overload, not a death.
DEAD_STUB = ("Stub process", "is not healthy")


class Triton:
    """The few HTTP calls the check and the repair need."""

    def __init__(self, url: str, admin_key: str | None = None, timeout_s: float = 2.0):
        self.base = url if url.startswith("http") else f"http://{url}"
        self.admin_key = admin_key
        self.timeout_s = timeout_s

    def call(self, path: str, body: dict | None = None, admin: bool = False, timeout_s: float | None = None):
        headers = {"Content-Type": "application/json"}
        if admin and self.admin_key:
            headers[ADMIN_HEADER] = self.admin_key
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, headers=headers, method="GET" if body is None else "POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {"error": exc.reason}
        except (OSError, ValueError) as exc:  # refused, timed out, reset
            return 0, {"error": f"{type(exc).__name__}: {exc}"}

    def infer_error(self, model: str) -> str | None:
        """None when `model` classifies a text correctly shaped, else why not."""
        status, body = self.call(
            f"/v2/models/{model}/infer",
            {
                "parameters": {"priority": PRIORITY, TRAFFIC_PARAMETER: PRIORITY},
                "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1, 1], "data": [PROBE_TEXT]}],
            },
        )
        if status != 200:
            return body.get("error") or f"HTTP {status}"
        outputs = {o["name"]: o for o in body.get("outputs", [])}
        if "LABEL" not in outputs or outputs.get("PROBABILITIES", {}).get("shape") != [1, 3]:
            return f"unexpected outputs {sorted(outputs)}"
        return None

    def steps(self, ensemble: str) -> list[str]:
        status, config = self.call(f"/v2/models/{ensemble}/config")
        if status != 200:
            return []
        return [s["model_name"] for s in config.get("ensemble_scheduling", {}).get("step", [])]

    def backend(self, model: str) -> str:
        status, config = self.call(f"/v2/models/{model}/config")
        return config.get("backend", "") if status == 200 else ""

    def ready(self, model: str) -> bool:
        return self.call(f"/v2/models/{model}/ready")[0] == 200

    def reload(self, model: str) -> str | None:
        """Unload then load `model`, which starts a new stub (about 1.5 s; the ensembles using it go
        with it and come back). None on success. Not a load with a config override: measured here,
        it is sometimes a no-op and once aborted tritonserver while the old instance finalized."""
        for action in ("unload", "load"):
            status, body = self.call(f"/v2/repository/models/{model}/{action}", {}, admin=True, timeout_s=60)
            if status != 200:
                return f"{action} {model}: {body.get('error') or f'HTTP {status}'}"
        return None


def drain(triton: Triton, timeout_s: float = 25.0, log=print) -> list[str]:
    """Unload every ensemble before SIGTERM: Triton's own SIGTERM stops each composing model's
    scheduler at once, so a request between two steps fails ("Server is stopping", measured: all
    8 requests in flight). Unloading the ensemble instead waits for its in-flight requests, with
    the steps still loaded; new requests get "unknown model" meanwhile. The document models, which
    call the ensembles (BLS), are drained first: a document in flight still reaches its ensemble.
    Returns what was unloaded."""
    status, index = triton.call("/v2/repository/index", {}, admin=True)
    if status != 200:
        log(f"cannot list models to drain them: {index.get('error') or f'HTTP {status}'}")
        return []
    configs = {m["name"]: triton.call(f"/v2/models/{m['name']}/config")[1] for m in index if m.get("state") == "READY"}
    documents = [name for name, config in configs.items() if "ensemble" in config.get("parameters", {})]
    ensembles = [name for name, config in configs.items() if config.get("platform") == "ensemble"]
    deadline = time.monotonic() + timeout_s
    for group in (documents, ensembles):
        for name in group:
            status, body = triton.call(f"/v2/repository/models/{name}/unload", {}, admin=True, timeout_s=120)
            if status != 200:
                log(f"unload {name}: {body.get('error') or f'HTTP {status}'}")
        # The unload call returns at once; the model stays UNLOADING until its last request is done.
        while time.monotonic() < deadline:
            status, index = triton.call("/v2/repository/index", {}, admin=True)
            if status != 200 or not any(m["name"] in group and m.get("state") == "UNLOADING" for m in index):
                break
            time.sleep(0.05)
    return documents + ensembles


def served(triton: Triton, models=DEFAULT_MODELS) -> list[str]:
    """The models the server's repository holds. One it lacks ("is not found") is left out, as with
    `make serve DISTILBERT=`; one unloaded or failed ("has no available versions") stays, to fail."""
    return [m for m in models if "is not found" not in triton.call(f"/v2/models/{m}")[1].get("error", "")]


def check(triton: Triton, models=DEFAULT_MODELS) -> dict[str, str]:
    """{model: error} for every model that cannot classify a text (empty: healthy)."""
    errors = {}
    for model in models:
        error = triton.infer_error(model)
        if error:
            errors[model] = error
    return errors


def broken_steps(triton: Triton, ensemble: str, error: str) -> list[str]:
    """The composing models to reload: the one the error names, else every Python-backend step."""
    steps = triton.steps(ensemble)
    named = [s for s in steps if f"'{s}_" in error or f"'{s}'" in error or f" {s} " in error]
    return named or [s for s in steps if triton.backend(s) == "python"]


def dead_stub(error: str) -> bool:
    return all(part in error for part in DEAD_STUB)


def busy(error: str) -> bool:
    return any(part in error for part in BUSY)


def heal(triton: Triton, errors: dict[str, str], log=print) -> dict[str, str]:
    """Reload the broken steps of every ensemble failing with a dead stub's error; re-check all.

    Returns what is still broken afterwards (empty: healed).
    """
    for ensemble, error in errors.items():
        if not dead_stub(error):
            # A reload would take the ensemble away from the requests queued on it.
            log(f"{ensemble} is unhealthy ({error.strip()[:160]}), not from a dead stub; not reloading")
            continue
        if not triton.ready(ensemble):
            # Unloaded on purpose (a drain before shutdown) or still loading: not ours to reload.
            log(f"{ensemble} is not loaded ({error.strip()[:80]}); not repairing it")
            continue
        steps = broken_steps(triton, ensemble, error)
        log(f"{ensemble} is unhealthy ({error.strip()[:160]}); reloading {', '.join(steps) or ensemble}")
        for model in steps:
            failure = triton.reload(model)
            if failure:
                log(f"  {failure}")
        if not triton.ready(ensemble):  # normally back with its step; if not, load it
            triton.call(f"/v2/repository/models/{ensemble}/load", {}, admin=True, timeout_s=60)
    return check(triton, list(errors))


def python_stubs(parent: int) -> dict[int, str]:
    """{pid: model} of the Python-backend stubs that tritonserver `parent` started."""
    stubs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if not argv[0].endswith(b"triton_python_backend_stub") or len(argv) < 2 or _stat(int(entry))[1] != parent:
                continue
        except (OSError, ValueError, IndexError):
            continue
        # argv[1] is <repository>/<model>/<version>/model.py
        stubs[int(entry)] = os.path.basename(os.path.dirname(os.path.dirname(argv[1].decode(errors="replace"))))
    return stubs


def proc_stat(path: str) -> list[str]:
    """The fields of a /proc/<pid>/stat (or task/<tid>/stat) file after the command name, which may hold
    spaces: [0] state, [1] parent pid, [11] utime, [12] stime, [16] nice, [21] rss pages (proc(5)'s 3.., 1-based)."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of a process."""
    fields = proc_stat(f"/proc/{pid}/stat")
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] not in ("Z", "X")  # a killed stub stays a zombie until Triton reaps it
    except (OSError, ValueError, IndexError):
        return False


def reload_dead_stubs(triton: Triton, dead: list[str], models, log=print) -> None:
    """Reload the models whose stub died; one being unloaded on purpose (not READY) is left alone."""
    started = time.monotonic()
    reloaded = [model for model in dead if triton.ready(model)]
    for model in reloaded:
        log(f"{model}'s Python stub died; reloading {model}")
        failure = triton.reload(model)
        if failure:
            log(f"  {failure}")
    if not reloaded:
        return
    errors = check(triton, models)
    if errors:
        errors = heal(triton, errors, log=log)
    for model, error in errors.items():
        log(f"{model} is still unhealthy: {error.strip()[:160]}")
    if not errors:
        log(f"healed {', '.join(models)} in {time.monotonic() - started:.1f} s")


def watch(
    triton: Triton,
    models,
    interval_s: float = 1.0,
    should_stop=lambda: False,
    log=print,
    lock: threading.Lock | None = None,
) -> None:
    """Check every interval_s and repair what broke, until should_stop() (the launcher's watchdog)."""
    lock = lock or threading.Lock()
    while not should_stop():
        started = time.monotonic()
        errors = check(triton, models)
        if errors:
            if not lock.acquire(blocking=False):  # the stub watch is repairing: see what is left after
                lock.acquire()
                errors = check(triton, list(errors))
            try:
                still = heal(triton, errors, log=log) if errors else {}
            finally:
                lock.release()
            healed = sorted(set(errors) - set(still))
            if healed:
                log(f"healed {', '.join(healed)} in {time.monotonic() - started:.1f} s")
            for model, error in still.items():
                log(f"{model} is still unhealthy: {error.strip()[:160]}")
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))


def rescan_stubs(stubs: dict[int, str], server_pid: int) -> dict[int, str]:
    """python_stubs(server_pid), keeping the stubs of `stubs` the scan misses until alive() calls
    them dead: an exiting process loses its command line before it is a zombie, and a reaped one
    has no /proc entry, so dropping them lost a death that fell between two looks (one CI run)."""
    return {**stubs, **python_stubs(server_pid)}


def watch_stubs(
    triton: Triton,
    models,
    server_pid: int,
    should_stop=lambda: False,
    log=print,
    lock: threading.Lock | None = None,
    poll_s: float = 0.1,
) -> None:
    """Reload a model as soon as its Python stub process dies (every poll_s), without waiting for
    an inference check: a check sent to the dead stub, like every request, waits ~1 s on it."""
    lock = lock or threading.Lock()
    stubs, rescan = python_stubs(server_pid), time.monotonic() + 1.0
    while not should_stop():
        if time.monotonic() >= rescan:  # models (re)loaded by anyone start new stubs
            stubs, rescan = rescan_stubs(stubs, server_pid), time.monotonic() + 1.0
        dead = sorted({model for pid, model in stubs.items() if not alive(pid)})
        if dead:
            with lock:
                reload_dead_stubs(triton, dead, models, log)
            # The reloaded models' dead stubs are done with; another model's stays to be seen.
            stubs = {
                pid: model for pid, model in rescan_stubs(stubs, server_pid).items() if model not in dead or alive(pid)
            }
            rescan = time.monotonic() + 1.0
        time.sleep(poll_s)


class Watchdog(threading.Thread):
    """watch() in a daemon thread (`python -m server` runs one next to tritonserver); with the
    server's pid, watch_stubs() in a second one."""

    def __init__(
        self, url: str, models, admin_key: str | None, interval_s: float = 1.0, log=print, server_pid: int | None = None
    ):
        super().__init__(name="finsent-watchdog", daemon=True)
        # A dead stub answers after about 1 s: a shorter timeout would hide which model it is.
        self.triton = Triton(url, admin_key, timeout_s=5.0)
        self.models, self.interval_s, self.log = list(models), interval_s, log
        self._halt, self._lock = threading.Event(), threading.Lock()
        self._stubs = (
            None
            if server_pid is None
            else threading.Thread(
                target=watch_stubs,
                name="finsent-stub-watch",
                daemon=True,
                args=(
                    Triton(url, admin_key, timeout_s=5.0),
                    self.models,
                    server_pid,
                    self._halt.is_set,
                    log,
                    self._lock,
                ),
            )
        )

    def run(self) -> None:
        if self._stubs:
            self._stubs.start()
        watch(self.triton, self.models, self.interval_s, self._halt.is_set, self.log, self._lock)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        if self._stubs and self._stubs.is_alive():
            self._stubs.join(timeout=10)


def wrong_url(triton: Triton) -> tuple[int, str] | None:
    """(exit code, why) when nothing answers HTTP at the URL, said once instead of per model."""
    try:
        with urllib.request.urlopen(triton.base + "/v2/health/live", timeout=triton.timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # an HTTP answer: the checks say the rest
    except http.client.HTTPException:  # e.g. BadStatusLine: the gRPC port's HTTP/2 bytes
        return 2, (
            f"{triton.base} does not speak HTTP (its answer is not an HTTP response): is it the gRPC port? "
            f"--url needs Triton's HTTP port ({HTTP_PORT} under make serve)"
        )
    except OSError as exc:
        return 1, f"nothing answers at {triton.base} ({getattr(exc, 'reason', exc)}): is Triton running there?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=f"localhost:{HTTP_PORT}", help="Triton's HTTP address (not its gRPC port)")
    parser.add_argument(
        "--model",
        action="append",
        help=f"ensemble to check (default: those of {', '.join(DEFAULT_MODELS)} the server has)",
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per inference")
    parser.add_argument("--heal", action="store_true", help="reload the broken models (explicit model control)")
    parser.add_argument("--watch", action="store_true", help="keep checking and healing (a watchdog)")
    parser.add_argument(
        "--drain",
        action="store_true",
        help="unload the ensembles, waiting for their in-flight requests (before SIGTERM)",
    )
    parser.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        help="seconds to keep serving before --drain (k8s: until the Service stops routing here)",
    )
    parser.add_argument("--drain-timeout", type=float, default=25.0, help="seconds --drain waits at most")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between checks with --watch")
    args = parser.parse_args(argv)
    triton = Triton(args.url, os.environ.get("TRITON_ADMIN_KEY"), args.timeout)
    problem = wrong_url(triton)
    if problem:
        print(f"error: {problem[1]}", file=sys.stderr)
        return problem[0]
    models = args.model or served(triton) or list(DEFAULT_MODELS)
    if args.drain:
        time.sleep(args.drain_delay)
        drained = drain(triton, args.drain_timeout)
        print(f"drained {', '.join(drained) or 'nothing'}")
        return 0
    if args.watch:
        try:
            watch(triton, models, args.interval)
        except KeyboardInterrupt:
            return 0
    errors = check(triton, models)
    loaded = {m: errors.pop(m) for m in list(errors) if busy(errors[m])}
    if errors and args.heal:
        errors = heal(triton, errors)
    for model, error in loaded.items():
        print(f"busy: {model} did not classify in time ({error.strip()[:120]}): not a failure")
    for model, error in errors.items():
        print(f"{model}: {error}", file=sys.stderr)
    healthy = [m for m in models if m not in errors and m not in loaded]
    if healthy:  # what was checked, not silence
        print(f"ok: {', '.join(healthy)} classified a text at {triton.base}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
