"""Issue 17: the warnings a newcomer read past on every first run (tokenizer class, torch's tracer,
optimum's accelerate check, onnxruntime's quantizer) are gone from a random checkpoint's build, export
and int8 variant; each is harmless here, and export/quiet.py says why."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("The tokenizer class you load", "TracerWarning", "requires accelerate", "pre-processing before quantization")


@pytest.mark.triton  # a checkpoint, its export and int8 variant, in a subprocess: no fixture says so
def test_a_first_export_prints_none_of_the_known_harmless_warnings(tmp_path):
    code = f"""
from pathlib import Path
from export import random_checkpoint
from export.onnx import export_model
from export.optimize import build_variants
ckpt = random_checkpoint.build("distilbert", Path({str(tmp_path / "ckpt")!r}))
path = export_model(str(ckpt), "distilbert", Path({str(tmp_path / "export")!r}), log=lambda *_: None).path
build_variants(path, ["int8"], guard_limit=20, min_agreement=0, log=lambda *_: None)
"""
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stderr
    assert not [n for n in NOISE if n in run.stderr + run.stdout], run.stderr
