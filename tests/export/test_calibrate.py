"""Temperature scaling and the calibration measures, on numbers whose answer is known, and the CLI
on a real export (its fp32 ONNX model through ONNX Runtime)."""

import json

import numpy as np
import pytest

from export import calibrate
from export.facts import ModelFacts
from tests.export.fpb_data import sample_file


def sampled(temperature: float, n: int = 20000, seed: int = 0):
    """Logits whose labels are drawn from softmax(logits / temperature): the true T is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, 3))
    probs = calibrate.softmax(logits, temperature)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    return logits, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_that_drew_the_labels(true_t):
    logits, labels = sampled(true_t)
    assert calibrate.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)


def test_the_fitted_temperature_lowers_nll_and_ece_and_keeps_every_argmax():
    logits, labels = sampled(2.5)  # the raw logits are over-confident
    t = calibrate.fit_temperature(logits, labels)
    r = calibrate.report(logits, labels, t)
    assert r["after"]["nll"] < r["before"]["nll"] and r["after"]["ece"] < r["before"]["ece"] / 3
    assert r["after"]["brier"] < r["before"]["brier"]
    for temperature in (0.05, 0.3, t, 7.0, 20.0):
        assert (calibrate.softmax(logits, temperature).argmax(1) == logits.argmax(1)).all()


def test_ece_nll_and_brier_match_hand_computed_values():
    probs = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.75, 0.05], [0.05, 0.05, 0.9]])
    labels = np.array([2, 1, 1, 2])
    # 15 equal-width bins: 0.6, 0.7, 0.75 and 0.9 each fall in a bin of their own.
    bins = {b["low"]: b for b in calibrate.reliability(probs, labels) if b["n"]}
    assert [b["n"] for b in bins.values()] == [1, 1, 1, 1]
    want_ece = (abs(1 - 0.7) + abs(0 - 0.6) + abs(1 - 0.75) + abs(1 - 0.9)) / 4
    assert calibrate.ece(probs, labels) == pytest.approx(want_ece)
    assert calibrate.nll(probs, labels) == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.75, 0.9])))
    want_brier = np.mean([0.01 + 0.04 + 0.09, 0.36 + 0.49 + 0.01, 0.04 + 0.0625 + 0.0025, 0.0025 + 0.0025 + 0.01])
    assert calibrate.brier(probs, labels) == pytest.approx(want_brier)


def test_the_cli_fits_an_export_and_writes_its_facts(exports, tmp_path):
    import shutil

    export = shutil.copytree(exports["finbert"], tmp_path / "finbert")
    data, _ = sample_file(tmp_path / "Sentences_50Agree.txt", 120)
    assert calibrate.main(["--export", str(export), "--data", str(data)]) == 0
    facts = ModelFacts.load(export)
    assert facts.temperature != 1.0 and facts.calibration["n"] == 120
    assert json.loads((export / "model_facts.json").read_text())["temperature"] == facts.temperature


def test_a_temperature_fitted_on_the_export_survives_a_cached_export(checkpoints, tmp_path):
    # make finetune's calibration.json is carried into a fresh export; export.calibrate's later fit
    # on that export is not reverted by the next (cached) export_model, as make serve runs it.
    import shutil

    from export.onnx import export_model

    checkpoint = shutil.copytree(checkpoints["distilbert"], tmp_path / "checkpoint")
    (checkpoint / calibrate.CALIBRATION_FILENAME).write_text(
        json.dumps({"temperature": 1.5, "fitted_on": {"file": "calibration.txt", "n": 10}})
    )
    export = export_model(str(checkpoint), "distilbert", tmp_path / "export", log=lambda *_: None).path
    assert ModelFacts.load(export).temperature == 1.5
    data, _ = sample_file(tmp_path / "labelled.txt", 60)
    calibrate.calibrate_export(export, data, log=lambda *_: None)
    fitted = ModelFacts.load(export).temperature
    assert fitted != 1.5
    assert export_model(str(checkpoint), "distilbert", export, log=lambda *_: None).facts.temperature == fitted
    assert ModelFacts.load(export).temperature == fitted


def test_a_nonpositive_temperature_is_refused(exports):
    import dataclasses

    from export.facts import FactsError

    with pytest.raises(FactsError, match="temperature"):
        dataclasses.replace(ModelFacts.load(exports["finbert"]), temperature=0.0)
