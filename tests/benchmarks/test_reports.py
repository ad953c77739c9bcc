"""Every committed report re-renders from its committed JSON byte for byte: the report writers still read
what earlier runs wrote, and no figure in docs/benchmarks/ moves without its benchmark being run again."""

import json
from pathlib import Path

import pytest

from benchmarks import (
    batch_dependence,
    bulk,
    container,
    cpu_engines,
    documents,
    engine_accuracy,
    faults,
    levels,
    served_engines,
    serving_report,
    soak,
    startup,
    timeline,
    traffic_classes,
)
from benchmarks.levels import Level

REPORTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
WRITERS = {
    "serving": serving_report.markdown,
    "faults": faults.markdown,
    "soak": soak.markdown,
    "one-client-finbert-int8": timeline.markdown,
    "one-client-distilbert-int8": timeline.markdown,
    "container": container.markdown,
    "bulk": bulk.markdown,
    "batch-dependence": batch_dependence.markdown,
    "cpu-engines": cpu_engines.markdown,
    "engine-accuracy": engine_accuracy.markdown,
    "documents": documents.markdown,
    "startup": startup.markdown,
    "traffic-classes": traffic_classes.markdown,
    "served-engines": served_engines.markdown,
}


def test_every_committed_json_has_its_writer_here():
    assert sorted(path.stem for path in REPORTS.glob("*.json")) == sorted(WRITERS)


def test_committed_results_stay_small():
    # A report's JSON holds what its markdown and plot need, not every raw call (faults.json was 2.8 MB).
    assert {path.name: path.stat().st_size for path in REPORTS.glob("*.json") if path.stat().st_size > 100_000} == {}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_committed_report_re_renders_from_its_json(name):
    results = json.loads((REPORTS / f"{name}.json").read_text())
    assert WRITERS[name](results) == (REPORTS / f"{name}.md").read_text()


def test_faults_stores_calls_per_bucket_as_its_plot_draws_them():
    counts = faults.over_time([(-1.2, True), (-0.1, True), (0.3, False), (0.4, False), (2.6, True)])
    assert counts == {
        "bucket_s": 0.5,
        "start_s": -2.0,
        "ok": [0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
        "failed": [0, 0, 0, 0, 2, 0, 0, 0, 0, 0],
    }


@pytest.mark.parametrize(
    "key, level, name",
    [
        ("16x1", Level(16), "16 × 1"),
        ("1x64", Level(1, 64), "1 × 64"),
        ("4x1 perf_analyzer", Level(4, client="perf_analyzer"), "4 × 1, perf_analyzer"),
    ],
)
def test_serving_levels_keep_the_keys_earlier_runs_wrote(key, level, name):
    assert Level.parse(key) == level and level.key == key and level.name == name


def test_serving_levels_load_and_dump_the_committed_json_unchanged():
    saved = json.loads((REPORTS / "serving.json").read_text())
    for entry in saved["models"].values():
        for measured in [*(v["triton"] for v in entry["variants"].values()), entry["baseline"]]:
            assert levels.dump(levels.load(measured)) == measured
