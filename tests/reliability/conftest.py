"""A tritonserver of the test's own (explicit model control, admin key, as `python -m server` runs
it) for tests that kill or stop it; everything else uses the session's `triton`."""

from __future__ import annotations

import pytest

from model_repository.assemble import TargetOptions, assemble
from server import stack


@pytest.fixture(scope="module")
def repository(exports, build_dir):
    return assemble(exports, build_dir / "reliability" / "repository", TargetOptions("local"))


@pytest.fixture
def own_server(repository, tmp_path):
    server = stack.start(repository, tmp_path / "triton", admin=True)
    yield server
    server.stop(timeout_s=3)  # after a stub death Triton would wait out its exit timeout
