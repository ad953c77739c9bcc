"""`make repository` (model_repository.build): every model the chart names, each in the variant
the accuracy guard accepts for it, or the build fails saying what to do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export import fpb
from model_repository import build
from model_repository.assemble import FAMILIES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def build_with(exports, tmp_path):
    """A BUILD folder holding copies of the given families' exports (variants get built in them)."""

    def make(*families):
        for family in families:
            shutil.copytree(exports[family], tmp_path / "export" / family, symlinks=True)
        return tmp_path

    return make


def make_repository(build_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "-o", "setup", "repository", f"BUILD={build_dir}", f"PY={sys.executable}", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_the_makefile_recipe_is_one_call_of_the_module():
    result = subprocess.run(
        ["make", "-n", "-o", "setup", "repository"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    (line,) = result.stdout.splitlines()
    assert " -m model_repository.build " in line


def test_an_export_missing_for_a_model_the_chart_names_fails_the_build(build_with):
    # The chart's probes check every model in values.models: a FinBERT-only image never became ready.
    assert build.chart_models() == list(FAMILIES)
    result = make_repository(build_with("finbert"), "DEVICE=cpu", "VARIANT=fp32")
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert line.startswith("error: no export ") and "distilbert/model.onnx" in line
    assert "make repository MODELS=finbert" in line and "--set 'models={finbert}'" in line


def test_a_subset_is_built_when_asked_for_and_the_install_flag_is_said(build_with, capsys):
    build_dir = build_with("finbert")
    assert build.main(["--build", str(build_dir), "--device", "cpu", "--variant", "fp32", "--models", "finbert"]) == 0
    assert "install with --set 'models={finbert}'" in capsys.readouterr().out
    assert sorted(p.name for p in (build_dir / "repository" / "container").iterdir()) == [
        "finbert",
        "finbert_background",  # the cpu profile: background work's copy of the classifier
        "finbert_classifier",
        "finbert_classifier_background",
        "finbert_document",
        "finbert_postprocess",
        "finbert_tokenizer",
    ]


def test_each_model_serves_the_variant_its_guard_accepted(build_with, capsys):
    # 100% agreement: whichever model's int8 differs from fp32 on one guard sentence falls back alone.
    build_dir = build_with(*FAMILIES)
    assert build.main(["--build", str(build_dir), "--device", "cpu", "--min-agreement", "1"]) == 0
    err = capsys.readouterr().err
    for family in FAMILIES:
        passed = json.loads((build_dir / "export" / family / "variants.json").read_text())["int8"]["passed"]
        facts = build_dir / "repository" / "container" / f"{family}_classifier" / "1" / "model_facts.json"
        assert json.loads(facts.read_text())["variant"] == ("int8" if passed else "fp32")
        assert (f"Serving {family} in fp32 (exact, slower) instead." in err) == (not passed)


def test_a_refused_variant_falls_back_to_fp32_instead_of_failing(build_with, capsys):
    build_dir = build_with("distilbert")
    variants = build.served_variants(
        {"distilbert": build_dir / "export" / "distilbert"}, "int8", min_agreement=1.01
    )  # no variant can pass
    assert variants == {"distilbert": "fp32"}
    assert "int8 variant refused" in capsys.readouterr().err


@pytest.mark.skipif(fpb.shared_file("75") is None, reason="the static int8 is calibrated on Financial PhraseBank")
def test_a_refused_openvino_variant_falls_back_step_by_step_saying_why(build_with, capsys):
    build_dir = build_with("distilbert")
    variants = build.served_variants(
        {"distilbert": build_dir / "export" / "distilbert"}, "openvino-int8-static", min_agreement=1.01
    )  # no variant can pass: static int8 -> ONNX Runtime's dynamic int8 -> the exact fp32 export
    assert variants == {"distilbert": "fp32"}
    err = capsys.readouterr().err
    assert "openvino-int8-static variant refused" in err and "serving distilbert as int8 instead" in err
    assert "] int8 variant refused" in err and "serving distilbert in fp32 (exact, slower) instead" in err


def test_an_unknown_model_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        build.main(["--models", "finbert,bogus"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("unknown ['bogus']: choose from finbert, distilbert")
