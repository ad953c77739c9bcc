"""benchmarks.batch_dependence on a tiny export: fp32 never moves with its batch; int8 does."""

import json
import shutil

import pytest

from benchmarks import batch_dependence
from export.optimize import build_variants


def test_fp32_does_not_depend_on_the_batch_and_int8_does(exports, tmp_path):
    export = shutil.copytree(exports["finbert"], tmp_path / "finbert")
    build_variants(export, ["int8"], guard_limit=20, min_agreement=0.0, log=lambda *_: None)
    out = tmp_path / "out"
    assert (
        batch_dependence.main(["--export", str(export), "--sentences", "40", "--shuffles", "2", "--out", str(out)]) == 0
    )
    results = json.loads((out / "batch-dependence.json").read_text())["variants"]
    assert results["fp32"]["max_move_per_shuffle"] == [0.0, 0.0]
    assert max(results["int8"]["max_move_per_shuffle"]) > 0
    assert "| int8 |" in (out / "batch-dependence.md").read_text()


def test_a_variant_not_built_is_named(exports, capsys):
    with pytest.raises(SystemExit) as exc:
        batch_dependence.main(["--export", str(exports["distilbert"]), "--variants", "fp32,fp16"])
    assert exc.value.code == 2 and "has no fp16 variant" in capsys.readouterr().err
