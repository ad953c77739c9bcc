"""Bad arguments to the CLIs of export/, training/ and evaluation/: exit code 2 and one `error: ...`
line, before any export, training or server start. Every case also points at a missing checkpoint (or
an export without a model), so a check that moved after the slow work would fail fast on that instead
of exporting or training."""

import pytest

from evaluation import evaluate
from export import fpb, onnx, optimize, random_checkpoint
from export.facts import CANONICAL_LABELS, ModelFacts
from tests.export.fpb_data import sample_file
from training import finetune

BASE_ARGS = {
    finetune: "--base {missing} --data {data} --out {tmp}/out",
    evaluate: "--checkpoint {missing} --data {data} --build {tmp}/build --out {tmp}/docs",
    optimize: "--export {export}",
    onnx: "--model {missing} --name distilbert --out {tmp}/out",
    random_checkpoint: "--arch bert --out {tmp}/out",
}
CASES = [
    (finetune, "--epochs 0", "argument --epochs: must be >= 1, got 0"),
    (finetune, "--batch-size 0", "argument --batch-size: must be >= 1, got 0"),
    (finetune, "--lr -1", "argument --lr: must be > 0, got -1"),
    (finetune, "--test-size 1.5", "argument --test-size: must be between 0 and 1, got 1.5"),
    (finetune, "--data {readme}", "README.md:1: expected `sentence@label`"),
    (finetune, "--data {missing}", "no such file"),
    (finetune, "--limit 5", "the held-out set has no"),  # accuracy on 1 sentence says nothing
    (finetune, "--test-size 1", "the training set has no"),
    (evaluate, "--family foo", "argument --family: invalid choice: 'foo'"),
    (evaluate, "--data {readme}", "README.md:1: expected `sentence@label`"),
    (evaluate, "--export {missing}", "is not an export directory (no model_facts.json"),
    (evaluate, "--min-agreement 99.5", "must be between 0 and 1, got 99.5 (a fraction: 0.995 means 99.5%)"),
    (evaluate, "", "--checkpoint: checkpoint directory"),
    (optimize, "--min-agreement 99.5", "must be between 0 and 1, got 99.5 (a fraction: 0.995 means 99.5%)"),
    (optimize, "--guard-sentences -3", "argument --guard-sentences: must be >= 1, got -3"),
    (optimize, "--variants int8,fp61", "argument --variants: unknown ['fp61']"),
    (optimize, "--export {missing}", "is not an export directory"),
    (onnx, "--max-length 100000", "argument --max-length: must be between 8 and 512, got 100000"),
    (onnx, "--max-length 4", "argument --max-length: must be between 8 and 512, got 4"),
    (onnx, "--opset 99", "argument --opset: must be between 14 and 20, got 99"),
    (onnx, "--name finbret", "argument --name: invalid choice: 'finbret'"),
    (random_checkpoint, "--labels a,b", "--labels must order negative, neutral, positive (each once)"),
]


def error_line(main, argv, capsys) -> str:
    """Run a CLI that must refuse `argv`: exit code 2, no traceback; its last stderr line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's parser.error
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "error: " in err.strip().splitlines()[-1], err
    return err.strip().splitlines()[-1]


@pytest.fixture
def paths(tmp_path):
    """Placeholders of BASE_ARGS and CASES: a real FPB-format file, and an export folder without a model."""
    export = tmp_path / "export"
    export.mkdir()
    ModelFacts(
        name="distilbert",
        source="none",
        model_type="distilbert",
        id2label=list(CANONICAL_LABELS),
        max_length=64,
        input_names=["input_ids", "attention_mask"],
    ).save(export)
    return {
        "tmp": tmp_path,
        "missing": tmp_path / "missing",
        "data": sample_file(tmp_path / "fpb.txt", 300)[0],
        "readme": fpb.REPO_ROOT / "README.md",
        "export": export,
    }


@pytest.mark.parametrize("module, args, message", CASES, ids=[f"{m.__name__.split('.')[-1]} {a}" for m, a, _ in CASES])
def test_bad_arguments_get_one_clear_error_line(module, args, message, paths, capsys):
    argv = f"{BASE_ARGS[module]} {args}".format(**paths).split()
    assert message in error_line(module.main, argv, capsys)


def test_an_unreachable_triton_is_named(checkpoints, paths, capsys):
    argv = [
        "--checkpoint",
        str(checkpoints["distilbert"]),
        "--data",
        str(paths["data"]),
        "--url",
        "localhost:1",
        "--out",
        str(paths["tmp"] / "docs"),
    ]
    assert "error: cannot reach Triton at localhost:1" in error_line(evaluate.main, argv, capsys)
