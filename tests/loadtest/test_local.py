"""loadtest.local refuses what it cannot run before it exports a model or starts tritonserver."""

import pytest

from loadtest import local


@pytest.mark.parametrize(
    "args, message",
    [
        (["--step-seconds", "-1"], "--step-seconds must be positive"),
        (["--users", "4 0"], "user levels must be positive integers"),
        (["--model", "nosuch"], "argument --model: invalid choice: 'nosuch'"),
        (["--protocol", "gateway"], "argument --protocol: invalid choice: 'gateway'"),
        (["--host", "localhost:8001"], "--host does not apply"),
        (
            ["--texts-per-request", "65"],
            "--texts-per-request must be at most 64 (max_batch_size of model_repository/configs/ensemble.pbtxt)",
        ),
    ],
)
def test_bad_arguments_exit_2_before_anything_is_served(args, message, tmp_path, capsys):
    build = tmp_path / "build"
    with pytest.raises(SystemExit) as exc:
        local.main([*args, "--build", str(build), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not build.exists()  # no checkpoint, export or tritonserver


def test_help_offers_only_what_the_local_demo_runs(capsys):
    with pytest.raises(SystemExit):
        local.main(["--help"])
    out = capsys.readouterr().out
    assert "{grpc,http}" in out and "{finbert,distilbert}" in out
    assert "--host" not in out and "gateway" not in out
