"""A tritonserver started the way `make serve` starts it (explicit model control, the admin APIs
behind a random admin key), serving FinBERT only, as `make serve` does when the DistilBERT
checkpoint is missing. The admin key is the test's, to read the true repository index."""

from __future__ import annotations

import pytest

from model_repository.assemble import TargetOptions, assemble
from server import stack


@pytest.fixture(scope="session")
def restricted_triton(exports, build_dir):
    repository = assemble(
        {"finbert": exports["finbert"]}, build_dir / "restricted" / "repository", TargetOptions("local")
    )
    server = stack.start(repository, build_dir / "restricted" / "triton", admin=True)
    yield server
    server.stop(timeout_s=10)
