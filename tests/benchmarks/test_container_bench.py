"""`make bench`'s container part end to end on a tiny model with 1-second rounds: the plumbing, not the speed."""

import json

from benchmarks import container
from tests.benchmarks.test_arguments import exit_code


def test_container_bench_writes_the_report_table_and_plot(checkpoints, tmp_path):
    out = tmp_path / "out"
    assert (
        container.main(
            [
                "--checkpoint",
                str(checkpoints["finbert"]),
                "--configs",
                "local,container-gpu,before-gpu",
                "--clients",
                "4",
                # The plumbing, not the figures: any windows count as stable (a busy machine keeps
                # perf_analyzer's from agreeing within the default 100%).
                "--perf-analyzer-stability",
                "100000",
                "--window-requests",
                "8",
                "--rounds",
                "2",
                "--sentences",
                "64",
                "--build",
                str(tmp_path / "build"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "container.json").read_text())
    assert len(results["runs"]) == 2
    for name, entry in results["summary"].items():
        assert entry["texts_per_s"] > 0 and entry["mean_batch"] >= 1, name
        for run in results["runs"]:
            measured = run[name]
            assert sum(measured["batch_histogram"].values()) == measured["classifier_executions"] > 0
    table = (out / "container.md").read_text()
    assert "| container-gpu | gpu profile: native onnxruntime backend" in table and "| before-gpu |" in table
    assert "GPU numerics and speed are unmeasured" in table
    assert (out / "container.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys):
    for args, message in (
        (["--configs", "local,foo"], "--configs: unknown ['foo']"),
        (["--configs", "container-cpu"], "include local"),
        (["--rounds", "0"], "must be at least 1"),
    ):
        assert exit_code(container.main, [*args, "--build", str(tmp_path / "b"), "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
