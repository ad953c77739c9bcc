"""The REST gateway over real HTTP (uvicorn on a free port) with the session's Triton behind it."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from finsent import Client
from finsent.access import API_KEY_HEADER, NO_KEY_BANNER
from finsent.gateway import Settings, create_app
from server.triton import free_ports

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.",
    "The company's shares fell 8% after the warning.",
    "The annual general meeting will be held on 5 May.",
]


class Gateway:
    """create_app() served by uvicorn in a thread, as `finsent gateway` serves it."""

    def __init__(self, settings: Settings):
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60  # a liveness bound: a busy machine starts it in seconds
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "gateway did not start"
            time.sleep(0.05)

    def post(self, path="/", **kw):
        return httpx.post(self.url + path, timeout=30, **kw)

    def get(self, path):
        return httpx.get(self.url + path, timeout=30)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="module")
def gateway(triton):
    running = Gateway(Settings(triton=triton.grpc_url, max_items=8, max_body_bytes=4096))
    yield running
    running.stop()


def predictions(triton, model, texts):
    with Client(triton.grpc_url, model=model) as client:
        return client.classify(texts)


def test_classic_route_keeps_the_starlette_finbert_batch_server_shape(gateway, triton):
    resp = gateway.post(json=[{"text": t} for t in TEXTS])
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    want = predictions(triton, "finbert", TEXTS)
    assert resp.json() == [{"label": p.label, "score": p.score} for p in want]
    assert all(set(row) == {"label", "score"} and isinstance(row["score"], float) for row in resp.json())
    assert gateway.post(json=[]).json() == []


@pytest.mark.parametrize("model", ["distilbert", None])
def test_v1_classify_returns_probabilities_and_the_model(gateway, triton, model):
    body = {"texts": TEXTS} if model is None else {"texts": TEXTS, "model": model}
    resp = gateway.post("/v1/classify", json=body)
    assert resp.status_code == 200, resp.text
    served = model or "finbert"
    want = predictions(triton, served, TEXTS)
    assert resp.json() == {
        "model": served,
        "predictions": [
            {
                "label": p.label,
                "score": p.score,
                "probabilities": {
                    "negative": p.probabilities["negative"],
                    "neutral": p.probabilities["neutral"],
                    "positive": p.probabilities["positive"],
                },
                "net": p.net,
            }
            for p in want
        ],
    }


def test_health_and_readiness(gateway):
    assert gateway.get("/healthz").json() == {"status": "ok"}
    ready = gateway.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["model"] == "finbert"


@pytest.mark.parametrize(
    "path, body, status, item, message",
    [
        ("/", b'[{"text": ', 400, None, "not valid JSON"),
        ("/", {"text": "not a list"}, 422, None, "JSON list"),
        ("/", [{"text": "ok"}, {"text": "ok"}, {"txt": "typo"}], 422, 2, 'item 2 must be an object with a "text"'),
        ("/", [{"text": "ok"}, {"text": 42}], 422, 1, '"text" must be a string'),
        ("/", [{"text": "ok"}] * 9, 413, None, "9 items is over the limit of 8"),
        ("/", [{"text": "x" * 5000}], 413, None, "over the limit of 4096"),
        (
            "/",
            [{"text": "ok"}, {"text": "fine"}, {"text": "good"}, {"text": "  "}],
            422,
            3,
            "item 3: text is empty or whitespace only",
        ),
        ("/v1/classify", {"texts": ["ok"], "model": "nope"}, 404, None, "'nope' is not served"),
        ("/v1/classify", {"texts": ["ok"], "model": "../etc"}, 422, None, '"model" must be a model name'),
        ("/v1/classify", {"texts": ["ok", None]}, 422, 1, "item 1 must be a string"),
        ("/v1/classify", ["ok"], 422, None, '{"texts"'),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_item_and_the_reason(gateway, path, body, status, item, message):
    resp = gateway.post(path, content=body) if isinstance(body, bytes) else gateway.post(path, json=body)
    assert resp.status_code == status, resp.text
    error = resp.json()
    assert message in error["error"]
    assert error.get("item") == item and set(error) <= {"error", "item"}


def test_the_server_keeps_serving_after_bad_requests(gateway):
    assert gateway.post(json=[{"text": "   "}]).status_code == 422
    assert gateway.post(json=[{"text": TEXTS[0]}]).status_code == 200
    assert gateway.get("/").status_code == 405


@pytest.mark.parametrize(
    "method, path, status, error",
    [
        ("GET", "/", 405, "Method Not Allowed"),
        ("PUT", "/v1/classify", 405, "Method Not Allowed"),
        ("POST", "/healthz", 405, "Method Not Allowed"),
        ("GET", "/v2/classify", 404, "Not Found"),
    ],
)
def test_routing_errors_are_json_too(gateway, method, path, status, error):
    resp = httpx.request(method, gateway.url + path, timeout=30)
    assert resp.status_code == status and resp.headers["content-type"] == "application/json"
    assert resp.json() == {"error": error}
    if status == 405:
        allowed = set(resp.headers["allow"].split(", "))  # Starlette keeps them in a set
        assert allowed == ({"GET", "HEAD"} if path == "/healthz" else {"POST"})


def test_api_key_when_set(triton):
    secured = Gateway(Settings(triton=triton.grpc_url, api_key="s3cret"))
    try:
        assert secured.post(json=[{"text": TEXTS[0]}]).status_code == 401
        assert secured.post(json=[{"text": TEXTS[0]}], headers={"X-API-Key": "wrong"}).status_code == 401
        assert secured.post(json=[{"text": TEXTS[0]}], headers={"X-API-Key": "s3cret"}).status_code == 200
        assert (
            secured.post("/v1/classify", json={"texts": TEXTS}, headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert secured.get("/healthz").status_code == 200 and secured.get("/readyz").status_code == 200  # probes
    finally:
        secured.stop()


def rotate(path, text):
    """Rewrite a key file as Kubernetes updates a mounted Secret: a new file swapped in."""
    (path.parent / "next").write_text(text)
    os.replace(path.parent / "next", path)


def test_keys_from_a_mounted_secret_file_401_401_200_and_rotation_without_a_restart(triton, tmp_path):
    from tests.statistics import stats_of

    keys = tmp_path / "api-keys"
    keys.write_text("old-key\nother-key\n")
    secured = Gateway(Settings(triton=triton.grpc_url, api_key_file=str(keys)))
    body = [{"text": TEXTS[0]}]
    try:
        before = stats_of(triton, "finbert")
        missing = secured.post(json=body)
        wrong = secured.post(json=body, headers={API_KEY_HEADER: "wrong"})
        unread = secured.post(content=b"[{", headers={"Authorization": "Bearer wrong"})  # refused before the body
        assert stats_of(triton, "finbert") == before  # no model work for a refused request
        for resp in (missing, wrong, unread):
            assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
            assert resp.json() == {
                "error": f"missing or wrong API key: send header {API_KEY_HEADER}: <key> or Authorization: Bearer <key>"
            }
        assert secured.post(json=body, headers={API_KEY_HEADER: "old-key"}).status_code == 200
        assert secured.post(
            "/v1/classify", json={"texts": TEXTS}, headers={"Authorization": "Bearer other-key"}
        ).is_success
        assert secured.get("/healthz").json() == {"status": "ok"}  # the probes need no key
        assert secured.get("/readyz").status_code == 200

        rotate(keys, "new-key\n")
        assert secured.post(json=body, headers={API_KEY_HEADER: "old-key"}).status_code == 401
        assert secured.post(json=body, headers={API_KEY_HEADER: "new-key"}).status_code == 200
    finally:
        secured.stop()


def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_go_on(triton, tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text("fast\nslow\n")
    limited = Gateway(Settings(triton=triton.grpc_url, api_key_file=str(keys), rate_limit=0.5, rate_burst=2))
    try:
        answers = [limited.post("/v1/classify", json={"texts": []}, headers={API_KEY_HEADER: "fast"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["Retry-After"] == "2" and "0.5 requests/s" in answers[2].json()["error"]
        assert limited.post("/v1/classify", json={"texts": []}, headers={API_KEY_HEADER: "slow"}).status_code == 200
        # a wrong key is refused before it can spend anyone's tokens
        assert limited.post("/v1/classify", json={"texts": []}, headers={API_KEY_HEADER: "x"}).status_code == 401
    finally:
        limited.stop()


def test_finsent_gateway_answers_503_when_triton_is_down(tmp_path):
    """The real entry point (`finsent gateway`), pointed at a port where no Triton listens (how few
    retries it makes first: the next test counts them)."""
    port, dead = free_ports(2)
    unkeyed = {k: v for k, v in os.environ.items() if not k.startswith("FINSENT_API_KEY")}
    env = {**unkeyed, "TRITON_URL": f"localhost:{dead}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "finsent", "gateway", "--port", str(port), "--timeout", "5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        ready = httpx.get(url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["status"] == "not ready" and ready.json()["live"] is False
        for path, body in (("/", [{"text": TEXTS[0]}]), ("/v1/classify", {"texts": TEXTS})):
            resp = httpx.post(url + path, json=body, timeout=60)
            assert resp.status_code == 503
            assert f"localhost:{dead} is unavailable" in resp.json()["error"] and resp.headers["retry-after"] == "1"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    assert f"-> Triton gRPC localhost:{dead}" in output
    assert NO_KEY_BANNER in output  # no key given: the banner says the port is open


def test_a_gateway_whose_triton_is_down_gives_up_after_its_few_short_retries(retries):
    """Settings.retries (2, backoff of at most 1 s) per request, not a client's default 7 (8-16 s):
    counted, not timed."""
    down = Gateway(Settings(triton=f"localhost:{free_ports(1)[0]}"))
    try:
        for path, body in (("/", [{"text": TEXTS[0]}]), ("/v1/classify", {"texts": TEXTS})):
            retries.clear()
            resp = down.post(path, json=body)
            assert resp.status_code == 503, resp.text
            assert len(retries) == Settings().retries and max(retries) <= 1.0, retries
    finally:
        down.stop()


def test_an_overloaded_triton_is_answered_429_with_retry_after(triton):
    # Triton's queues are bounded (model_repository/classes.py): 120 documents at once overfill the
    # document model's, the excess is shed at once, and the gateway (no retries here) says so with 429
    # and when to come back.
    from concurrent.futures import ThreadPoolExecutor

    from tests.model_repository.test_classes import LONG

    running = Gateway(Settings(triton=triton.grpc_url, retries=0, timeout_s=60))
    try:
        with ThreadPoolExecutor(120) as pool:
            answers = list(pool.map(lambda _: running.post("/v1/documents", json={"documents": [LONG]}), range(120)))
    finally:
        running.stop()
    shed = [a for a in answers if a.status_code == 429]
    assert shed, sorted({a.status_code for a in answers})
    assert all(a.headers["Retry-After"] == "1" and "overloaded" in a.json()["error"] for a in shed)
    assert {a.status_code for a in answers} <= {200, 429}
