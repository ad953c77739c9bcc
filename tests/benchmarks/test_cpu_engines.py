"""benchmarks.cpu_engines on a tiny checkpoint: every engine measured in one run, OpenVINO's fp32 f32.

The benchmark runs as `python -m` in its own process, as people run it: after it ran inside the test
process, Helm's Go library (k8s/render.py, later in the suite) aborted that process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cpu_engines
from export import fpb

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(fpb.shared_file("50") is None, reason="the benchmark reads Financial PhraseBank")
def test_every_engine_is_measured_side_by_side(checkpoints, tmp_path):
    out = tmp_path / "out"
    argv = ["--finbert", str(checkpoints["finbert"]), "--build", str(tmp_path / "build"), "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu_engines", *argv, "--sentences", "40", "--rounds", "2", "--cores", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    engines = json.loads((out / "cpu-engines.json").read_text())["models"]["finbert"]["engines"]
    assert list(engines) == [label for label, *_ in cpu_engines.ENGINES]
    for row in engines.values():
        assert len(row["texts_per_s_runs"]) == 2 and row["texts_per_s_median"] > 0
    assert engines["ORT fp32"]["max_abs_logit_diff_vs_ort_fp32"] == 0
    assert engines["OpenVINO fp32 (hint f32)"]["precision"] == "f32"
    assert engines["OpenVINO fp32 (hint f32)"]["max_abs_logit_diff_vs_ort_fp32"] < 1e-4
    assert "| OpenVINO static int8 (NNCF) |" in (out / "cpu-engines.md").read_text()
