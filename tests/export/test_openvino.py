"""OpenVINO on an export (export/openvino.py), with the real OpenVINO runtime and NNCF on the tiny
random-weight exports: fp32 means f32, the static int8 is calibrated outside the held-out split, guarded
as served, refused (and deleted) below the limit, and served by the Python classifier."""

import json
import shutil

import numpy as np
import pytest

from export import fpb, openvino
from export.facts import CANONICAL_LABELS
from export.openvino import STATIC_INT8, OpenVinoClassifier, build_variant, calibration_sentences
from export.optimize import REPORT_FILENAME, GuardError
from export.runtime import OnnxClassifier
from export.sentences import PARITY_SENTENCES
from model_repository.assemble import TargetOptions
from server import stack
from tests.model_repository.test_ensemble import MANY, expected, infer

needs_fpb = pytest.mark.skipif(fpb.shared_file("75") is None, reason="no Financial PhraseBank next to the checkout")


@pytest.fixture(scope="module")
def static(exports, tmp_path_factory):
    """A copy of the FinBERT-architecture export with OpenVINO's fp32 and static int8 built and guarded."""
    copy = shutil.copytree(exports["finbert"], tmp_path_factory.mktemp("openvino") / "finbert")
    for variant in ("fp32", STATIC_INT8):
        build_variant(copy, variant, guard_limit=100, min_agreement=0.0, log=lambda *_: None)
    return copy


@pytest.mark.parametrize("family", ["finbert", "distilbert"])
def test_fp32_is_f32_on_every_cpu(exports, reference, family):
    # Without the hint OpenVINO computes in bf16 where the CPU has it (|d logit| 0.026 on BERT-base).
    model = OpenVinoClassifier(exports[family], "fp32")
    assert model.precision == "f32"
    ort = OnnxClassifier(exports[family], "fp32").logits(MANY)
    assert np.abs(model.logits(MANY) - ort).max() < 1e-4
    # Parity with transformers, canonical order, as the ensemble's test judges the served fp32.
    probs = model.probabilities(list(PARITY_SENTENCES))
    np.testing.assert_allclose(probs, expected(reference, family, PARITY_SENTENCES), atol=1e-4)


@needs_fpb
def test_calibration_never_uses_the_held_out_sentences(exports, tmp_path):
    rows, _ = fpb.dedupe(fpb.read(fpb.shared_file("75")))
    _, test = fpb.stratified_split(rows, 0.2, 42)  # make finetune's default split
    copy = shutil.copytree(exports["finbert"], tmp_path / "e")
    texts, described = calibration_sentences(copy)
    assert len(texts) == openvino.CALIBRATION_COUNT and "outside the held-out split" in described
    assert not set(texts) & {s for s, _ in test}
    # A checkpoint that kept its own held-out split (make finetune's heldout.txt): those are left out too.
    source = tmp_path / "checkpoint"
    source.mkdir()
    fpb.write([(texts[0], "neutral")], source / "heldout.txt")
    facts = json.loads((copy / "model_facts.json").read_text())
    (copy / "model_facts.json").write_text(json.dumps({**facts, "source": str(source)}))
    assert texts[0] not in calibration_sentences(copy)[0]


@needs_fpb
def test_static_int8_is_built_guarded_cached_and_batch_independent(static):
    report = json.loads((static / REPORT_FILENAME).read_text())
    for name in ("openvino-fp32", "openvino-int8-static"):
        assert report[name]["passed"] and report[name]["runtime"] == f"openvino {openvino.OPENVINO_VERSION}"
    assert report["openvino-fp32"]["max_abs_logit_diff"] < 1e-4
    assert "calibration: 256 sentences of Sentences_75Agree.txt" in report["openvino-int8-static"]["settings"]["recipe"]
    assert (static / "model.ov-int8.xml").exists() and (static / "model.ov-int8.bin").exists()
    messages = []
    build_variant(static, STATIC_INT8, guard_limit=100, min_agreement=0.0, log=messages.append)
    assert messages == [
        "[finbert] openvino-int8-static variant cached (agreement {:.2%})".format(
            report["openvino-int8-static"]["agreement"]
        )
    ]
    # Scales fixed at calibration: a text's probabilities do not move with its batch mates.
    model = OpenVinoClassifier(static, STATIC_INT8)
    alone = np.concatenate([model.probabilities([text]) for text in MANY])
    np.testing.assert_allclose(model.probabilities(MANY, batch_size=len(MANY)), alone, atol=1e-5)


@needs_fpb
def test_a_static_int8_below_the_limit_is_refused_and_removed(exports, tmp_path):
    copy = shutil.copytree(exports["distilbert"], tmp_path / "d")
    with pytest.raises(GuardError, match="openvino-int8-static variant refused"):
        # A deliberately bad calibration (one two-word text) and a limit no variant can meet.
        build_variant(copy, STATIC_INT8, guard_limit=50, min_agreement=1.01, calibration=["Shares fell."], log=print)
    assert not (copy / "model.ov-int8.xml").exists() and not (copy / "model.ov-int8.bin").exists()
    assert json.loads((copy / REPORT_FILENAME).read_text())["openvino-int8-static"]["passed"] is False


def test_without_financial_phrasebank_the_static_int8_is_refused_saying_why(exports, tmp_path, monkeypatch):
    monkeypatch.setattr(fpb, "SHARED_DIR", tmp_path / "nowhere")
    copy = shutil.copytree(exports["distilbert"], tmp_path / "d")
    with pytest.raises(GuardError, match="openvino-int8-static variant refused: .*no Sentences_75Agree.txt in "):
        build_variant(copy, STATIC_INT8, guard_limit=20, log=lambda *_: None)


def test_the_guard_refuses_to_judge_under_another_openvino_release(exports, tmp_path, monkeypatch):
    monkeypatch.setattr(openvino, "OPENVINO_VERSION", "1999.0.0")
    with pytest.raises(GuardError, match="the server runs 1999.0.0"):
        build_variant(tmp_path, "fp32", log=lambda *_: None)


@needs_fpb
@pytest.mark.parametrize("target, device", [("local", "cpu"), ("container", "cpu")])  # make serve [TARGET=container]
def test_both_cpu_targets_serve_the_static_int8_as_judged(static, tmp_path, target, device):
    options = TargetOptions(target, device, cores=2, variant="openvino-int8-static")
    with stack.serve({"finbert": static}, tmp_path / "w", options, started=False) as server:
        config = (server.model_repository / "finbert_classifier" / "config.pbtxt").read_text()
        assert 'string_value: "openvino"' in config and 'string_value: "f32"' in config
        assert json.loads((server.model_repository / "finbert_classifier" / "1" / "model_facts.json").read_text())[
            "variant"
        ] == ("openvino-int8-static")
        labels, _, probs = infer(server, "grpc", "finbert", MANY)
    local = OpenVinoClassifier(static, STATIC_INT8).probabilities(MANY)
    np.testing.assert_allclose(probs, local, atol=1e-5)
    assert labels == [CANONICAL_LABELS[i] for i in local.argmax(axis=1)]
