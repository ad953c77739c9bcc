"""Smoke runs: the benchmarks that are otherwise only run by `make bench` go end to end on tiny
random-weight models with the smallest settings, so a broken benchmark fails here, not at release.
Their figures are not asserted (those are the benchmarks' job); that they run and write their report is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.triton  # each starts its own tritonserver in a subprocess


def run(module: str, *args: str, out: Path, build: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--build", str(build), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{module} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.parametrize(
    "module, args, reports",
    [
        ("benchmarks.bulk", ["--size", "tiny", "--rows", "300", "--processes", "1"], ["bulk.md", "bulk.json"]),
        ("benchmarks.faults", ["--clients", "2", "--after", "3"], ["faults.md", "faults.json", "faults.png"]),
        (
            "loadtest.local",
            ["--users", "2", "--step-seconds", "3"],
            ["results.md", "sweep.json", "latency_vs_throughput.png"],
        ),
    ],
    ids=["bulk", "faults", "loadtest-local"],
)
def test_benchmark_runs_on_tiny_models(module, args, reports, tmp_path):
    run(module, *args, out=tmp_path / "out", build=tmp_path / "build")
    for name in reports:
        assert (tmp_path / "out" / name).stat().st_size > 0, f"{module} did not write {name}"


def test_documents_benchmark_runs_on_a_tiny_checkpoint(checkpoints, tmp_path):
    args = ["--finbert", str(checkpoints["finbert"]), "--variant", "fp32", "--documents", "2", "--clients", "1"]
    out = run(
        "benchmarks.documents",
        *args,
        "--rounds",
        "1",
        "--long-bytes",
        "5000",
        out=tmp_path / "out",
        build=tmp_path / "build",
    )
    assert "round 1 bls" in out and "round 1 client" in out
    for name in ("documents.md", "documents.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0, f"benchmarks.documents did not write {name}"


def test_served_engines_benchmark_runs_on_a_tiny_checkpoint(checkpoints, tmp_path):
    args = ["--finbert", str(checkpoints["finbert"]), "--min-agreement", "0", "--clients", "1", "--duration", "2"]
    out = run("benchmarks.served_engines", *args, "--sentences", "40", out=tmp_path / "out", build=tmp_path / "build")
    for variant in ("int8", "openvino-int8-static", "openvino-fp32"):
        assert f"] {variant} at 1: " in out, f"{variant} was not measured:\n{out[-2000:]}"
    assert (tmp_path / "out" / "served-engines.md").stat().st_size > 0
