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

# `make test-fast` runs what is not marked `triton` (pytest -m "not triton"). The mark is given here,
# never by hand to a test that has a fixture for it: every test whose fixtures reach SERVING_ROOTS
# (checkpoints built with torch, and all that is built on them: ONNX exports, tritonservers, the
# native backend's container servers, the gateway and Prometheus in front of them) gets it, and so
# does a test whose parameter names such a fixture (fixtures_by_parameter).
SERVING_ROOTS = {"checkpoints"}


def reaches_serving(name: str, node, seen: set[str]) -> bool:
    """Whether fixture `name` (as `node` sees it) is, or depends on, one of SERVING_ROOTS."""
    if name in SERVING_ROOTS:
        return True
    definitions = node.session._fixturemanager.getfixturedefs(name, node) if name not in seen else None
    seen.add(name)
    return bool(definitions) and any(reaches_serving(arg, node, seen) for arg in definitions[-1].argnames)


def fixtures_by_parameter(item) -> set[str]:
    """The fixtures `item` may get by request.getfixturevalue(<parameter>): a string parameter of the
    test, or of a parametrized fixture, whose function takes `request`."""
    callspec = getattr(item, "callspec", None)
    found = set()
    for key, value in callspec.params.items() if callspec else ():
        definitions = item.session._fixturemanager.getfixturedefs(key, item)
        takes = definitions[-1].argnames if definitions else item._fixtureinfo.argnames
        if isinstance(value, str) and "request" in takes:
            found.add(value)
    return found


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ())) | fixtures_by_parameter(item)
        seen: set[str] = set()
        if any(reaches_serving(name, item, seen) for name in sorted(names)):
            item.add_marker(pytest.mark.triton)


# Tests of the fast loop that started a tritonserver or built the native backend all the same: the
# run fails naming them (a server started in a subprocess escapes this; `--durations` shows it).
UNMARKED_SERVERS: list[str] = []


def fast_loop(config) -> bool:
    return "not triton" in config.getoption("markexpr", "")


@pytest.fixture(autouse=True)
def unmarked_tests_start_no_server(request, monkeypatch):
    if not fast_loop(request.config):
        return
    from server import native_backend
    from server.triton import TritonServer

    def noted(original):
        def run(*args, **kwargs):
            result = original(*args, **kwargs)  # what fails (a broken repository, no sources) is no server
            UNMARKED_SERVERS.append(f"{request.node.nodeid}: {original.__qualname__}")
            return result

        return run

    monkeypatch.setattr(TritonServer, "start", noted(TritonServer.start))
    monkeypatch.setattr(native_backend, "build", noted(native_backend.build))


def pytest_sessionfinish(session):
    if UNMARKED_SERVERS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if UNMARKED_SERVERS:
        terminalreporter.section("started a server in the fast loop", red=True)
        terminalreporter.line("give these a server fixture (tests/conftest.py) or @pytest.mark.triton:")
        for line in UNMARKED_SERVERS:
            terminalreporter.line(f"  {line}")


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
