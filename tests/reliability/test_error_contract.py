"""The bad-input corpus (bad_inputs.py) against the real server, while good traffic runs alongside:
every bad request gets its specific error, and the good traffic sees 0 errors."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from export.facts import ModelFacts
from finsent.gateway import Settings
from loadtest.traffic import Traffic, grpc_sender
from tests.client.test_gateway import Gateway
from tests.reliability.bad_inputs import CASES, GATEWAY_CASES


def send_http(url: str, request) -> tuple[int, dict]:
    if isinstance(request, dict):
        request = dict(request)
        model = request.pop("model", "finbert")
        body = json.dumps(request).encode()
    else:
        model, body = "finbert", request
    req = urllib.request.Request(
        f"http://{url}/v2/models/{model}/infer", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def send_grpc(url: str, request) -> tuple[str, str]:
    model, rows, datatype = request
    array = np.array([[r] for r in rows], dtype=np.object_ if datatype == "BYTES" else np.int32)
    tensor = grpcclient.InferInput("TEXT", list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    try:
        grpcclient.InferenceServerClient(url).infer(model, [tensor], client_timeout=60)
        return "OK", ""
    except InferenceServerException as exc:
        return exc.status().replace("StatusCode.", ""), exc.message()


@pytest.fixture(scope="module", params=["triton", "container"])
def served(request):
    """The local target and the container repository (gpu profile: native onnxruntime backend)."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def good_traffic(served):
    """4 clients classifying good texts on both models while the bad inputs go in."""
    traffic = [Traffic(grpc_sender(served.grpc_url, model), clients=2).start() for model in ("finbert", "distilbert")]
    yield traffic
    calls = [c for t in traffic for c in t.stop()]
    assert len(calls) > 20, "the good traffic hardly ran"
    assert [c.error for c in calls if c.error] == [], "good traffic failed while bad inputs were sent"


@pytest.mark.parametrize("name, protocol, request_, status, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_specific_error(served, good_traffic, name, protocol, request_, status, message):
    if protocol == "http":
        got, body = send_http(served.http_url, request_)
        text = body.get("error", "")
    else:
        got, text = send_grpc(served.grpc_url, request_)
    assert got == status, f"{name}: {got} {text}"
    if message:
        assert re.search(message, text), f"{name}: {text!r}"
    else:
        outputs = {o["name"]: o for o in body["outputs"]}
        rows = request_["inputs"][0]["shape"][0]
        assert outputs["PROBABILITIES"]["shape"] == [rows, 3] and outputs["LABEL"]["shape"] == [rows, 1]


@pytest.fixture(scope="module")
def gateway(triton):
    running = Gateway(Settings(triton=triton.grpc_url))  # the default limits
    yield running
    running.stop()


@pytest.fixture(scope="module")
def good_gateway_traffic(gateway):
    """2 clients posting good texts through the gateway while the bad bodies go in."""

    def make():
        def send(text):
            resp = gateway.post(json=[{"text": text}])
            assert resp.status_code == 200, resp.text

        return send, lambda: None

    traffic = Traffic(make, clients=2).start()
    yield traffic
    deadline = time.monotonic() + 30  # a loaded machine may have sent few so far: let it send some more
    while len(traffic.calls) <= 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    calls = traffic.stop()
    assert len(calls) > 10 and [c.error for c in calls if c.error] == []


@pytest.mark.parametrize("name, path, body, status, message", GATEWAY_CASES, ids=[c[0] for c in GATEWAY_CASES])
def test_gateway_bad_body_gets_its_specific_error(gateway, good_gateway_traffic, name, path, body, status, message):
    resp = gateway.post(path, content=body) if isinstance(body, bytes) else gateway.post(path, json=body)
    assert resp.status_code == status, f"{name}: {resp.text[:200]}"
    if message:
        assert message in resp.json()["error"], resp.text


def test_the_ensemble_config_says_where_texts_are_cut(triton, exports):
    for family, export in exports.items():
        with urllib.request.urlopen(f"http://{triton.http_url}/v2/models/{family}/config") as resp:
            config = json.loads(resp.read())
        assert int(config["parameters"]["max_length"]["string_value"]) == ModelFacts.load(export).max_length


def test_every_bad_input_left_the_server_serving(served, good_traffic):
    time.sleep(0.5)
    status, body = send_http(
        served.http_url, {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1, 1], "data": ["Profit rose."]}]}
    )
    assert status == 200
