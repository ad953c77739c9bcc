"""The container repository (what the NGC image serves on GKE) on a real tritonserver 2.51 with Triton's
native onnxruntime backend (r24.10, ONNX Runtime 1.19.2) built here. Parity, batching and bad inputs
run against every target in test_ensemble.py and the error contract; this module covers what only
the container has: the native backend, its shapes, one-family repositories, the chart's probes."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient

from k8s import render
from model_repository.assemble import TargetOptions
from server import health, stack
from tests.conftest import CONTAINER_PROFILES
from tests.reliability.test_probes import run


def chart_commands(**values) -> dict[str, list[str]]:
    """The probe commands of the chart rendered with the gpu profile and `values`."""
    (deployment,) = [o for o in render.objects(render.render(["gpu"], values)) if o["kind"] == "Deployment"]
    (triton,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "triton"]
    return {probe: triton[f"{probe}Probe"]["exec"]["command"] for probe in ("readiness", "liveness")}


def config(server, model: str) -> dict:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/config") as resp:
        return json.loads(resp.read())


def test_the_gpu_profile_classifier_runs_on_the_native_backend_and_the_cpu_profile_on_python(container, container_cpu):
    for family in ("finbert", "distilbert"):
        assert config(container, f"{family}_classifier")["backend"] == "onnxruntime"
        assert config(container_cpu, f"{family}_classifier")["backend"] == "python"
    log = (container.log_path).read_text()
    assert "TRITONBACKEND_Initialize: onnxruntime" in log and "successfully loaded 'finbert_classifier'" in log


def tokenize(server, family: str, texts: list[str]) -> np.ndarray:
    """The tokenizer step alone: each text as its own request, as concurrent clients send them."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        shapes = []
        for text in texts:
            tensor = httpclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
            shapes.append(client.infer(f"{family}_tokenizer", [tensor]).as_numpy("input_ids").shape)
        return shapes
    finally:
        client.close()


@pytest.mark.parametrize("family", ["finbert", "distilbert"])
def test_the_native_classifier_gets_one_shape_for_sentences_of_any_usual_length(container, family):
    # Triton's dynamic batcher only joins requests of one shape: sentences of 3 to ~100 tokens must
    # all arrive padded alike, or concurrent clients' requests run one by one (mean batch 1.46).
    texts = [
        "Up.",
        "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.",
        "Net sales decreased by 5.2% year on year, while the operating margin fell. " * 5,
    ]
    shapes = tokenize(container, family, texts)
    assert len(set(shapes)) == 1, shapes
    # A text past the first bucket gets the model's max length, never a shape of its own.
    (long_shape,) = tokenize(container, family, ["revenue " * 300])
    assert long_shape[1] > shapes[0][1]


def test_the_cpu_profile_pads_each_request_to_its_longest_text_only(container_cpu):
    # Its Python classifier joins ragged requests and splits them into length-sorted runs.
    short, long = tokenize(container_cpu, "finbert", ["Up.", "Net sales decreased by 5.2% year on year. " * 3])
    assert short[1] < long[1] < 64
    assert config(container_cpu, "finbert_classifier")["input"][0]["allow_ragged_batch"]


def test_the_health_check_passes_on_both_profiles(container, container_cpu):
    for server in (container, container_cpu):
        assert health.check(health.Triton(server.http_url, server.admin_key)) == {}


@pytest.fixture
def finbert_only(exports, tmp_path):
    server = stack.serve({"finbert": exports["finbert"]}, tmp_path, CONTAINER_PROFILES["container"], admin=True)
    yield server
    server.stop(timeout_s=3)  # after a stub death Triton would wait out its exit timeout


def test_a_one_family_container_repository_serves_and_the_chart_probes_heal_it(finbert_only):
    """The chart's readiness/liveness commands, as rendered, against the gpu profile's repository with
    FinBERT alone: a dead stub fails readiness, liveness repairs it."""
    server = finbert_only
    status, index = health.Triton(server.http_url, server.admin_key).call("/v2/repository/index", {}, admin=True)
    assert status == 200
    assert sorted(m["name"] for m in index) == [
        "finbert",
        "finbert_classifier",
        "finbert_document",
        "finbert_postprocess",
        "finbert_tokenizer",
    ]
    commands = chart_commands(models=["finbert"])
    assert run(commands["readiness"], server) == 0
    (pid,) = stack.stub_pids(server, "finbert_tokenizer")
    os.kill(pid, signal.SIGKILL)
    assert run(commands["readiness"], server) == 1
    assert run(commands["liveness"], server) == 0, "liveness must repair the model, not fail"
    assert run(commands["readiness"], server) == 0
    assert stack.stub_pids(server, "finbert_tokenizer") not in ([], [pid])


def test_the_watchdog_heals_a_dead_stub_of_the_container_repository(finbert_only):
    server = finbert_only
    triton = health.Triton(server.http_url, server.admin_key)
    (pid,) = stack.stub_pids(server, "finbert_postprocess")
    os.kill(pid, signal.SIGKILL)
    assert "finbert" in health.check(triton, ["finbert"])
    watchdog = health.Watchdog(
        server.http_url, ["finbert"], server.admin_key, 0.2, log=print, server_pid=server.process.pid
    )
    watchdog.start()
    try:
        for _ in range(100):
            if not health.check(triton, ["finbert"]):
                break
            watchdog.join(0.1)
    finally:
        watchdog.stop()
    assert health.check(triton, ["finbert"]) == {}


def test_cpu_instances_are_only_for_the_gpu_profile():
    with pytest.raises(ValueError, match="device must be gpu"):
        TargetOptions("container", "cpu", cpu_instances=True)
    with pytest.raises(ValueError, match="local target's classifier"):
        TargetOptions("local", classifier="onnxruntime")
