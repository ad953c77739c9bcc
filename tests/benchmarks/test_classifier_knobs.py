"""benchmarks.classifier_knobs end to end on a tiny model with 1-second levels: the plumbing, not the speed."""

import pytest

from benchmarks import classifier_knobs
from model_repository.assemble import TargetOptions, assemble, load_config


def test_every_configuration_is_served_as_configured_and_reported(exports, tmp_path):
    out = tmp_path / "knobs.md"
    # main() refuses a configuration the server did not load as asked (checked via Triton's config API).
    assert (
        classifier_knobs.main(
            [
                "--export",
                str(exports["finbert"]),
                "--variant",
                "fp32",
                "--rounds",
                "1",
                "--seconds",
                "1",
                "--sentences",
                "64",
                "--work",
                str(tmp_path / "work"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "configuration" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == list(classifier_knobs.CONFIGS)
    assert all(row.rstrip(" |").endswith(" 0") for row in rows)  # no errors


@pytest.mark.parametrize("delay_us, instances", [(500, 1), (0, 2)])
def test_configure_sets_the_knobs_even_when_the_source_omits_them(exports, tmp_path, delay_us, instances):
    # The rendered config omits a 0 delay (protobuf default): a text substitution would miss it.
    repo = assemble({"finbert": exports["finbert"]}, tmp_path / "repo", TargetOptions("local", variant="fp32"))
    classifier_knobs.configure(repo, "finbert", delay_us, instances)
    config = load_config(repo / "finbert_classifier" / "config.pbtxt")
    assert (config.dynamic_batching.max_queue_delay_microseconds, config.instance_group[0].count) == (
        delay_us,
        instances,
    )
