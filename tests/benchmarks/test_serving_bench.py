"""`make bench` end to end on tiny models with 1-second levels: the plumbing, not the speed."""
import json

from benchmarks import serving


def test_bench_writes_the_report_table_and_plot(checkpoints, tmp_path):
    out = tmp_path / "out"
    assert serving.main(["--models", "finbert", "--finbert", str(checkpoints["finbert"]), "--variants", "fp32,int8",
                         "--duration", "1", "--warmup", "0.5", "--clients", "1,4", "--baseline-clients", "2",
                         "--sentences", "64", "--min-agreement", "0", "--build", str(tmp_path / "build"), "--out", str(out)]) == 0
    results = json.loads((out / "serving.json").read_text())
    finbert = results["models"]["finbert"]
    for variant in ("fp32", "int8"):
        levels = finbert["variants"][variant]["triton"]
        assert set(levels) == {"1x1", "4x1", "1x64"}
        assert all(level["errors"] == 0 and level["requests"] > 0 for level in levels.values())
        steps = levels["4x1"]["steps"]
        assert set(steps) == {"finbert", "finbert_tokenizer", "finbert_classifier", "finbert_postprocess"}
        assert sum(steps["finbert_classifier"]["batch_histogram"].values()) == steps["finbert_classifier"]["executions"]
        assert finbert["variants"][variant]["in_process"]["limit_texts_per_s"] > 0
    assert finbert["baseline"]["2x1"]["errors"] == 0 and finbert["baseline"]["2x1"]["requests"] > 0
    table = (out / "serving.md").read_text()
    assert "Starlette + pipeline baseline" in table and "in-process ORT" in table
    assert (out / "serving.png").read_bytes()[:4] == b"\x89PNG"
