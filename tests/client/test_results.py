"""What the clients return (finsent/results.py), as the CLI, the gateway and the bulk job print it."""

from finsent.results import DocumentPrediction, Failure, Health, Prediction, Sentence

PROBABILITIES = {"negative": 0.1, "neutral": 0.2, "positive": 0.7}


def test_a_prediction_carries_its_net_score_and_logits_only_when_asked_for():
    p = Prediction("positive", 0.7, PROBABILITIES)
    assert round(p.net, 6) == 0.6
    assert p.as_dict() == {"label": "positive", "score": 0.7, "probabilities": PROBABILITIES, "net": p.net}
    logits = {"negative": -1.0, "neutral": 0.0, "positive": 1.5}
    assert Prediction("positive", 0.7, PROBABILITIES, logits).as_dict()["logits"] == logits


def test_a_document_lists_its_sentences_unless_told_not_to():
    sentence = Sentence(0, 12, "Profit rose.", "positive", PROBABILITIES, 0.6, 1)
    d = DocumentPrediction("positive", 0.7, PROBABILITIES, 0.6, 1, 0.0, 1.0, (sentence,))
    assert d.as_dict()["sentences"] == [sentence.as_dict()] and sentence.as_dict()["text"] == "Profit rose."
    assert "sentences" not in d.as_dict(sentences=False)


def test_a_failure_and_health_say_what_they_are():
    assert Failure(3, "is empty or whitespace only").message == "text 3 is empty or whitespace only"
    assert Failure(0, "TEXT[0] is not UTF-8").message == "text 0: TEXT[0] is not UTF-8"
    assert Health(True, True, "finbert", True).ok and not Health(True, True, "finbert", False).ok
