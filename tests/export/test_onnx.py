import json
import shutil

import onnx
import pytest

from export import random_checkpoint
from export.facts import FactsError, ModelFacts
from export.onnx import (
    PARITY_FILENAME,
    ParityError,
    SourceUnavailable,
    export_model,
    main,
    parity_report,
    resolve_source,
)
from export.sentences import PARITY_SENTENCES
from tests.conftest import LABEL_ORDERS


def test_facts_follow_the_checkpoint(exports):
    finbert, distilbert = ModelFacts.load(exports["finbert"]), ModelFacts.load(exports["distilbert"])
    assert finbert.id2label == list(LABEL_ORDERS["finbert"])
    assert distilbert.id2label == list(LABEL_ORDERS["distilbert"])
    assert finbert.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert distilbert.input_names == ["input_ids", "attention_mask"]  # DistilBERT has no token_type_ids
    assert finbert.max_length == distilbert.max_length == 512


def test_onnx_axes_are_dynamic(exports):
    graph = onnx.load(str(exports["finbert"] / "model.onnx"), load_external_data=False).graph
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param != "" for d in dims] == [True, True], tensor.name  # batch and sequence


def test_parity_report_is_saved_and_covers_truncation(exports):
    report = json.loads((exports["distilbert"] / PARITY_FILENAME).read_text())
    assert report["passed"] and report["max_abs_diff"] <= 1e-4
    assert len(report["rows"]) == len(PARITY_SENTENCES) + 1  # each sentence, then all as one batch
    assert max(row["tokens"] for row in report["rows"]) == 512  # the long one was truncated
    assert all(row["argmax_equal"] for row in report["rows"])


def test_parity_gate_detects_a_different_model(exports, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    other = random_checkpoint.build("bert", tmp_path / "other", labels=LABEL_ORDERS["finbert"], seed=1)
    model = AutoModelForSequenceClassification.from_pretrained(other, dtype=torch.float32).eval()
    report = parity_report(
        model,
        AutoTokenizer.from_pretrained(other),
        exports["finbert"] / "model.onnx",
        ModelFacts.load(exports["finbert"]),
        atol=1e-4,
    )
    assert not report["passed"] and report["max_abs_diff"] > 1e-4


def test_export_refuses_when_parity_fails_and_leaves_nothing(checkpoints, tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(ParityError, match="export refused"):
        export_model(str(checkpoints["finbert"]), "finbert", out, atol=-1.0, log=lambda *_: None)
    assert not out.exists()
    assert not list(tmp_path.glob(".finbert-*"))  # no temporary directory left behind


def test_export_is_cached_until_the_source_changes(checkpoints, tmp_path):
    source = shutil.copytree(checkpoints["distilbert"], tmp_path / "ckpt")
    out = tmp_path / "out"
    first = export_model(str(source), "distilbert", out, log=lambda *_: None)
    again = export_model(str(source), "distilbert", out, log=lambda *_: None)
    assert not first.cached and again.cached
    config = json.loads((source / "config.json").read_text())
    config["id2label"] = {"0": "negative", "1": "neutral", "2": "positive"}
    config["label2id"] = {"negative": 0, "neutral": 1, "positive": 2}
    (source / "config.json").write_text(json.dumps(config))
    changed = export_model(str(source), "distilbert", out, log=lambda *_: None)
    assert not changed.cached
    assert ModelFacts.load(out).id2label == ["negative", "neutral", "positive"]


def test_unavailable_sources_say_why(tmp_path):
    with pytest.raises(SourceUnavailable, match="does not exist"):
        resolve_source(str(tmp_path / "missing"))
    with pytest.raises(SourceUnavailable, match="no config.json"):
        resolve_source(str(tmp_path))
    with pytest.raises(SourceUnavailable, match="Hugging Face Hub"):
        resolve_source("ProsusAI/finbert")  # HF_HUB_OFFLINE=1 in the tests


def test_cli_exits_2_with_a_clear_error(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nope"), "--name", "finbert", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_max_length_beyond_the_position_embeddings_is_refused_before_exporting(checkpoints, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    short = tmp_path / "short"  # a checkpoint with 64 positions: 128 tokens would crash the parity check
    config = AutoConfig.from_pretrained(checkpoints["distilbert"], max_position_embeddings=64)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(short)
    AutoTokenizer.from_pretrained(checkpoints["distilbert"]).save_pretrained(short)
    for max_length in (128, 4):
        with pytest.raises(FactsError, match=rf"max length {max_length} is outside 8\.\.64"):
            export_model(str(short), "distilbert", tmp_path / "out", max_length=max_length, log=lambda *_: None)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".distilbert-*"))
