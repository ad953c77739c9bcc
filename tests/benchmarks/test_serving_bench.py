"""`make bench` end to end on tiny models with 1-second levels: the plumbing, not the speed."""

import json

from benchmarks import serving


def test_bench_writes_the_report_table_and_plot(checkpoints, tmp_path):
    out = tmp_path / "out"
    assert (
        serving.main(
            [
                "--models",
                "finbert",
                "--finbert",
                str(checkpoints["finbert"]),
                "--variants",
                "fp32,int8",
                "--duration",
                "1",
                "--warmup",
                "0.5",
                "--clients",
                "1,4",
                # The plumbing, not the figures: any windows count as stable (a busy machine keeps
                # perf_analyzer's from agreeing within the default 100%).
                "--perf-analyzer-stability",
                "100000",
                "--perf-analyzer-clients",
                "4",
                "--baseline-clients",
                "2",
                "--sentences",
                "64",
                "--min-agreement",
                "0",
                "--build",
                str(tmp_path / "build"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "serving.json").read_text())
    finbert = results["models"]["finbert"]
    for variant in ("fp32", "int8"):
        levels = finbert["variants"][variant]["triton"]
        assert set(levels) == {"1x1", "4x1", "1x64", "4x1 perf_analyzer"}
        pa = levels["4x1 perf_analyzer"]
        assert pa["texts_per_s"] > 0 and pa["p50_ms"] <= pa["p99_ms"] and pa["client_cpu_share"] > 0
        assert pa["steps"]["finbert"]["requests"] > 0  # it really drove the ensemble
        assert all(level["errors"] == 0 and level["requests"] > 0 for level in levels.values())
        steps = levels["4x1"]["steps"]
        assert set(steps) == {"finbert", "finbert_tokenizer", "finbert_classifier", "finbert_postprocess"}
        assert sum(steps["finbert_classifier"]["batch_histogram"].values()) == steps["finbert_classifier"]["executions"]
        ip = finbert["variants"][variant]["in_process"]
        # The references are measured before and after the ensemble's levels; the targets use their mean.
        for key in ("limit_texts_per_s", "batch1_p50_ms"):
            assert len(ip[f"{key}_runs"]) == 2 and min(ip[f"{key}_runs"]) > 0
            assert abs(ip[key] - sum(ip[f"{key}_runs"]) / 2) < 1e-9
        share = levels["4x1"]["cpu_share"]
        assert share["classifier stub"] > 0 and share["load generator (bench client)"] > 0
        # Shares of the cores over the run's own window (not the nominal one a slow run outlasts):
        # CPU time cannot exceed it; 0.1 for the clock ticks /proc counts in.
        assert 0 < sum(share.values()) <= 1.1
    assert finbert["baseline"]["2x1"]["errors"] == 0 and finbert["baseline"]["2x1"]["requests"] > 0
    table = (out / "serving.md").read_text()
    assert "Starlette + pipeline baseline" in table and "in-process ORT" in table and "Where the cores went" in table
    assert "| Triton ensemble, gRPC (perf_analyzer) | 4 × 1, perf_analyzer |" in table
    assert "before / after the ensemble" in table
    assert all(v["classifier_split"]["split (overhead 48 tokens)"] > 0 for v in finbert["variants"].values())
    assert "| ensemble@16 / groups of 16 |" in table
    assert (out / "serving.png").read_bytes()[:4] == b"\x89PNG"
