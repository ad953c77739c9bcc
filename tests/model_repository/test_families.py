"""Issue 18: a model family is one row of export.facts.FAMILIES. Each gets its five models from the
one config per role in model_repository/configs/; a third family added at runtime is exported,
assembled, offered by `python -m server` and served, with no other edit."""

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.facts import FAMILIES, Family
from export.onnx import export_model
from model_repository.assemble import DOCUMENT, STEPS, TargetOptions, assemble
from server import stack
from tests.model_repository.test_ensemble import expected, infer

NEW = "minibert"
TEXTS = ["Profit rose 12%.", "Shares fell after the warning."]


@pytest.fixture
def new_family(monkeypatch, checkpoints, exports, tmp_path) -> dict:
    """The one edit: a row (a random DistilBERT-layout checkpoint stands in for its source)."""
    monkeypatch.setitem(FAMILIES, NEW, Family(source=str(checkpoints["distilbert"]), arch="distilbert"))
    new = export_model(FAMILIES[NEW].source, NEW, tmp_path / "export" / NEW, log=lambda *_: None).path
    return {**exports, NEW: new}


def configs(repository) -> dict[str, mc.ModelConfig]:
    return {d.name: text_format.Parse((d / "config.pbtxt").read_text(), mc.ModelConfig()) for d in repository.iterdir()}


@pytest.mark.parametrize(
    "options", [TargetOptions("local", cores=2), TargetOptions("container", "gpu")], ids=["local", "container-gpu"]
)
def test_every_family_gets_its_five_models_and_its_inputs(new_family, tmp_path, options):
    rendered = configs(assemble(new_family, tmp_path / "r", options))
    # On CPU, background work's copy of the ensemble and its classifier (model_repository/classes.py).
    copies = ("_background", "_classifier_background") if options.background_classifier else ()
    assert set(rendered) == {
        f"{family}{suffix}"
        for family in ("finbert", "distilbert", NEW)
        for suffix in ("", *(f"_{step}" for step in (*STEPS, DOCUMENT)), *copies)
    }
    for family in ("finbert", "distilbert", NEW):
        assert [s.model_name for s in rendered[family].ensemble_scheduling.step] == [f"{family}_{s}" for s in STEPS]
        called = family + ("_background" if options.background_classifier else "")  # a document's sentences
        assert rendered[f"{family}_document"].parameters["ensemble"].string_value == called
        token_type_ids = FAMILIES[family].arch == "bert"
        assert token_type_ids == (family == "finbert")
        tokenizer, classifier = rendered[f"{family}_tokenizer"], rendered[f"{family}_classifier"]
        assert ("token_type_ids" in [t.name for t in tokenizer.output]) == token_type_ids
        assert ("token_type_ids" in [t.name for t in classifier.input]) == token_type_ids
        steps = rendered[family].ensemble_scheduling.step
        assert ("token_type_ids" in steps[0].output_map) == ("token_type_ids" in steps[1].input_map) == token_type_ids


def test_make_serve_offers_the_new_family(new_family, capsys):
    from server.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert f"--{NEW} {NEW.upper()}" in capsys.readouterr().out


def test_the_new_family_is_served(new_family, reference, tmp_path):
    server = stack.serve({NEW: new_family[NEW]}, tmp_path / "triton", TargetOptions("local", cores=2))
    try:
        _, _, probs = infer(server, "grpc", NEW, TEXTS)
        np.testing.assert_allclose(probs, expected(reference, "distilbert", TEXTS), atol=1e-4)
    finally:
        server.stop()
