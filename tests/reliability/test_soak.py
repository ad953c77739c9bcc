"""The CI soak: `make soak`'s measurement for 60 s (FINSENT_SOAK_SECONDS; the whole suite takes
about 4.5 minutes with it on 2 cores). docs/benchmarks/soak.md has the 600 s run."""

from __future__ import annotations

import os

from benchmarks.soak import RSS_GROWTH, soak

SECONDS = float(os.environ.get("FINSENT_SOAK_SECONDS", "60"))


def test_soak_at_70_percent_of_max_has_no_errors_flat_memory_and_stable_p99(own_server):
    # p99 over 15 s windows on CI's 2 shared cores swings up to ~2x between windows (measured
    # 24 -> 46 ms in a passing-in-every-other-way run): a looser rule than the 600 s run's 1.5x + 5 ms,
    # still far below what a leak or a growing queue does (seconds).
    result = soak(own_server, duration_s=SECONDS, load=0.7, clients=8, ramp_s=2.0, p99_factor=2.5, p99_slack_ms=20)
    assert result["requests"] >= 0.8 * result["target_per_s"] * SECONDS, "the load was not sustained"
    assert result["errors"] == 0, result["error_kinds"]
    assert result["rss_growth"] < RSS_GROWTH, f"server RSS {result['rss_start_mb']} -> {result['rss_end_mb']} MB"
    assert result["p99_stable"], f"p99 {result['p99_first_ms']} -> {result['p99_last_ms']} ms"
