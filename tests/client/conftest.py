"""A tritonserver started the way `make serve` starts it (explicit model control, the admin APIs
behind a random admin key), serving FinBERT only, as `make serve` does when the DistilBERT
checkpoint is missing. The admin key is the test's, to read the true repository index. And
`retries`: the clients' retries, counted."""

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


@pytest.fixture
def retries(monkeypatch) -> list[float]:
    """The pauses Client and AsyncClient took before each retry (what retry_delay returned): a test
    counts retries instead of timing them, which a busy machine cannot fail."""
    import finsent.aio
    import finsent.client
    from finsent.core import retry_delay

    taken = []

    def counted(*args, **kwargs):
        taken.append(retry_delay(*args, **kwargs))  # raises instead when it gives up: not a retry
        return taken[-1]

    monkeypatch.setattr(finsent.client, "retry_delay", counted)
    monkeypatch.setattr(finsent.aio, "retry_delay", counted)
    return taken
