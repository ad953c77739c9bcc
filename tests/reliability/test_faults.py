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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from export.facts import FAMILIES
from loadtest.traffic import Traffic, grpc_sender
from model_repository.classes import BACKGROUND_SUFFIX
from server import health
from server.stack import stub_pids
from server.triton import ADMIN_HEADER
from tests.waiting import wait_until

# How fast a stub heals is `make faults`' figure (benchmarks/faults.py: healed_s, with and without the
# stub watch); these tests wait for the repair itself, with a deadline only a hang misses.
HEAL_DEADLINE_S = 60


def requests_served(server, model: str) -> int:
    """The requests `model` has answered, as the server counts them (its statistics, admin key)."""
    status, body = health.Triton(server.http_url, server.admin_key).call(f"/v2/models/{model}/stats", admin=True)
    assert status == 200, body
    return int(body["model_stats"][0]["inference_stats"]["success"].get("count", 0))


def test_a_killed_tokenizer_stub_is_detected_and_healed(own_server):
    triton = health.Triton(own_server.http_url, own_server.admin_key)
    assert health.check(triton) == {}
    traffic = Traffic(grpc_sender(own_server.grpc_url, "finbert"), clients=4, pause_after_error_s=0.2).start()
    lines = []
    watchdog = health.Watchdog(
        own_server.http_url, ["finbert", "distilbert"], own_server.admin_key, 0.5, log=lines.append
    )
    try:
        watchdog.start()
        time.sleep(1)
        (pid,) = stub_pids(own_server, "finbert_tokenizer")
        os.kill(pid, signal.SIGKILL)
        # Triton itself still says READY: only a real inference sees it (the readiness probe's check).
        assert own_server.ready()
        assert "finbert" in health.check(triton), "a dead stub must fail the inference health check"
        wait_until(
            lambda: not health.check(triton),
            "the inference check passing again (the watchdog's repair)",
            HEAL_DEADLINE_S,
            process=own_server.process,
            poll_s=0.1,
            detail=lambda: lines,
        )
        healed_at = time.monotonic()
        # Clients are served again: a few calls sent after the repair, all of them answered.
        wait_until(
            lambda: sum(c.began > healed_at for c in list(traffic.calls)) >= 8,
            "8 calls sent after the repair",
            process=own_server.process,
        )
    finally:
        watchdog.stop()
        calls = traffic.stop()
    assert health.check(triton) == {}, lines
    # The watchdog's inference check found it and reloaded the dead step.
    assert any(
        line.startswith("finbert is unhealthy") and "reloading" in line and "finbert_tokenizer" in line
        for line in lines
    ), lines
    assert any(line.startswith("healed finbert") for line in lines), lines
    new = stub_pids(own_server, "finbert_tokenizer")
    assert new and new != [pid]
    last = [c for c in calls if c.began > healed_at]
    assert len(last) >= 8 and not any(c.error for c in last), [c.error for c in last if c.error][:2]


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
    with its inference check only every 30 s. Each line it logs is prefixed with the thread that
    logged it: "finsent-stub-watch: " (the stub watch) or "finsent-watchdog: " (the inference check)."""
    return health.Watchdog(
        server.http_url,
        list(FAMILIES),
        server.admin_key,
        30.0,
        log=lambda line: lines.append(f"{threading.current_thread().name}: {line}"),
        server_pid=server.process.pid,
    )


def first_check_done(server) -> bool:
    """The watchdog's first inference check has classified a text with every family (nothing else
    calls this test's server): its next one is 30 s away."""
    return all(requests_served(server, family) for family in FAMILIES)


def stub_watch_repaired(server, lines: list) -> None:
    """Until the stub watch logs its repair (stub_watchdog's lines)."""
    wait_until(
        lambda: any(line.startswith("finsent-stub-watch: healed") for line in lines),
        "the stub watch's repair",
        HEAL_DEADLINE_S,
        process=server.process,
        detail=lambda: lines,
    )


