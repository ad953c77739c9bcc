"""Faults on a real tritonserver: a dead Python stub heals, SIGTERM drains, admin APIs stay closed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from export.facts import FAMILIES
from loadtest.traffic import Traffic, grpc_sender
from server import health
from server.stack import stub_pids
from server.triton import ADMIN_HEADER


def test_a_killed_tokenizer_stub_is_detected_and_healed_within_10_s(own_server):
    triton = health.Triton(own_server.http_url, own_server.admin_key)
    assert health.check(triton) == {}
    traffic = Traffic(grpc_sender(own_server.grpc_url, "finbert"), clients=4, pause_after_error_s=0.2).start()
    watchdog = health.Watchdog(own_server.http_url, ["finbert", "distilbert"], own_server.admin_key, 0.5, log=print)
    try:
        watchdog.start()
        time.sleep(1)
        (pid,) = stub_pids(own_server, "finbert_tokenizer")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Triton itself still says READY: only a real inference sees it (the readiness probe's check).
        assert own_server.ready()
        assert "finbert" in health.check(triton), "a dead stub must fail the inference health check"
        while health.check(triton) and time.monotonic() - killed_at < 10:
            time.sleep(0.1)
        healed_s = time.monotonic() - killed_at
        time.sleep(1)
    finally:
        watchdog.stop()
        calls = traffic.stop()
    assert health.check(triton) == {}, f"not healed after {healed_s:.1f} s"
    assert healed_s < 10
    new = stub_pids(own_server, "finbert_tokenizer")
    assert new and new != [pid]
    # Clients are served again: nothing fails after the repair.
    last = [c for c in calls if c.began > killed_at + healed_s]
    assert last and not any(c.error for c in last)


def test_finsent_clients_ride_through_a_stub_death_without_errors(own_server):
    """While the watchdog replaces a dead stub, the client's retries hide it from callers."""
    from finsent import Client

    watchdog = health.Watchdog(own_server.http_url, ["finbert", "distilbert"], own_server.admin_key, 0.5, log=print)
    texts = ["Operating profit rose.", "Shares fell after the warning.", "The dividend is unchanged."]
    results, errors = [], []

    def caller():
        with Client(own_server.grpc_url, "grpc", "finbert", timeout_s=10) as client:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                try:
                    results.append(client.classify(texts))
                except Exception as exc:  # asserted below: there must be none
                    errors.append(exc)

    try:
        watchdog.start()
        time.sleep(1)
        (pid,) = stub_pids(own_server, "finbert_tokenizer")
        os.kill(pid, signal.SIGKILL)
        threads = [threading.Thread(target=caller) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        watchdog.stop()
    assert stub_pids(own_server, "finbert_tokenizer") != [pid], "the stub was not replaced"
    assert not errors, f"{len(errors)} calls failed: {errors[:2]}"
    assert results and all(len(r) == len(texts) for r in results)


def stub_watchdog(server, lines: list) -> health.Watchdog:
    """The watchdog as `python -m server` runs it (it knows the server's pid, so it watches the stubs),
    with its inference check only every 30 s: a repair within seconds is the stub watch's."""
    return health.Watchdog(
        server.http_url, list(FAMILIES), server.admin_key, 30.0, log=lines.append, server_pid=server.process.pid
    )


def test_the_launchers_watchdog_reloads_a_dead_stub_without_waiting_for_a_check(own_server):
    """With the server's pid (as `python -m server` runs it) the watchdog sees the stub process die.

    Its inference check runs only every 30 s here, so a repair within seconds is the stub watch's."""
    lines = []
    watchdog = stub_watchdog(own_server, lines)
    triton = health.Triton(own_server.http_url, own_server.admin_key)
    try:
        watchdog.start()
        time.sleep(1)  # past the first check
        assert health.python_stubs(own_server.process.pid)  # it sees the stubs
        (pid,) = stub_pids(own_server, "finbert_tokenizer")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while not any(line.startswith("healed") for line in lines) and time.monotonic() - killed_at < 10:
            time.sleep(0.05)
        healed_s = time.monotonic() - killed_at
    finally:
        watchdog.stop()
    assert any("finbert_tokenizer's Python stub died" in line for line in lines), lines
    assert healed_s < 5, f"healed after {healed_s:.1f} s: {lines}"
    assert health.check(triton) == {}
    assert stub_pids(own_server, "finbert_tokenizer") not in ([], [pid])


def test_a_stub_that_died_before_a_rescan_stays_watched(tmp_path):
    """A dying stub drops out of a new scan (an exiting process loses its command line before it is
    a zombie; a reaped one has no /proc entry). The stub watch's rescan keeps it until alive() calls
    it dead, so its model is still reloaded: a fresh-clone CI run lost a death between two looks."""
    model_py = tmp_path / "finbert_tokenizer" / "1" / "model.py"
    model_py.parent.mkdir(parents=True)
    model_py.touch()
    # A stand-in stub, child of this process, with the command line python_stubs() recognises.
    fake = subprocess.Popen(
        ["/opt/triton_python_backend_stub", str(model_py), "-f"],
        executable=shutil.which("tail"),
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not (stubs := health.python_stubs(os.getpid())) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the child shows its new command line
        assert stubs == {fake.pid: "finbert_tokenizer"}
        fake.kill()
        fake.wait()
        assert health.python_stubs(os.getpid()) == {}  # a plain scan forgets it
        assert health.rescan_stubs(stubs, os.getpid()) == stubs and not health.alive(fake.pid)
    finally:
        fake.kill()


def test_an_unknown_model_is_not_retried():
    from finsent.core import ModelError, UnavailableError, server_error

    assert isinstance(
        server_error("StatusCode.NOT_FOUND", "Request for unknown model: 'foo' is not found", "foo"), ModelError
    )
    transient = "Request for unknown model: 'finbert' has no available versions"
    assert isinstance(server_error("StatusCode.NOT_FOUND", transient, "finbert"), UnavailableError)
    assert isinstance(
        server_error("StatusCode.INTERNAL", "Stub process 'finbert_tokenizer_0_0' is not healthy.", "finbert"),
        UnavailableError,
    )


def test_stop_drains_in_flight_requests(own_server):
    """TritonServer.stop() (the launcher's Ctrl-C / SIGTERM) unloads the ensembles first, then SIGTERM.

    Triton's SIGTERM alone lost every ensemble request in flight ("Server is stopping, scheduler for
    model has stopped accepting new inference requests" from the step after the running one)."""
    big = [f"Quarterly revenue rose {i}% while costs fell." * 8 for i in range(64)]
    client = grpcclient.InferenceServerClient(own_server.grpc_url)
    results, lock = [], threading.Lock()

    def send():
        tensor = grpcclient.InferInput("TEXT", [len(big), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in big], dtype=np.object_))
        began = time.monotonic()
        try:
            client.infer("finbert", [tensor], client_timeout=60)
            error = None
        except Exception as exc:
            error = str(exc)
        with lock:
            results.append((began, time.monotonic(), error))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    stop_at = time.monotonic()
    assert own_server.stop() == 0
    for thread in threads:
        thread.join(60)
    in_flight = [r for r in results if r[0] < stop_at < r[1]]
    assert in_flight, "no request was in flight at the stop: make the batch bigger"
    assert [r[2] for r in in_flight] == [None] * len(in_flight)


def http(server, path, body=None, headers=None):
    request = urllib.request.Request(
        f"http://{server.http_url}{path}",
        data=None if body is None else body,
        headers=headers or {},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


# docs/SECURITY.md: what a remote caller of `python -m server` (and of a pod) can reach.
OPEN = [
    ("/v2/health/ready", None),
    ("/v2/health/live", None),
    ("/v2", None),
    ("/v2/models/finbert", None),
    ("/v2/models/finbert/config", None),
    ("/v2/models/finbert/infer", b'{"inputs":[{"name":"TEXT","datatype":"BYTES","shape":[1,1],"data":["Up."]}]}'),
]
RESTRICTED = [
    ("/v2/repository/index", b"{}"),
    ("/v2/repository/models/finbert_tokenizer/unload", b"{}"),
    ("/v2/repository/models/finbert_tokenizer/load", b"{}"),
    ("/v2/models/stats", None),
    ("/v2/logging", None),
    ("/v2/trace/setting", None),
    ("/v2/systemsharedmemory/status", None),
    ("/v2/cudasharedmemory/status", None),
]


def test_only_inference_health_and_metadata_are_open_without_the_admin_key(own_server):
    assert [http(own_server, path, body) for path, body in OPEN] == [200] * len(OPEN)
    for headers in ({}, {ADMIN_HEADER: "wrong"}):
        codes = [http(own_server, path, body, headers) for path, body in RESTRICTED]
        assert 200 not in codes, dict(zip([p for p, _ in RESTRICTED], codes))
    assert own_server.ready() and health.check(health.Triton(own_server.http_url)) == {}
    # The watchdog's key opens them (the same call it makes to repair a stub).
    assert http(own_server, "/v2/models/stats", None, {ADMIN_HEADER: own_server.admin_key}) == 200
    # gRPC: the same, with the key in metadata "triton-grpc-protocol-<header>".
    grpc = grpcclient.InferenceServerClient(own_server.grpc_url)
    for call in (
        grpc.get_model_repository_index,
        grpc.get_inference_statistics,
        grpc.get_log_settings,
        grpc.get_system_shared_memory_status,
        lambda: grpc.unload_model("finbert_tokenizer"),
    ):
        with pytest.raises(InferenceServerException):
            call()
    assert grpc.is_model_ready("finbert") and grpc.get_model_config("finbert")
    key = {f"triton-grpc-protocol-{ADMIN_HEADER}": own_server.admin_key}
    assert grpc.get_model_repository_index(headers=key)
    assert health.Triton(own_server.http_url, own_server.admin_key).reload("finbert_postprocess") is None
    assert health.check(health.Triton(own_server.http_url)) == {}


def test_stop_drains_documents_in_flight(own_server):
    """The document models call the ensembles: they are drained first, so a document in flight at
    the stop is scored to its end instead of losing the sentences its ensemble would refuse."""
    document = " ".join(f"Quarterly revenue rose {i}% while costs fell." for i in range(3000))
    client = grpcclient.InferenceServerClient(own_server.grpc_url)
    outcome = {}

    def send():
        tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[document.encode()]], dtype=np.object_))
        try:
            result = client.infer("finbert_document", [tensor], client_timeout=120)
            outcome["sentences"] = int(result.as_numpy("SENTENCES")[0][0])
        except Exception as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the document was done before the stop: make it longer"
    assert own_server.stop() == 0
    thread.join(120)
    assert outcome == {"sentences": 3000}


def test_the_launchers_watchdog_reloads_a_dead_document_stub(own_server):
    """The stub watch covers every Python model, the document models (two instances) included."""
    lines = []
    watchdog = stub_watchdog(own_server, lines)
    client = grpcclient.InferenceServerClient(own_server.grpc_url)
    tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"Profit rose. Costs fell."]], dtype=np.object_))
    try:
        watchdog.start()
        time.sleep(1)
        pid = stub_pids(own_server, "finbert_document")[0]
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while not any(line.startswith("healed") for line in lines) and time.monotonic() - killed_at < 10:
            time.sleep(0.05)
    finally:
        watchdog.stop()
    assert any("finbert_document's Python stub died" in line for line in lines), lines
    assert pid not in stub_pids(own_server, "finbert_document")
    for _ in range(4):  # both instances serve
        assert client.infer("finbert_document", [tensor]).as_numpy("SENTENCES")[0][0] == 2
