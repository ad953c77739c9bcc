"""`make bench`'s traffic-classes part end to end on a tiny model with seconds-long phases: the plumbing
and the behaviour it reports (no row lost, no liveness failure), not the speed."""

import json

from benchmarks import traffic_classes
from tests.reliability.test_probes import chart_commands


def test_its_probes_are_the_charts():
    rendered = chart_commands()
    for name, (args, _) in traffic_classes.chart_probes().items():
        assert rendered[name][-len(args) :] == args, (name, rendered[name])


def test_the_benchmark_writes_its_report_on_a_tiny_model(checkpoints, tmp_path):
    out = tmp_path / "out"
    args = ["--finbert", str(checkpoints["finbert"]), "--variant", "fp32", "--configs", "after"]
    args += ["--rows", "120", "--document-bytes", "4000", "--alone-seconds", "2", "--overload-seconds", "6"]
    args += ["--overload-clients", "8", "--build", str(tmp_path / "build"), "--out", str(out)]
    assert traffic_classes.main(args) == 0
    result = json.loads((out / "traffic-classes.json").read_text())["configs"]["after"]
    assert result["mixed"]["bulk"]["rows_lost"] == 0 and result["overload"]["bulk"]["rows_lost"] == 0
    assert result["overload"]["probe_failures"] == {"liveness": 0, "readiness": 0}
    assert result["mixed"]["document"]["sentences"] > 0
    assert "Twice the capacity" in (out / "traffic-classes.md").read_text()
    # Where the classifier cores went: read from the stubs' /proc counters in every phase.
    assert result["interactive_alone"]["classifier_cpu_ms_per_text"] > 0
    assert result["bulk_alone"]["classifier_cores"] > 0 and result["mixed"]["classifier_cores"]["interactive"] > 0
    assert "Where the classifier cores go" in (out / "traffic-classes.md").read_text()
