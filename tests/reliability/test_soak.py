"""The CI soak: `make soak`'s measurement for 60 s (FINSENT_SOAK_SECONDS; the whole suite takes
about 4.5 minutes with it on 2 cores). docs/benchmarks/soak.md has the 600 s run."""

from __future__ import annotations

import os

from benchmarks.soak import RSS_GROWTH, soak

SECONDS = float(os.environ.get("FINSENT_SOAK_SECONDS", "60"))


def test_soak_at_70_percent_of_max_has_no_errors_and_flat_memory(own_server):
    # What breaks, not how fast: every scheduled request answered without an error (each one has a
    # 30 s timeout: a stall ends in errors), and no leak. p99 and the rate achieved are `make soak`'s
    # figures (benchmarks/soak.py, docs/benchmarks/soak.md): on CI's 2 shared cores p99 swung 2x
    # between windows of a run that was clean in every other way.
    result = soak(own_server, duration_s=SECONDS, load=0.7, clients=8, ramp_s=2.0)
    achieved, p99 = f"{result['achieved_per_s']}/s of {result['target_per_s']}/s", result["p99_first_ms"]
    print(f"\nsoak: {achieved}, p99 {p99} -> {result['p99_last_ms']} ms (figures, not judged here)")
    assert result["requests"] == result["scheduled"] > 0, "a client thread stopped sending"
    assert result["errors"] == 0, result["error_kinds"]
    assert result["rss_growth"] < RSS_GROWTH, f"server RSS {result['rss_start_mb']} -> {result['rss_end_mb']} MB"
