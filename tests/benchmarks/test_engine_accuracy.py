"""benchmarks.engine_accuracy on the tiny DistilBERT: every CPU variant guarded, scored on the held-out split
and measured for batch dependence, in one report; a checkpoint without a held-out split is refused.

The benchmark runs as `python -m` in its own process, as benchmarks.cpu_engines' test does (OpenVINO in the
test process, then Helm's Go library later in the suite, aborted it)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import engine_accuracy
from export import fpb
from export.sentences import PARITY_SENTENCES
from training.finetune import HELDOUT_FILENAME

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(fpb.shared_file("50") is None, reason="the guards and the calibration read Financial PhraseBank")
def test_every_variant_is_guarded_scored_and_measured(checkpoints, tmp_path):
    checkpoint = shutil.copytree(checkpoints["distilbert"], tmp_path / "checkpoint")
    rows = [(s, fpb.LABELS[i % 3]) for i, s in enumerate(PARITY_SENTENCES)]
    fpb.write(rows, checkpoint / HELDOUT_FILENAME)
    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--build", str(tmp_path / "build"), "--out", str(out), "--cores", "1"]
    # Random weights: near-tied logits, so the guards report without refusing (--min-agreement 0).
    small = ["--guard-sentences", "40", "--min-agreement", "0", "--dependence-sentences", "6", "--shuffles", "2"]
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.engine_accuracy", *argv, *small],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / "engine-accuracy.json").read_text())
    assert list(results["variants"]) == [label for label, *_ in engine_accuracy.VARIANTS]
    assert results["heldout"] == len(rows) and results["calibration"].endswith(f"0 of them in this {HELDOUT_FILENAME}")
    for label, entry in results["variants"].items():
        assert set(entry["heldout"]) >= {"n", "accuracy", "macro_f1"} and entry["heldout"]["n"] == len(rows)
        assert len(entry["batch_dependence"]["max_move_per_shuffle"]) == 2
        if label != engine_accuracy.VARIANTS[0][0]:
            guard = entry["guard"]
            assert "refused" not in guard and guard["settings"]["guard"] == "Sentences_50Agree.txt (40 sentences)"
            assert {"agreement", "confident_agreement", "accuracy_fp32", "accuracy_variant"} <= set(guard)
            assert entry["heldout"]["agreement_with_fp32"] is not None
    fp32 = results["variants"][engine_accuracy.VARIANTS[0][0]]
    assert fp32["batch_dependence"]["max_move_per_shuffle"] == [0.0, 0.0]  # padding is masked exactly
    report = (out / "engine-accuracy.md").read_text()
    assert "| OpenVINO static int8 (NNCF) | pass |" in report and results["calibration"] in report
    assert engine_accuracy.markdown(results) == report


def test_a_checkpoint_without_its_heldout_split_is_refused(checkpoints, tmp_path, capsys):
    checkpoint = shutil.copytree(checkpoints["distilbert"], tmp_path / "checkpoint")
    (checkpoint / HELDOUT_FILENAME).unlink(missing_ok=True)
    with pytest.raises(SystemExit) as exc:
        engine_accuracy.main(["--checkpoint", str(checkpoint), "--build", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"has no {HELDOUT_FILENAME}" in err and "make finetune BASE=minilm" in err
