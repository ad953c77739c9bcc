"""Fine-tuning: data handling, the exact BERT -> DistilBERT rewrite, and a CI-sized run end to end
(a tiny random-weight BERT base, a few hundred sentences, one epoch). The full run is `make finetune`."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

from export import fpb, random_checkpoint
from export.facts import ModelFacts
from export.onnx import export_model
from model_repository.assemble import TargetOptions, assemble
from tests.export.fpb_data import sample_file, synthetic_rows
from training import finetune


def test_read_parses_sentence_at_label_and_refuses_other_lines(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes("Caf\xe9 sales rose @ 5 % .@positive\r\n\nProfit fell .@negative\n".encode("latin-1"))
    assert fpb.read(good) == [("Caf\xe9 sales rose @ 5 % .", "positive"), ("Profit fell .", "negative")]
    bad = tmp_path / "bad.txt"
    bad.write_text("Profit fell .@bearish\n", encoding="latin-1")
    with pytest.raises(fpb.DataError, match="bad.txt:1"):
        fpb.read(bad)


def test_dedupe_keeps_first_and_drops_conflicting_sentences():
    rows = [("a", "neutral"), ("b", "positive"), ("a", "neutral"), ("c", "negative"), ("c", "positive")]
    kept, removed = fpb.dedupe(rows)
    assert kept == [("a", "neutral"), ("b", "positive")] and removed == 3


def test_split_is_stratified_disjoint_and_reproducible():
    rows = fpb.dedupe(synthetic_rows(500))[0]
    train, test = fpb.stratified_split(rows, 0.2, seed=42)
    assert sorted(train + test) == sorted(rows) and not set(train) & set(test)
    counts, test_counts = Counter(label for _, label in rows), Counter(label for _, label in test)
    assert all(test_counts[label] == round(0.2 * counts[label]) for label in counts)
    assert fpb.stratified_split(rows, 0.2, seed=42) == (train, test)
    assert fpb.stratified_split(rows, 0.2, seed=7)[1] != test


def test_scores_match_hand_computed_values():
    s = fpb.scores(["positive", "positive", "negative", "neutral"], ["positive", "neutral", "negative", "neutral"])
    assert s["accuracy"] == 0.75 and s["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert s["per_class"]["neutral"]["f1"] == pytest.approx(2 / 3)
    assert s["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_bert_rewritten_as_distilbert_computes_the_same(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    path = random_checkpoint.build("bert", tmp_path / "bert")
    bert = AutoModel.from_pretrained(path, add_pooling_layer=False, attn_implementation="eager").eval()
    distil = finetune.bert_to_distilbert(bert).eval()
    enc = AutoTokenizer.from_pretrained(path)(
        ["Profit rose 12 % .", "Shares fell after the profit warning ."], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        want = bert(**enc).last_hidden_state
        got = distil(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].bool()
    torch.testing.assert_close(got[mask], want[mask], atol=1e-5, rtol=1e-5)


def test_finetune_smoke_writes_a_servable_distilbert_checkpoint(tmp_path):
    base = random_checkpoint.build("bert", tmp_path / "base")
    data, origin = sample_file(tmp_path / "Sentences_75Agree.txt", 300)
    out = tmp_path / "distilbert-fpb"
    assert (
        finetune.main(
            [
                "--base",
                str(base),
                "--data",
                str(data),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--max-length",
                "64",
                "--limit",
                "250",
            ]
        )
        == 0
    ), origin

    metrics = json.loads((out / finetune.METRICS_FILENAME).read_text())
    assert metrics["train"] + metrics["heldout"] == metrics["sentences"] <= 250
    assert metrics["heldout"] == pytest.approx(0.2 * metrics["sentences"], abs=2)
    assert metrics["arch"] == "distilbert" and len(metrics["history"]) == 1
    assert np.isfinite(metrics["history"][0]["train_loss"]) and 0 <= metrics["heldout_scores"]["accuracy"] <= 1
    heldout = fpb.read(out / finetune.HELDOUT_FILENAME)
    assert len(heldout) == metrics["heldout"] == metrics["heldout_scores"]["n"]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}

    # Re-scoring the saved held-out split with the saved checkpoint gives the recorded accuracy.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out)
    rescored = finetune.evaluate(model, AutoTokenizer.from_pretrained(out), heldout, 512)
    assert rescored["accuracy"] == metrics["heldout_scores"]["accuracy"]

    # The temperature is fitted on one half of the held-out split and reported on the other.
    calibration = json.loads((out / "calibration.json").read_text())
    assert metrics["calibration"] == calibration and calibration["temperature"] > 0
    fitted = fpb.read(out / "calibration.txt")
    reported = calibration["heldout_report"]
    assert set(fitted) < set(heldout) and len(fitted) + reported["n"] == len(heldout)
    assert calibration["fitted_on"]["sha256"] == fpb.sha256(out / "calibration.txt")
    assert reported["after"]["accuracy"] == reported["before"]["accuracy"]

    # The BERT base came out in the DistilBERT layout: no token_type_ids, so `distilbert` serves it.
    export = export_model(str(out), "distilbert", tmp_path / "export", log=lambda *_: None)
    facts = ModelFacts.load(export.path)
    assert facts.input_names == ["input_ids", "attention_mask"]
    assert facts.temperature == calibration["temperature"] and facts.calibration == calibration["fitted_on"]
    assemble({"distilbert": export.path}, tmp_path / "repository", TargetOptions("local"))


def test_a_bert_kept_as_bert_cannot_be_served_as_distilbert(tmp_path):
    # Why the rewrite exists: the assembler refuses inputs the distilbert configs do not declare.
    base = random_checkpoint.build("bert", tmp_path / "base")
    model, tokenizer = finetune.load(str(base), "keep")
    model.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    export = export_model(str(tmp_path / "bert"), "distilbert", tmp_path / "export", log=lambda *_: None)
    with pytest.raises(ValueError, match="token_type_ids"):
        assemble({"distilbert": export.path}, tmp_path / "repository", TargetOptions("local"))


def test_offline_it_knows_at_once_that_the_hub_is_unreachable_and_says_where_data_can_come_from(tmp_path):
    """Issue 17: offline, make finetune printed Hugging Face retry lines for ~23 s first. The Hub
    here is a socket that accepts connections and never answers, like a network that drops them:
    one connection (the probe, HUB_PROBE_S) and one error line, not huggingface_hub's retries."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(8)
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env |= {
            "HF_ENDPOINT": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
            "FINSENT_FPB_DIR": str(tmp_path / "none"),
            "HF_HOME": str(tmp_path / "hf"),
        }
        try:
            run = subprocess.run(
                [sys.executable, "-m", "training.finetune", "--base", "minilm", "--out", str(tmp_path / "out")],
                capture_output=True,
                text=True,
                timeout=120,  # a liveness bound (interpreter start included); retries are counted below
                env=env,
                cwd=Path(__file__).resolve().parents[2],
            )
        except subprocess.TimeoutExpired:
            pytest.fail("still waiting for the Hub after 120 s")
        # The connections it made wait, never accepted, in the listen queue: count them.
        blackhole.setblocking(False)
        connections = 0
        while True:
            try:
                blackhole.accept()[0].close()
            except BlockingIOError:
                break
            connections += 1
    assert run.returncode == 1 and connections == 1, (connections, run.stderr)
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: the Hugging Face Hub cannot be reached") and "DATA=PATH" in line
    assert "FINSENT_FPB_DIR" in line and fpb.HUB_DATASET in line
