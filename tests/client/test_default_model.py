"""Issue 17: with no model named, clients, CLI and gateway use what the server serves: its one
finsent ensemble, or core.DEFAULT_MODEL among several; a model it lacks is refused naming those
it serves. Against `make serve`'s settings (restricted repository index) serving DistilBERT only."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finsent import AsyncClient, Client, ModelError

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["Profit rose 12%.", "Shares fell."]


def finsent(*args, env=None):
    env = {k: v for k, v in os.environ.items() if k != "FINSENT_MODEL"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "finsent", *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_client_uses_the_one_model_served(distilbert_triton, protocol):
    url = distilbert_triton.grpc_url if protocol == "grpc" else distilbert_triton.http_url
    with Client(url, protocol) as client:
        predictions = client.classify(TEXTS)
        assert client.model == "distilbert"
        health = client.health()
    with Client(url, protocol, "distilbert") as named:
        assert predictions == named.classify(TEXTS)
    assert health.ok and health.model == "distilbert"


def test_the_async_client_too(distilbert_triton):
    async def run():
        async with AsyncClient(distilbert_triton.grpc_url) as client:
            await client.classify(TEXTS)
            return client.model, (await client.health()).ok

    assert asyncio.run(run()) == ("distilbert", True)


def test_with_both_served_the_documented_default(triton):
    from finsent.core import DEFAULT_MODEL

    with Client(triton.grpc_url) as client:
        client.classify(TEXTS)
        assert client.model == DEFAULT_MODEL == "finbert"


def test_a_model_not_served_is_refused_naming_those_served(distilbert_triton):
    with Client(distilbert_triton.grpc_url, model="finbert") as client, pytest.raises(ModelError) as error:
        client.classify(TEXTS)
    assert "'finbert' is not served" in str(error.value) and "it serves distilbert" in str(error.value)
    run = finsent("classify", "--url", distilbert_triton.grpc_url, "-m", "finbert", *TEXTS)
    assert run.returncode == 1 and run.stderr.strip().splitlines() == [f"error: {error.value}"]


def test_cli_classify_and_health_use_the_model_served(distilbert_triton):
    run = finsent("classify", "--json", "--url", distilbert_triton.grpc_url, *TEXTS)
    assert run.returncode == 0, run.stderr
    assert [row["text"] for row in json.loads(run.stdout)] == TEXTS
    run = finsent("health", "--url", distilbert_triton.grpc_url)
    assert run.returncode == 0 and json.loads(run.stdout)["model"] == "distilbert", run.stdout + run.stderr
    run = finsent("health", "--url", distilbert_triton.grpc_url, env={"FINSENT_MODEL": "finbert"})
    assert run.returncode == 1 and json.loads(run.stdout)["model_ready"] is False


def test_the_gateway_uses_the_model_served(distilbert_triton):
    from finsent.gateway import Settings
    from tests.client.test_gateway import Gateway

    gateway = Gateway(Settings(triton=distilbert_triton.grpc_url))
    try:
        ready = gateway.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model"] == "distilbert", ready.text
        classic = gateway.post(json=[{"text": t} for t in TEXTS])
        assert classic.status_code == 200 and len(classic.json()) == 2, classic.text
        v1 = gateway.post("/v1/classify", json={"texts": TEXTS})
        assert v1.status_code == 200 and v1.json()["model"] == "distilbert", v1.text
        wrong = gateway.post("/v1/classify", json={"texts": TEXTS, "model": "finbert"})
        assert wrong.status_code == 404 and "it serves distilbert" in wrong.json()["error"]
    finally:
        gateway.stop()


def test_finsent_model_prints_the_model_a_client_would_use(distilbert_triton, triton):
    assert finsent("model", "--url", distilbert_triton.grpc_url).stdout == "distilbert\n"
    assert finsent("model", "--url", triton.http_url, "--protocol", "http").stdout == "finbert\n"
    assert finsent("model", "--url", triton.grpc_url, env={"FINSENT_MODEL": "distilbert"}).stdout == "distilbert\n"
