"""finsent.Client / AsyncClient against the real tritonserver of the session."""

import asyncio
import importlib
import socket
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from export.facts import CANONICAL_LABELS
from finsent import (
    AsyncClient,
    Client,
    Failure,
    FinsentError,
    ModelError,
    ModelStatus,
    Prediction,
    RequestTimeout,
    RestrictedError,
    Retry,
    TextError,
    UnavailableError,
)
from finsent.core import NOT_SERVED
from model_repository.assemble import TargetOptions
from server import stack
from server.triton import ADMIN_HEADER, free_ports
from tests.statistics import requests_of

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.",
    "The company's shares fell 8% after the warning.",
    "The annual general meeting will be held on 5 May.",
    "Sales of the unit declined sharply in the quarter.",
]
MANY = [
    f"Item {i}: net sales {'rose' if i % 3 else 'fell'} {i % 97} percent" + " in the period" * (i % 5)
    for i in range(1000)
]


def url(triton, protocol):
    return triton.grpc_url if protocol == "grpc" else triton.http_url


def raw(triton, model, texts):
    """What Triton answers to plain gRPC requests (50 texts each): the reference for the client."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    labels, probs = [], []
    try:
        for start in range(0, len(texts), 50):
            part = texts[start : start + 50]
            tensor = grpcclient.InferInput("TEXT", [len(part), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[t.encode()] for t in part], dtype=np.object_))
            result = client.infer(model, [tensor])
            labels += [x.decode() for x in result.as_numpy("LABEL").reshape(-1)]
            probs.append(result.as_numpy("PROBABILITIES"))
        return labels, np.concatenate(probs)
    finally:
        client.close()


def classify(triton, protocol, mode, texts, model="finbert", address=None, **kw):
    address = address or url(triton, protocol)
    if mode == "sync":
        with Client(address, protocol, model, **kw) as client:
            return client.classify(texts)

    async def run():
        async with AsyncClient(address, protocol, model, **kw) as client:
            return await client.classify(texts)

    return asyncio.run(run())


def check_against_raw(triton, model, texts, predictions):
    labels, probs = raw(triton, model, texts)
    assert [p.label for p in predictions] == labels
    got = np.array([[p.probabilities[l] for l in CANONICAL_LABELS] for p in predictions])
    np.testing.assert_allclose(got, probs, atol=1e-6)
    assert all(p.score == max(p.probabilities.values()) for p in predictions)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("model", ["finbert", "distilbert"])
def test_classify_returns_what_triton_answers(triton, protocol, mode, model):
    predictions = classify(triton, protocol, mode, TEXTS, model)
    assert all(isinstance(p, Prediction) for p in predictions)
    assert all(list(p.probabilities) == list(CANONICAL_LABELS) for p in predictions)
    check_against_raw(triton, model, TEXTS, predictions)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_thousand_texts_go_in_max_batch_chunks_and_come_back_in_order(triton, protocol, mode, monkeypatch):
    # Count what this client sends (through the real tritonclient call): the server's own
    # statistics also count anyone else's traffic to the shared test server.
    sent = []
    module = importlib.import_module(f"tritonclient.{protocol}{'.aio' if mode == 'async' else ''}")
    real = module.InferenceServerClient.infer

    def counted(self, model_name, inputs, *args, **kwargs):
        sent.append(inputs[0].shape()[0])
        return real(self, model_name, inputs, *args, **kwargs)

    monkeypatch.setattr(module.InferenceServerClient, "infer", counted)
    before = requests_of(triton, "finbert")
    predictions = classify(triton, protocol, mode, MANY, max_in_flight=4)
    assert sorted(sent, reverse=True) == [64] * 15 + [len(MANY) - 15 * 64]  # 16 requests of <= 64
    # ...and the server saw them (its statistics are recorded just after a response is sent).
    deadline = time.monotonic() + 30
    while requests_of(triton, "finbert") - before < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert requests_of(triton, "finbert") - before >= len(sent)
    # The reference groups the texts differently (reversed, 50 at a time): any reordering shows.
    labels, probs = raw(triton, "finbert", MANY[::-1])
    reference = {t: (l, p) for t, l, p in zip(MANY[::-1], labels, probs)}
    assert [p.label for p in predictions] == [reference[t][0] for t in MANY]
    np.testing.assert_allclose(
        [[p.probabilities[l] for l in CANONICAL_LABELS] for p in predictions],
        [reference[t][1] for t in MANY],
        atol=1e-6,
    )
    assert len({p.label for p in predictions}) >= 2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_refused_text_is_named_by_its_index_in_the_whole_list(triton, protocol):
    texts = list(MANY[:300])
    texts[203] = "   "
    with Client(url(triton, protocol), protocol) as client:
        with pytest.raises(TextError) as caught:
            client.classify(texts)
        assert caught.value.index == 203 and "text 203 is empty or whitespace only" in str(caught.value)
        results = client.classify(texts, on_error="return")
    assert isinstance(results[203], Failure) and results[203].index == 203
    assert sum(isinstance(r, Failure) for r in results) == 1
    check_against_raw(triton, "finbert", texts[:203] + texts[204:], results[:203] + results[204:])


def test_async_refused_text_and_invalid_utf8(triton):
    texts = ["fine", "also fine", b"\xff\xfe not utf-8", "fine again"]

    async def run():
        async with AsyncClient(triton.http_url, "http") as client:
            with pytest.raises(TextError) as caught:
                await client.classify(texts)
            return caught.value, await client.classify(texts, on_error="return")

    error, results = asyncio.run(run())
    assert error.index == 2 and "not valid UTF-8" in str(error)
    assert [type(r).__name__ for r in results] == ["Prediction", "Prediction", "Failure", "Prediction"]


def test_health_models_and_model_info(triton):
    with Client(triton.grpc_url, model="distilbert") as client:
        assert client.health().ok
        assert client.info.max_batch_size == 64 and client.info.labels == CANONICAL_LABELS
        states = {m.name: m.state for m in client.models()}
    assert states["finbert"] == states["distilbert"] == "READY"
    with Client(triton.http_url, "http", model="nope") as client:
        health = client.health()
        assert health.live and health.ready and not health.model_ready and not health.ok
        with pytest.raises(ModelError, match="nope"):
            client.classify(["x"])
        with pytest.raises(ModelError, match="not a finsent ensemble"):
            Client(triton.http_url, "http", model="finbert_tokenizer").classify(["x"])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_unreachable_server_fails_fast_and_clearly(protocol, retries):
    dead = f"localhost:{free_ports(1)[0]}"
    with Client(dead, protocol, retry=Retry(attempts=2, initial_s=0.05), timeout_s=5) as client:
        assert not client.health().live
        assert retries == []  # health() never retries
        with pytest.raises(UnavailableError):
            client.classify(["x"])
    assert len(retries) == 2  # the retries it was given, then the error

    async def run():
        async with AsyncClient(dead, protocol, retry=Retry(attempts=2, initial_s=0.05), timeout_s=5) as client:
            with pytest.raises(UnavailableError):
                await client.classify(["x"])

    asyncio.run(run())
    assert len(retries) == 4


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "protocol, port, says",
    [
        ("http", "grpc", "does not speak HTTP .*: is it the gRPC port"),
        ("grpc", "http", "does not speak gRPC .*: is it the HTTP port"),
    ],
)
def test_the_other_protocols_port_is_named_at_once(triton, mode, protocol, port, says, retries):
    """gRPC to the HTTP port retried 13 s and then said "Connection refused" (issue 17)."""
    address = triton.grpc_url if port == "grpc" else triton.http_url
    with pytest.raises(FinsentError, match=f"{address} {says}"):
        classify(triton, protocol, mode, TEXTS, address=address)
    assert retries == []  # a wrong port is not retried


def test_clients_retry_through_a_server_restart(triton, exports, tmp_path):
    """A server of our own (finbert only, free ports) is stopped and started again while a sync
    gRPC client and an async HTTP client retry; both calls succeed once it is back."""
    server = stack.serve({"finbert": exports["finbert"]}, tmp_path, TargetOptions("local"))
    retry = Retry(attempts=12, initial_s=0.2, max_s=2.0)  # up to ~20 s of retries: bounded
    sync_client = Client(server.grpc_url, "grpc", retry=retry, timeout_s=10)
    try:
        assert len(sync_client.classify(TEXTS)) == 4  # connected, model config cached
        server.stop()
        with pytest.raises(UnavailableError):  # really down
            Client(server.grpc_url, retry=Retry(attempts=0)).classify(TEXTS)
        results = {}
        during = threading.Thread(target=lambda: results.update(grpc=sync_client.classify(TEXTS)))
        during.start()

        async def http_call():
            async with AsyncClient(server.http_url, "http", retry=retry, timeout_s=10) as client:
                return await client.classify(TEXTS)

        restart = threading.Timer(1.0, server.start)
        restart.start()
        results["http"] = asyncio.run(http_call())
        during.join(30)
        restart.join()
        for predictions in results.values():
            check_against_raw(triton, "finbert", TEXTS, predictions)
        assert set(results) == {"grpc", "http"}
    finally:
        sync_client.close()
        server.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_server_that_never_answers_times_out_instead_of_hanging(protocol):
    silent = socket.socket()  # accepts connections (kernel backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"127.0.0.1:{silent.getsockname()[1]}"
    # HTTP connects and then waits for an answer; gRPC never gets its SETTINGS frame and says UNAVAILABLE.
    expected = RequestTimeout if protocol == "http" else (RequestTimeout, UnavailableError)
    try:
        started = time.monotonic()
        with Client(url, protocol, timeout_s=1, retry=Retry(attempts=0)) as client:
            with pytest.raises(expected):
                client.classify(["x"])

        async def run():
            async with AsyncClient(url, protocol, timeout_s=1, retry=Retry(attempts=0)) as client:
                with pytest.raises(expected):
                    await client.classify(["x"])

        asyncio.run(run())
        # A liveness bound, not a speed: a hang, or tritonclient's own timeouts (60 s for HTTP, none
        # for gRPC) instead of timeout_s=1, would take longer.
        assert time.monotonic() - started < 40
    finally:
        silent.close()


def admin_index(server) -> list[ModelStatus]:
    """The repository index as only the admin key may read it: the truth models() is checked against."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        index = client.get_model_repository_index(
            headers={f"triton-grpc-protocol-{ADMIN_HEADER}": server.admin_key}, as_json=True
        )
    finally:
        client.close()
    return [ModelStatus(m["name"], m["version"], m["state"]) for m in index["models"]]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_models_lists_the_ensembles_where_the_repository_index_is_restricted(
    restricted_triton, protocol, mode, retries
):
    """As `make serve` runs Triton, the index needs the admin key. models() must neither fail nor
    retry (gRPC calls the restriction UNAVAILABLE): it lists the ensembles and their steps by metadata."""
    server = restricted_triton
    if mode == "sync":
        with Client(url(server, protocol), protocol) as client:
            rows = client.models()
    else:

        async def run():
            async with AsyncClient(url(server, protocol), protocol) as client:
                return await client.models()

        rows = asyncio.run(run())
    assert retries == []
    truth = admin_index(server)
    assert {m.name for m in truth} == {
        "finbert",
        "finbert_tokenizer",
        "finbert_classifier",
        "finbert_postprocess",
        "finbert_document",
        "finbert_background",  # background work's copy (model_repository/classes.py): listed too
        "finbert_classifier_background",
    }
    assert rows == sorted(
        truth + [ModelStatus("distilbert", "", "UNAVAILABLE", NOT_SERVED)], key=lambda m: (m.name, m.version)
    )


def test_a_restricted_api_is_refused_at_once_and_named(restricted_triton, retries):
    with Client(restricted_triton.grpc_url) as client:
        with pytest.raises(RestrictedError, match="admin key"):
            client._call(lambda c: c.get_inference_statistics("finbert", as_json=True))
    assert retries == []


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_logits_come_only_when_asked_for(triton, protocol, mode):
    from export.calibrate import softmax

    plain = classify(triton, protocol, mode, TEXTS)
    assert all(p.logits is None and "logits" not in p.as_dict() for p in plain)
    asked = classify(triton, protocol, mode, TEXTS, logits=True)
    for p, q in zip(asked, plain):
        assert (p.label, p.probabilities) == (q.label, q.probabilities)
        z = np.array([[p.logits[label] for label in CANONICAL_LABELS]])
        # The session's models have T = 1: the probabilities are the softmax of the raw scores.
        np.testing.assert_allclose(softmax(z)[0], [p.probabilities[label] for label in CANONICAL_LABELS], atol=1e-6)
        assert list(p.as_dict()["logits"]) == list(CANONICAL_LABELS)