def test_the_launchers_watchdog_reloads_a_dead_stub_without_waiting_for_a_check(own_server):
    """With the server's pid (as `python -m server` runs it) the watchdog sees the stub process die.

    Its inference check runs only every 30 s here; the repair must be the stub watch's (its thread
    logs it), not the next check's."""
    lines = []
    watchdog = stub_watchdog(own_server, lines)
    triton = health.Triton(own_server.http_url, own_server.admin_key)
    try:
        watchdog.start()
        wait_until(lambda: first_check_done(own_server), "the watchdog's first check", process=own_server.process)
        assert health.python_stubs(own_server.process.pid)  # it sees the stubs
        (pid,) = stub_pids(own_server, "finbert_tokenizer")
        os.kill(pid, signal.SIGKILL)
        stub_watch_repaired(own_server, lines)
    finally:
        watchdog.stop()
    assert "finsent-stub-watch: finbert_tokenizer's Python stub died; reloading finbert_tokenizer" in lines, lines
    assert any(line.startswith("finsent-stub-watch: healed") for line in lines), lines
    assert not any(line.startswith("finsent-watchdog: ") for line in lines), f"the inference check repaired: {lines}"
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
        # until the child shows its new command line
        wait_until(lambda: health.python_stubs(os.getpid()), "the stand-in's command line", process=fake)
        stubs = health.python_stubs(os.getpid())
        assert stubs == {fake.pid: "finbert_tokenizer"}
        fake.kill()
        fake.wait()
        assert health.python_stubs(os.getpid()) == {}  # a plain scan forgets it
        assert health.rescan_stubs(stubs, os.getpid()) == stubs and not health.alive(fake.pid)
    finally:
        fake.kill()


def test_an_unknown_model_is_not_retried():
    from finsent.core import server_error
    from finsent.errors import ModelError, UnavailableError

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
    model has stopped accepting new inference requests" from the step after the running one).
    In flight is what the server says: a request its tokenizer (the first step) has answered. One
    still on its way at the stop may be refused (the ensemble is unloading); none the server has."""
    big = [f"Quarterly revenue rose {i}% while costs fell." * 8 for i in range(64)]
    client = grpcclient.InferenceServerClient(own_server.grpc_url)
    answered, failed, lock = [], [], threading.Lock()

    def send():
        tensor = grpcclient.InferInput("TEXT", [len(big), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in big], dtype=np.object_))
        try:
            client.infer("finbert", [tensor], client_timeout=60)
            with lock:
                answered.append(1)
        except Exception as exc:
            with lock:
                failed.append(str(exc))

    seen = {}

    def caught() -> bool:
        """Requests the tokenizer (the first step) has answered, then those we have back: at least
        their difference is inside the server."""
        reached = requests_served(own_server, "finbert_tokenizer")
        with lock:
            done = len(answered) + len(failed)
        seen.update(reached=reached, in_flight=reached - done)
        return reached > done or all(f.done() for f in sending)

    with ThreadPoolExecutor(8) as pool:
        sending = [pool.submit(send) for _ in range(8)]
        wait_until(caught, "a request inside the server", 60, process=own_server.process, poll_s=0.005)
        assert own_server.stop() == 0
        for future in sending:
            future.result(timeout=60)
    reached, in_flight = seen["reached"], seen["in_flight"]
    assert in_flight > 0, "no request was in flight at the stop: make the batch bigger"
    # Every request the server had taken in was answered, the ones in flight included.
    assert len(answered) >= reached, f"{reached} reached the server, {len(answered)} answered: {failed[:2]}"


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
    # In flight, as the server says: the document model has had its first sentences scored (by the
    # ensemble it calls: background work's copy, model_repository/classes.py).
    wait_until(
        lambda: requests_served(own_server, "finbert" + BACKGROUND_SUFFIX) > 0 or not thread.is_alive(),
        "the document's first sentences scored",
        process=own_server.process,
    )
    assert thread.is_alive(), f"the document was done before the stop: make it longer ({outcome})"
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
        wait_until(lambda: first_check_done(own_server), "the watchdog's first check", process=own_server.process)
        pid = stub_pids(own_server, "finbert_document")[0]
        os.kill(pid, signal.SIGKILL)
        stub_watch_repaired(own_server, lines)
    finally:
        watchdog.stop()
    assert any(line.startswith("finsent-stub-watch: finbert_document's Python stub died") for line in lines), lines
    assert any(line.startswith("finsent-stub-watch: healed") for line in lines), lines
    assert pid not in stub_pids(own_server, "finbert_document")
    for _ in range(4):  # both instances serve
        assert client.infer("finbert_document", [tensor]).as_numpy("SENTENCES")[0][0] == 2
