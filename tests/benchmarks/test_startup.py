"""benchmarks.startup on a tiny model: `python -m server` cold then warm, the plumbing, not the speed."""

import json

import pytest

from benchmarks import startup


@pytest.mark.triton  # `python -m server` in a subprocess: no fixture of tests/conftest.py says so
def test_cold_and_warm_starts_are_measured_and_reported(tmp_path):
    out = tmp_path / "out"
    assert (
        startup.main(["--scenarios", "tiny", "--repeats", "1", "--build", str(tmp_path / "build"), "--out", str(out)])
        == 0
    )
    (run,) = json.loads((out / "startup.json").read_text())["runs"]
    for start in (run["cold"], *run["warm"]):
        assert 0 < start["ready_s"] <= start["first_classification_s"] and start["stop_s"] > 0
    # The warm start found its export cached: no export, parity check or variant build (how much
    # sooner it is ready is the report's figure).
    assert run["cold"]["exported"] and not run["warm"][0]["exported"]
    assert "| one tiny DistilBERT | int8 | warm (median of 1) |" in (out / "startup.md").read_text()
