"""Cost per million texts at the SLO, from a fixture sweep and the shipped price list."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import analysis, cost

FIXTURE = Path(__file__).parent / "fixtures" / "sweep_g2-standard-8.json"
ROOT = Path(__file__).resolve().parents[2]
README = str(ROOT / "README.md")


@pytest.fixture
def sweep():
    return json.loads(FIXTURE.read_text())


def test_shipped_prices_cite_sources():
    prices = cost.load_prices()
    names = {i["name"] for i in prices["instances"]}
    assert {"e2-standard-8", "n2-standard-8", "g2-standard-8", "a2-highgpu-1g"} <= names
    assert any("t4" in n for n in names)
    for item in prices["instances"]:
        assert item["usd_per_hour"] > 0 and len(item["source"]) > 20 and "verified" in item
        if not item["verified"]:
            assert "not verified" in item["source"].lower()
    assert prices["region"] == "us-central1" and prices["taken"]


def test_measured_hardware_is_priced_at_the_knee(sweep):
    prices = cost.load_prices()
    rows = {r["instance"]: r for r in cost.cost_rows([sweep], prices)}
    g2 = rows["g2-standard-8"]
    hourly = next(i["usd_per_hour"] for i in prices["instances"] if i["name"] == "g2-standard-8")
    # knee: 1000 texts/s at 8 users (32 users gave more, but p95 150 ms > SLO 100 ms)
    assert g2["texts_per_s"] == 1000.0 and g2["users"] == 8
    assert g2["usd_per_million"] == pytest.approx(hourly / 3.6)  # 1000 texts/s = 3.6 M texts/hour
    assert g2["status"] == "measured"
    for name in ("e2-standard-8", "n2-standard-8", "a2-highgpu-1g"):
        assert rows[name]["status"] == "not measured on this hardware"
        assert rows[name]["texts_per_s"] is None and rows[name]["usd_per_million"] is None


def test_knee_recomputed_from_steps_matches_fixture(sweep):
    knee = analysis.find_knee(sweep["steps"], sweep["slo_ms"])
    assert knee["step"] == sweep["knee"]["step"] == 2
    assert analysis.find_knee(sweep["steps"], 5.0) is None  # even 1 user misses 5 ms
    failing = copy.deepcopy(sweep["steps"])
    failing[1]["failures"] = 3  # a step with failures never qualifies
    assert analysis.find_knee(failing, sweep["slo_ms"])["step"] == 1


def test_unpriced_hardware_and_missed_slo_are_said(sweep):
    local = copy.deepcopy(sweep)
    local["hardware"] = "local"
    missed = copy.deepcopy(sweep)
    missed["knee"] = None
    rows = cost.cost_rows([local, missed], cost.load_prices())
    assert [r["status"] for r in rows if r["instance"] == "local"] == [
        "measured, but this hardware has no price in the list"
    ]
    g2 = [r for r in rows if r["instance"] == "g2-standard-8"]
    assert len(g2) == 1 and g2[0]["usd_per_million"] is None and "no step met" in g2[0]["status"]


def test_cli_writes_the_report(sweep, tmp_path, capsys):
    out = tmp_path / "cost.md"
    assert cost.main([str(FIXTURE), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| g2-standard-8 | 0.8536 | finbert via grpc" in text
    assert f"| {0.853624271 / 3.6:.2f} | measured |" in text
    assert text.count("not measured on this hardware") == 4
    assert "†" in text  # the unverified T4 price is marked


def test_price_list_without_a_source_is_refused(tmp_path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("instances:\n  - name: x\n    usd_per_hour: 1.0\n")
    with pytest.raises(ValueError, match="lacks source"):
        cost.load_prices(bad)
    assert cost.main([str(FIXTURE), "--prices", str(bad)]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        ([README], f"error: {README} is not a sweep result: expected the sweep.json that loadtest.sweep writes"),
        (["/nonexistent"], "error: no sweep at /nonexistent: run `make loadtest`"),
        ([str(FIXTURE), "--prices", README], f"error: {README} is not valid YAML ("),
        (
            [str(FIXTURE), "--prices", str(FIXTURE)],
            "has no `instances:` list: expected a price list like loadtest/prices.yaml",
        ),
    ],
)
def test_wrong_files_are_named_with_what_was_expected(args, message, capsys):
    assert cost.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def make_cost(build: Path) -> subprocess.CompletedProcess:
    # -o setup: the target's venv refresh is not what is tested; this interpreter runs the report
    return subprocess.run(
        ["make", "-s", "-o", "setup", "loadtest-cost", f"BUILD={build}", f"PY={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("OUT", "SWEEPS")},
    )


def test_make_loadtest_cost_prices_the_newest_sweep(tmp_path):
    done = make_cost(tmp_path)
    assert done.returncode != 0 and "no sweep in" in done.stderr and "run make loadtest" in done.stderr
    for age, name in ((3600, "grpc-finbert"), (0, "local-grpc-finbert")):  # make loadtest's, then loadtest-local's
        (tmp_path / "loadtest" / name).mkdir(parents=True)
        sweep_json = tmp_path / "loadtest" / name / "sweep.json"
        sweep_json.write_text(FIXTURE.read_text())
        os.utime(sweep_json, (sweep_json.stat().st_mtime - age,) * 2)
    done = make_cost(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "loadtest" / "local-grpc-finbert" / "cost.md").exists()
    assert not (tmp_path / "loadtest" / "grpc-finbert" / "cost.md").exists()
