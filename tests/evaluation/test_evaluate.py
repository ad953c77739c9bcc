"""make eval: the same sentences scored through the live `triton` fixture and in-process agree."""

import json
import shutil

import numpy as np
import pytest

from evaluation import evaluate, measure, report, score
from export import fpb
from tests.export.fpb_data import synthetic_rows

ROWS = synthetic_rows(70, seed=3)  # more than one 64-row batch


def test_served_and_inprocess_labels_agree_and_are_reported(triton, checkpoints, exports, tmp_path):
    result = evaluate.evaluate(
        checkpoints["distilbert"],
        "distilbert",
        ROWS,
        url=triton.grpc_url,
        export=exports["distilbert"],
        out=tmp_path,
        data_name="synthetic",
        log=lambda *_: None,
    )
    assert result["n"] == 70 and result["variant"] == "fp32"
    assert result["disagreements"] == 0 and result["gate"]["passed"]
    assert result["max_abs_probability_diff"] < 1e-4
    assert result["served"] == result["inprocess"]
    assert result["served"]["confusion"] != [[0] * 3] * 3
    png = tmp_path / result["confusion_png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "accuracy" / "distilbert-fp32.json").read_text())["disagreements"] == 0
    doc = report.render_docs(tmp_path).read_text()
    assert "**measured**, served by Triton" in doc and "| quoted |" in doc and "distilbert-fp32-confusion.png" in doc
    assert "distilbert-fp32-reliability.png" in doc and "15 equal-width bins" in doc


def test_calibration_is_measured_before_and_after_the_temperature_on_unfitted_sentences(checkpoints, exports, tmp_path):
    from export.calibrate import CALIBRATION_DATA_FILENAME, measures, softmax
    from export.facts import ModelFacts

    checkpoint = shutil.copytree(checkpoints["distilbert"], tmp_path / "checkpoint")
    export = shutil.copytree(exports["distilbert"], tmp_path / "export")
    fitted = fpb.write(ROWS[:20], checkpoint / CALIBRATION_DATA_FILENAME)  # as make finetune writes it
    facts = ModelFacts.load(export)
    import dataclasses

    dataclasses.replace(
        facts, temperature=0.5, calibration={"file": fitted.name, "sha256": fpb.sha256(fitted), "n": 20}
    ).save(export)
    result = evaluate.evaluate(
        checkpoint,
        "distilbert",
        ROWS,
        export=export,
        build=tmp_path / "build",
        out=tmp_path,
        data_name="synthetic",
        log=lambda *_: None,
    )
    cal = result["calibration"]
    assert cal["n"] == 50 and cal["left_out"] == 20 and cal["temperature"] == pytest.approx(0.5, rel=1e-3)
    # The served figures are the in-process model's, with and without the temperature.
    inprocess = score.inprocess_probabilities(checkpoint, [s for s, _ in ROWS[20:]], 512)
    labels = np.array([fpb.LABELS.index(label) for _, label in ROWS[20:]])
    for key, t in (("before", 1.0), ("after", 0.5)):
        want = measures(softmax(np.log(inprocess), t), labels)
        assert cal[key]["nll"] == pytest.approx(want["nll"], abs=1e-4) and cal[key]["ece"] == pytest.approx(
            want["ece"], abs=1e-3
        ), key
    assert result["disagreements"] == 0 and result["gate"]["passed"]  # the temperature moved no label
    assert (tmp_path / result["reliability_png"]).read_bytes()[:4] == b"\x89PNG"


def test_a_different_model_in_process_is_caught(triton, checkpoints):
    # Guards the test above: served distilbert against the finbert checkpoint must disagree.
    texts = [s for s, _ in ROWS]
    served = score.served_probabilities(triton.grpc_url, "distilbert", texts)
    other = score.inprocess_probabilities(checkpoints["finbert"], texts, 512)
    result = measure.compare(ROWS, served, other, "fp32")
    assert result["disagreements"] > 0 and not result["gate"]["passed"]


def test_non_fp32_variants_are_judged_on_agreement():
    probs = np.eye(3)[[0, 1, 2, 1] * 50]
    flipped = probs.copy()
    flipped[0] = [0, 1, 0]  # 1 of 200 differs: 99.5% agreement
    rows = [("s", "negative"), ("s", "neutral"), ("s", "positive"), ("s", "neutral")] * 50
    assert measure.compare(rows, flipped, probs, "int8")["gate"]["passed"]
    assert not measure.compare(rows, flipped, probs, "fp32")["gate"]["passed"]
    flipped[1] = [1, 0, 0]
    assert not measure.compare(rows, flipped, probs, "int8")["gate"]["passed"]


def test_a_variant_is_built_guarded_served_and_reported(checkpoints, exports, tmp_path):
    # `make eval ... --variant int8` on an export without it: built, guarded, served by its own server.
    export = shutil.copytree(exports["distilbert"], tmp_path / "export")
    result = evaluate.evaluate(
        checkpoints["distilbert"],
        "distilbert",
        ROWS,
        export=export,
        variant="int8",
        build=tmp_path / "build",
        out=tmp_path,
        data_name="synthetic",
        log=lambda *_: None,
    )
    assert result["variant"] == "int8" and result["n"] == 70
    assert json.loads((export / "variants.json").read_text())["int8"]["passed"]
    assert result["max_abs_probability_diff"] > 1e-6  # int8 was served, not the fp32 graph
    assert result["gate"]["rule"].startswith("agreement on confident predictions")
    assert result["gate"]["passed"] == (
        result["confident_agreement"] >= 0.995
        and result["inprocess"]["accuracy"] - result["served"]["accuracy"] <= 0.005
    )
    assert (tmp_path / "accuracy" / "distilbert-int8.json").exists()
    assert "`distilbert` int8 | **measured**" in report.render_docs(tmp_path).read_text()
