"""Triton's statistics of one model, read the way every test reads them (over HTTP, with the admin key
where the server restricts the API). Triton counts a request when its execute ends, which can be just
after the answer: a test that needs the last one counted waits for it (tests/waiting.py)."""

from __future__ import annotations

import tritonclient.http as httpclient

from server.triton import ADMIN_HEADER


def model_stats(triton, model: str) -> dict:
    """`model`'s entry of /v2/models/<model>/stats (JSON)."""
    client = httpclient.InferenceServerClient(triton.http_url)
    try:
        headers = {ADMIN_HEADER: triton.admin_key} if triton.admin_key else None
        return client.get_inference_statistics(model, headers=headers)["model_stats"][0]
    finally:
        client.close()


def stats_of(triton, model: str) -> tuple[int, int]:
    """(texts, executions) `model` has counted: its inference_count and execution_count."""
    stats = model_stats(triton, model)
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def requests_of(triton, model: str, outcome: str = "success") -> int:
    """Requests of `model` that ended in `outcome` ("success" or "fail")."""
    return int(model_stats(triton, model)["inference_stats"][outcome].get("count", 0))
