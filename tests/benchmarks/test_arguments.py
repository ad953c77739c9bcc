"""Bad arguments to the benchmarks: one `error: ...` line and exit 2, before any export or server."""

import pytest

from benchmarks import bulk, client, serving, soak, startup, timeline


def exit_code(main, argv):
    """main's return value, or the code of the SystemExit that parser.error raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    "main, args, message",
    [
        (serving.main, ["--models", "foo"], "--models: unknown 'foo' (choose from finbert, distilbert)"),
        (serving.main, ["--variants", "fp32,int9"], "--variants: unknown 'int9' (choose from fp32, int8, fp16)"),
        (serving.main, ["--clients", "1,0"], "comma-separated positive integers"),
        (serving.main, ["--duration", "0"], "--duration must be positive"),
        (
            serving.main,
            ["--models", "distilbert", "--distilbert", "/nonexistent"],
            "error: checkpoint directory /nonexistent does not exist",
        ),
        (timeline.main, ["--variant", "int9"], "invalid choice: 'int9'"),
        (timeline.main, ["--checkpoint", "/nonexistent"], "error: checkpoint directory /nonexistent does not exist"),
        (
            startup.main,
            ["--scenarios", "tiny,foo"],
            "--scenarios: unknown 'foo' (choose from base, finbert-int8, tiny)",
        ),
        (startup.main, ["--repeats", "-1"], "--repeats must be at least 0"),
        (soak.main, ["--duration", "-5"], "--duration and --load must be positive"),
        (soak.main, ["--clients", "0"], "--clients at least 1"),
        (soak.main, ["--load", "0"], "--duration and --load must be positive"),
        (bulk.main, ["--duplicate-share", "1"], "--duplicate-share in [0, 1)"),
        (bulk.main, ["--rows", "0"], "--rows must be 1 or more"),
        (bulk.main, ["--processes", "1,x"], "--processes: comma-separated positive integers"),
        (client.main, ["--grpc", "localhost:1"], "--grpc and --http go together"),
        (client.main, ["--texts", "0"], "--texts must be between 1 and 2000"),
        (client.main, ["--repeat", "0"], "--repeat must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(main, args, message, tmp_path, capsys):
    build = tmp_path / "build"
    assert exit_code(main, [*args, "--build", str(build), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not build.exists()  # no checkpoint, export or server was started
