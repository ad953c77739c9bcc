import json

import pytest

from export.facts import CANONICAL_LABELS, FactsError, ModelFacts, canonical_index


def test_canonical_index_follows_the_checkpoint_order():
    # ProsusAI/finbert: 0 positive, 1 negative, 2 neutral
    assert canonical_index(["positive", "negative", "neutral"]) == [1, 2, 0]
    assert canonical_index(["Negative", "NEUTRAL", "positive"]) == [0, 1, 2]


@pytest.mark.parametrize(
    "labels", [["LABEL_0", "LABEL_1", "LABEL_2"], ["positive", "negative"], ["positive", "positive", "neutral"]]
)
def test_unservable_labels_are_refused(labels):
    with pytest.raises(FactsError, match="sentiment labels"):
        canonical_index(labels)


def test_facts_round_trip_and_carry_the_canonical_index(tmp_path):
    facts = ModelFacts(
        name="finbert",
        source="x",
        model_type="bert",
        id2label=["positive", "negative", "neutral"],
        max_length=512,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
    )
    path = facts.save(tmp_path)
    data = json.loads(path.read_text())
    assert data["canonical_index"] == [1, 2, 0]
    assert data["canonical_labels"] == list(CANONICAL_LABELS)
    assert ModelFacts.load(tmp_path) == facts


def test_facts_without_attention_mask_are_refused():
    with pytest.raises(FactsError, match="attention_mask"):
        ModelFacts(
            name="x",
            source="x",
            model_type="bert",
            id2label=list(CANONICAL_LABELS),
            max_length=128,
            input_names=["input_ids"],
        )
