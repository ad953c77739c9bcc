"""Every committed report re-renders from its committed JSON byte for byte: the report writers still read
what earlier runs wrote, and no figure in docs/benchmarks/ moves without its benchmark being run again."""
import json
from pathlib import Path

import pytest

from benchmarks import batch_dependence, bulk, container, documents, faults, report, soak, startup, timeline

REPORTS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"
WRITERS = {"serving": report.markdown, "faults": faults.markdown, "soak": soak.markdown,
           "one-client-finbert-int8": timeline.markdown, "one-client-distilbert-int8": timeline.markdown,
           "container": container.markdown, "bulk": bulk.markdown, "batch-dependence": batch_dependence.markdown,
           "documents": documents.markdown, "startup": startup.markdown}


def test_every_committed_json_has_its_writer_here():
    assert sorted(path.stem for path in REPORTS.glob("*.json")) == sorted(WRITERS)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_committed_report_re_renders_from_its_json(name):
    results = json.loads((REPORTS / f"{name}.json").read_text())
    assert WRITERS[name](results) == (REPORTS / f"{name}.md").read_text()


def test_faults_stores_calls_per_bucket_as_its_plot_draws_them():
    counts = faults.over_time([(-1.2, True), (-0.1, True), (0.3, False), (0.4, False), (2.6, True)])
    assert counts == {"bucket_s": 0.5, "start_s": -2.0, "ok": [0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
                      "failed": [0, 0, 0, 0, 2, 0, 0, 0, 0, 0]}
