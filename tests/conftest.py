"""Session fixtures: tiny random-weight checkpoints (real vocab), their ONNX exports, and real
tritonservers serving both ensembles for the whole run: the local target (`triton`) and the
container repository's two profiles on Triton's native onnxruntime backend, built here
(`container`: gpu profile on CPU instances; `container_cpu`).

The network: the Hugging Face Hub never (HF_HUB_OFFLINE). Two fetches happen once per checkout and
are cached under its build/ for every later run: libonnxruntime 1.19.2 from the npm registry for
the native backend (build/native, server/native_backend.py; its sources come from ../shared/vendor)
and onnxruntime==1.19.2 from PyPI, the container's runtime the accuracy guard judges under
(build/ort, export/optimize.side_runtime). Offline with those caches empty, each fails in one line
saying so; tests/export/test_optimize.py then skips the judgements that need the side runtime."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under `make test` (as CI runs it) the tests' own `make` calls would inherit the make level and
# print "make[1]: Entering directory ..." lines that a user's make does not print.
os.environ.pop("MAKEFLAGS", None)
os.environ.pop("MFLAGS", None)
os.environ.pop("MAKELEVEL", None)

from pathlib import Path

import pytest

from loadtest import random_models
from model_repository.assemble import TargetOptions
from server import stack

# Different id2label orders: FinBERT's own, and one that is neither it nor canonical.
LABEL_ORDERS = {"finbert": ("positive", "negative", "neutral"), "distilbert": ("neutral", "positive", "negative")}


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="session")
def checkpoints(build_dir) -> dict[str, Path]:
    return random_models.tiny_checkpoints(build_dir, LABEL_ORDERS)


@pytest.fixture(scope="session")
def exports(checkpoints, build_dir) -> dict[str, Path]:
    return random_models.exports(checkpoints, build_dir)


@pytest.fixture(scope="session")
def triton(exports, build_dir):
    server = stack.serve(exports, build_dir / "triton", TargetOptions("local"), repository=build_dir / "repository")
    yield server
    server.stop()


# The container repository as `make serve TARGET=container` serves it: explicit model control behind
# an admin key, as the chart's liveness probe needs it.
CONTAINER_PROFILES = {
    "container": TargetOptions("container", "gpu", cores=2, cpu_instances=True),
    "container_cpu": TargetOptions("container", "cpu", cores=2),
}


@pytest.fixture(scope="session")
def container(exports, build_dir):
    server = stack.serve(exports, build_dir / "container", CONTAINER_PROFILES["container"], admin=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def container_cpu(exports, build_dir):
    server = stack.serve(exports, build_dir / "container_cpu", CONTAINER_PROFILES["container_cpu"], admin=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def reference(checkpoints):
    """transformers pipelines: what the ensembles must reproduce."""
    from transformers import pipeline

    return {
        family: pipeline("text-classification", model=str(path), tokenizer=str(path), top_k=None, device="cpu")
        for family, path in checkpoints.items()
    }


@pytest.fixture(scope="session")
def distilbert_triton(exports, build_dir):
    """The offline first run of the README (`make finetune BASE=minilm && make serve FINBERT=`):
    `make serve`'s settings, serving DistilBERT only."""
    server = stack.serve(
        {"distilbert": exports["distilbert"]}, build_dir / "distilbert-only", TargetOptions("local"), admin=True
    )
    yield server
    server.stop(timeout_s=10)
