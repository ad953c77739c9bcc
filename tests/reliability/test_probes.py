"""The Helm chart's probe and preStop commands, as rendered, run against a real tritonserver whose
tokenizer stub was killed: readiness fails, liveness repairs it, readiness passes again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from finsent import Client, OverloadedError, Retry
from k8s import render
from model_repository.assemble import TargetOptions, assemble
from server import health, stack
from server.stack import stub_pids
from tests.model_repository.test_classes import LONG

SCRIPT = Path(health.__file__)


def chart_commands() -> dict[str, list[str]]:
    (deployment,) = [o for o in render.objects(render.render()) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {
        "readiness": container["readinessProbe"]["exec"]["command"],
        "liveness": container["livenessProbe"]["exec"]["command"],
        "preStop": container["lifecycle"]["preStop"]["exec"]["command"],
    }


def run(command: list[str], server) -> int:
    """The pod's command here: this python, this checkout's script, this server's port and key."""
    assert command[:3] == ["python3", "/opt/finsent/health.py", "--url=localhost:8000"]
    local = [sys.executable, str(SCRIPT), f"--url={server.http_url}", *command[3:]]
    local = ["--drain-delay=0" if a.startswith("--drain-delay=") else a for a in local]
    env = {**os.environ, "TRITON_ADMIN_KEY": server.admin_key}
    return subprocess.run(local, env=env, capture_output=True, text=True, timeout=60).returncode


def test_chart_probes_see_a_dead_stub_and_liveness_repairs_it(own_server):
    commands = chart_commands()
    assert run(commands["readiness"], own_server) == 0
    (pid,) = stub_pids(own_server, "distilbert_tokenizer")
    os.kill(pid, signal.SIGKILL)
    assert own_server.ready(), "Triton's own readiness does not see it"
    assert run(commands["readiness"], own_server) == 1
    assert run(commands["liveness"], own_server) == 0, "liveness must repair the model, not fail"
    assert run(commands["readiness"], own_server) == 0
    assert stub_pids(own_server, "distilbert_tokenizer") not in ([], [pid])


def test_heal_reloads_nothing_on_a_timeout(own_server):
    # Under overload a check times out: reloading the Python steps then would take the ensembles
    # away from the requests queued on them. Only a dead stub's error is repaired.
    steps = [f"finbert_{step}" for step in ("tokenizer", "classifier", "postprocess")]
    stubs = {model: stub_pids(own_server, model) for model in steps}
    errors = health.check(health.Triton(own_server.http_url, own_server.admin_key, timeout_s=0.0002), ["finbert"])
    assert "timed out" in errors["finbert"]
    logged = []
    assert health.heal(health.Triton(own_server.http_url, own_server.admin_key), errors, log=logged.append) == {}
    assert {model: stub_pids(own_server, model) for model in steps} == stubs, logged


def test_chart_prestop_drains_the_ensembles_and_liveness_leaves_them_drained(own_server):
    commands = chart_commands()
    assert run(commands["preStop"], own_server) == 0
    triton = health.Triton(own_server.http_url)
    assert not triton.ready("finbert") and not triton.ready("distilbert")
    assert triton.ready("finbert_tokenizer"), "the steps stay loaded for requests still in flight"
    # Probes still run while the pod terminates: they must not load what the drain unloaded.
    assert run(commands["readiness"], own_server) == 1
    assert run(commands["liveness"], own_server) == 1
    assert not triton.ready("finbert") and not triton.ready("distilbert")


def test_the_check_covers_the_models_the_server_has(exports, tmp_path, capsys):
    # `make serve DISTILBERT=` serves finbert alone: the default check must not fail on distilbert.
    repository = assemble({"finbert": exports["finbert"]}, tmp_path / "repo", TargetOptions("local"))
    server = stack.start(repository, tmp_path / "triton", admin=True)
    try:
        assert health.main([f"--url={server.http_url}"]) == 0
        assert health.main([f"--url={server.http_url}", "--model", "distilbert"]) == 1  # named: must be there
        assert "distilbert: Request for unknown model: 'distilbert' is not found" in capsys.readouterr().err
    finally:
        server.stop(timeout_s=3)


def test_the_chart_liveness_command_passes_while_the_server_is_saturated(own_server):
    rows = TargetOptions("local").background_batch_size
    stop = time.monotonic() + 20

    def saturate(traffic):
        with Client(own_server.grpc_url, model="finbert", retry=Retry(attempts=0), traffic=traffic) as client:
            refused = 0
            while time.monotonic() < stop:
                try:
                    client.classify([LONG] * (rows if traffic == "background" else 1))
                except OverloadedError:
                    refused += 1
            return refused

    with ThreadPoolExecutor(96) as pool:
        load = [pool.submit(saturate, "background" if k % 2 else "interactive") for k in range(96)]
        time.sleep(3)
        commands = chart_commands()
        env = {**os.environ, "TRITON_ADMIN_KEY": own_server.admin_key}
        local = [sys.executable, str(SCRIPT), f"--url={own_server.http_url}", *commands["liveness"][3:]]
        liveness = subprocess.run(local, env=env, capture_output=True, text=True, timeout=120)
        readiness = run(commands["readiness"], own_server)
        refused = sum(f.result() for f in load)
    assert refused, "the load did not saturate the server (nothing was refused)"
    assert liveness.returncode == 0, liveness.stdout + liveness.stderr
    assert "ok: finbert" in liveness.stdout, "the probe must pass the queues, not be excused as busy"
    assert readiness == 0
