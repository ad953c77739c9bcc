"""What issue 16 promises of the serving path, on a real tritonserver: the temperature in the
model facts is applied before the softmax and never changes a label, LOGITS are the raw scores
in canonical order, and the Prometheus series on the metrics port count every prediction."""

import dataclasses
import re
import shutil
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from export.calibrate import softmax
from export.facts import CANONICAL_LABELS, ModelFacts
from export.runtime import OnnxClassifier
from model_repository.assemble import FAMILIES, TargetOptions
from server import stack
from tests.model_repository.test_ensemble import MANY

TEMPERATURES = {"finbert": 3.0, "distilbert": 0.25}  # one softer, one sharper than the raw softmax


def served(url, model, texts):
    client = grpcclient.InferenceServerClient(url)
    try:
        rows = np.array([[t.encode()] for t in texts], dtype=np.object_)
        tensor = grpcclient.InferInput("TEXT", list(rows.shape), "BYTES")
        tensor.set_data_from_numpy(rows)
        result = client.infer(model, [tensor])
        return (
            [x.decode() for x in result.as_numpy("LABEL").reshape(-1)],
            result.as_numpy("SCORE").reshape(-1),
            result.as_numpy("PROBABILITIES"),
            result.as_numpy("LOGITS"),
        )
    finally:
        client.close()


@pytest.fixture(scope="module")
def tempered(exports, tmp_path_factory):
    """The session's exports with a temperature other than 1 in their facts, served."""
    where = tmp_path_factory.mktemp("tempered")
    copies = {}
    for family, path in exports.items():
        copies[family] = shutil.copytree(path, where / family)
        dataclasses.replace(ModelFacts.load(path), temperature=TEMPERATURES[family]).save(copies[family])
    with stack.serve(copies, where / "w", TargetOptions("local"), started=False) as server:
        yield server


@pytest.mark.parametrize("family", FAMILIES)
def test_the_temperature_is_applied_and_never_changes_a_label(triton, tempered, exports, family):
    labels, _, probs, logits = served(triton.grpc_url, family, MANY)
    t_labels, t_scores, t_probs, t_logits = served(tempered.grpc_url, family, MANY)
    assert t_labels == labels  # argmax invariance
    np.testing.assert_allclose(t_logits, logits, atol=1e-6)  # the raw scores do not move
    np.testing.assert_allclose(t_probs, softmax(logits, TEMPERATURES[family]), atol=1e-6)
    np.testing.assert_allclose(t_scores, t_probs.max(axis=1), rtol=0, atol=0)
    assert np.abs(t_probs - probs).max() > 0.01  # it did change the probabilities
    sharper = TEMPERATURES[family] < 1
    assert ((t_scores > probs.max(axis=1) - 1e-7) if sharper else (t_scores < probs.max(axis=1) + 1e-7)).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_are_the_raw_scores_in_canonical_order(triton, exports, family):
    _, _, probs, logits = served(triton.grpc_url, family, MANY)
    local = OnnxClassifier(exports[family], "fp32")
    want = local.logits(MANY)[:, local.facts.canonical_index]
    assert local.facts.canonical_index != [0, 1, 2]  # the re-ordering is exercised
    assert logits.shape == (len(MANY), 3) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, want, atol=1e-4)
    np.testing.assert_allclose(probs, softmax(logits), atol=1e-6)  # facts say T = 1 here


SERIES = re.compile(r"^(finsent_\w+)\{([^}]*)\}\s+(\S+)$", re.MULTILINE)


def scrape(server) -> dict:
    text = urllib.request.urlopen(f"http://localhost:{server.ports.metrics}/metrics", timeout=10).read().decode()
    out = {}
    for name, labels, value in SERIES.findall(text):
        key = tuple(sorted(tuple(pair.split("=", 1)) for pair in labels.split(",") if pair))
        out[(name, tuple((k, v.strip('"')) for k, v in key))] = float(value)
    return out


def series(snapshot, name, **labels):
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_metrics_port_counts_predictions_per_label_and_their_confidence(triton):
    # The postprocess sends its counts at most once a second, at a request (postprocess.py):
    # one text a second after any earlier traffic sends what that left pending.
    from model_repository.assemble import SOURCE  # postprocess.py imports Triton's stub module: read it

    FLUSH_S = float(
        re.search(r"^FLUSH_S = ([\d.]+)", (SOURCE / "python_models" / "postprocess.py").read_text(), re.M).group(1)
    )
    time.sleep(FLUSH_S + 0.1)
    served(triton.grpc_url, "finbert", MANY[:1])
    before = scrape(triton)
    time.sleep(FLUSH_S + 0.1)
    texts = MANY
    labels, scores, _, _ = served(triton.grpc_url, "finbert", texts)
    after = scrape(triton)
    for label in CANONICAL_LABELS:
        moved = series(after, "finsent_predictions_total", model="finbert", label=label) - series(
            before, "finsent_predictions_total", model="finbert", label=label
        )
        assert moved == labels.count(label), label
    assert (
        series(after, "finsent_top_probability_count", model="finbert")
        - series(before, "finsent_top_probability_count", model="finbert")
    ) == len(texts)
    assert (
        series(after, "finsent_top_probability_sum", model="finbert")
        - series(before, "finsent_top_probability_sum", model="finbert")
    ) == pytest.approx(scores.sum(), rel=1e-5)
    low = series(after, "finsent_top_probability_bucket", model="finbert", le="0.5") - series(
        before, "finsent_top_probability_bucket", model="finbert", le="0.5"
    )
    assert low == (scores <= 0.5).sum()
    assert (
        series(after, "finsent_top_probability_bucket", model="finbert", le="+Inf")
        - series(before, "finsent_top_probability_bucket", model="finbert", le="+Inf")
    ) == len(texts)
    # Per model: distilbert's series did not move with finbert's traffic.
    assert series(after, "finsent_top_probability_count", model="distilbert") == series(
        before, "finsent_top_probability_count", model="distilbert"
    )
