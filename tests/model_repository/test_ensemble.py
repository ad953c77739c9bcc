"""The ensembles, served by a real tritonserver, against transformers pipelines: the local target
and the container repository's profiles (native onnxruntime backend for the gpu profile)."""

import threading

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from export.facts import CANONICAL_LABELS
from export.sentences import PARITY_SENTENCES
from model_repository.assemble import FAMILIES
from tests.statistics import model_stats
from tests.waiting import wait_until

PROTOCOLS = {"http": httpclient, "grpc": grpcclient}
MANY = PARITY_SENTENCES + [
    f"Quarter {i}: revenue grew {i} percent while costs rose {2 * i} percent." * (1 + i % 4) for i in range(30)
]


@pytest.fixture(params=["triton", "container", "container_cpu"])
def served(request):
    """Each test below runs against every target and profile (tests/conftest.py)."""
    return request.getfixturevalue(request.param)


def infer(triton, protocol, model, texts):
    module = PROTOCOLS[protocol]
    client = module.InferenceServerClient(triton.http_url if protocol == "http" else triton.grpc_url)
    try:
        batch = np.array([[t.encode() if isinstance(t, str) else t] for t in texts], dtype=np.object_)
        tensor = module.InferInput("TEXT", list(batch.shape), "BYTES")
        tensor.set_data_from_numpy(batch)
        result = client.infer(model, [tensor])
        return (
            [x.decode() for x in result.as_numpy("LABEL").reshape(-1)],
            result.as_numpy("SCORE").reshape(-1),
            result.as_numpy("PROBABILITIES"),
        )
    finally:
        client.close()


def expected(reference, family, texts):
    rows = reference[family](list(texts), truncation=True, max_length=512, batch_size=1)
    return np.array([[{d["label"]: d["score"] for d in row}[label] for label in CANONICAL_LABELS] for row in rows])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("texts", [PARITY_SENTENCES[:1], MANY], ids=["single", "many"])
def test_ensemble_matches_the_transformers_pipeline(served, reference, family, protocol, texts):
    labels, scores, probs = infer(served, protocol, family, texts)
    want = expected(reference, family, texts)
    assert probs.shape == (len(texts), 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, want, atol=1e-4)
    assert labels == [CANONICAL_LABELS[i] for i in want.argmax(axis=1)]
    np.testing.assert_allclose(scores, probs.max(axis=1), rtol=0, atol=0)


def test_predictions_are_not_all_alike(served):
    # Guards the parity tests above: a label-order bug could hide behind uniform outputs.
    labels, _, probs = infer(served, "grpc", "finbert", MANY)
    assert len(set(labels)) >= 2 and np.ptp(probs[:, 0]) > 0.05


def classifier_stats(triton, family):
    stats = model_stats(triton, f"{family}_classifier")
    return stats["inference_stats"]["success"]["count"], stats["execution_count"], stats.get("batch_stats", [])


def send_together(triton, family, texts):
    """All texts as separate single-text requests in flight at once (gRPC async_infer)."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    done, results = threading.Event(), [None] * len(texts)
    remaining = [len(texts)]
    lock = threading.Lock()

    def callback(i, result, error):
        results[i] = error or (result.as_numpy("LABEL")[0, 0].decode(), result.as_numpy("PROBABILITIES")[0])
        with lock:
            remaining[0] -= 1
            if not remaining[0]:
                done.set()

    try:
        tensors = []
        for text in texts:
            tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
            tensors.append(tensor)
        for i, tensor in enumerate(tensors):
            client.async_infer(family, [tensor], callback=lambda result, error, i=i: callback(i, result, error))
        assert done.wait(60), "requests did not complete"
    finally:
        client.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    return results


@pytest.mark.parametrize("family", FAMILIES)
def test_concurrent_requests_of_different_lengths_are_batched_and_correct(served, family):
    texts = [("Net profit rose sharply on strong demand. " * (1 + i))[: 40 + 37 * i] for i in range(16)]
    sequential = [infer(served, "grpc", family, [t]) for t in texts]
    # Whether requests meet is a matter of timing on a busy machine: a server that batches
    # ragged requests does so within three tries; one that cannot never does.
    history = []
    for _ in range(3):
        requests_before, executions_before, _ = classifier_stats(served, family)
        results = send_together(served, family, texts)
        for (label, probs), (seq_labels, _, seq_probs) in zip(results, sequential):
            assert label == seq_labels[0]
            np.testing.assert_allclose(probs, seq_probs[0], atol=1e-5)
        # Triton counts a request once its execute ends, which can be after the answer (the Python
        # classifier answers early): wait for every request to be counted, then read the executions.
        requests_after, executions_after, _ = wait_until(
            lambda: (s := classifier_stats(served, family))[0] - requests_before >= len(texts) and s,
            f"the classifier's statistics count all {len(texts)} requests",
            30,
        )
        requests, executions = requests_after - requests_before, executions_after - executions_before
        assert requests == len(texts)
        history.append(executions)
        if executions < requests:
            break
    assert min(history) < len(texts), f"{len(texts)} requests ran in {history} executions: nothing was batched"


def test_long_text_is_truncated_not_refused(served, reference):
    text = " ".join(["revenue"] * 1200 + ["growth"] * 800)  # 2,000 words
    for family in FAMILIES:
        labels, _, probs = infer(served, "http", family, [text])
        np.testing.assert_allclose(probs, expected(reference, family, [text]), atol=1e-4)


def test_a_long_run_of_whitespace_does_not_push_the_words_out(served, reference):
    sentence = "Net sales decreased and the company reported heavy losses."
    for family in FAMILIES:
        _, _, probs = infer(served, "grpc", family, [" " * 9000 + sentence])
        np.testing.assert_allclose(probs, expected(reference, family, [sentence]), atol=1e-4)


def test_megabyte_text_is_truncated_and_served(served, reference):
    text = "Shares of the company fell after the profit warning. " * 20_000  # ~1 MB
    _, _, probs = infer(served, "grpc", "finbert", [text])
    np.testing.assert_allclose(probs, expected(reference, "finbert", [text]), atol=1e-4)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "texts, message",
    [
        (["fine", b"\xff\xfe bad"], "TEXT[1] is not valid UTF-8"),
        (["fine", "   "], "TEXT[1] is empty or whitespace only"),
        ([""], "TEXT[0] is empty"),
        (["fine", "\u200b\u200b", "fine"], "TEXT[1] has no token the model can read"),
        (["\ufeff\x00"], "TEXT[0] has no token the model can read"),
    ],
)
def test_bad_text_gets_a_clear_error_and_the_server_keeps_serving(served, protocol, texts, message):
    with pytest.raises(InferenceServerException, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        infer(served, protocol, "finbert", texts)
    assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    labels, _, _ = infer(served, protocol, "finbert", ["Profit rose."])
    assert labels[0] in CANONICAL_LABELS


def test_more_texts_than_the_max_batch_are_refused(served):
    with pytest.raises(InferenceServerException, match="batch"):
        infer(served, "http", "finbert", ["Profit rose."] * 65)
