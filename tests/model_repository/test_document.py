"""The document models (<family>_document, BLS over the family's ensemble), served by a real
tritonserver: the local target and the container repository's two profiles (gpu: native onnxruntime
classifier on CPU instances; cpu: the Python classifier)."""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from export import fpb
from finsent import Client, OverloadedError, Retry
from finsent.traffic import BACKGROUND
from model_repository import classes
from model_repository.assemble import FAMILIES, TargetOptions
from model_repository.classes import BACKGROUND_SUFFIX
from server import stack
from tests.export.fpb_data import synthetic_rows
from tests.model_repository.test_ensemble import infer
from tests.statistics import requests_of, stats_of
from tests.waiting import wait_until

ONE = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007."


@pytest.fixture(params=["triton", "container", "container_cpu"])
def served(request):
    return request.getfixturevalue(request.param)


def documents(triton, family, texts, protocol="grpc"):
    """The document model's outputs for `texts` (one document per row), BREAKDOWN parsed."""
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(triton.grpc_url if protocol == "grpc" else triton.http_url)
    try:
        batch = np.array([[t.encode() if isinstance(t, str) else t] for t in texts], dtype=np.object_)
        tensor = module.InferInput("TEXT", list(batch.shape), "BYTES")
        tensor.set_data_from_numpy(batch)
        result = client.infer(f"{family}_document", [tensor], client_timeout=300)
    finally:
        client.close()
    out = {
        name: result.as_numpy(name)
        for name in ("LABEL", "SCORE", "PROBABILITIES", "NET", "SENTENCES", "NEGATIVE_SHARE", "POSITIVE_SHARE")
    }
    out["LABEL"] = [x.decode() for x in out["LABEL"].reshape(-1)]
    out["BREAKDOWN"] = [json.loads(x) for x in result.as_numpy("BREAKDOWN").reshape(-1)]
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_a_one_sentence_document_is_the_ensembles_result(served, family):
    labels, scores, probs = infer(served, "grpc", family, [ONE])
    doc = documents(served, family, [ONE])
    assert doc["LABEL"] == labels and doc["SENTENCES"].reshape(-1).tolist() == [1]
    np.testing.assert_array_equal(doc["PROBABILITIES"], probs)
    np.testing.assert_array_equal(doc["SCORE"].reshape(-1), scores)
    np.testing.assert_allclose(doc["NET"].reshape(-1), probs[:, 2] - probs[:, 0], atol=1e-7)
    (sentence,) = doc["BREAKDOWN"][0]["sentences"]
    assert doc["BREAKDOWN"][0]["version"] == 1
    assert (sentence["start"], sentence["end"], sentence["label"], sentence["windows"]) == (0, len(ONE), labels[0], 1)
    np.testing.assert_allclose(sentence["probabilities"], probs[0], atol=1e-6)


def normal(text: str) -> str:
    return " ".join(text.split())  # a wrapped line's newline is a space


def fpb_like_sentences(n: int) -> tuple[list[str], str]:
    shared = fpb.shared_file("75")
    rows = fpb.read(shared) if shared else synthetic_rows(n)
    picked = np.random.RandomState(1).permutation(len(rows))[:n]
    return [fpb.detokenize(rows[i][0]) for i in picked], str(shared) if shared else "synthetic FPB-format rows"


@pytest.mark.parametrize("family", FAMILIES)
def test_sentences_the_splitter_recovers_get_the_ensembles_label(triton, family, record_property):
    sentences, origin = fpb_like_sentences(60)
    text = " ".join(sentences)
    doc = documents(triton, family, [text])
    parts = {normal(text[s["start"] : s["end"]]): s for s in doc["BREAKDOWN"][0]["sentences"]}
    recovered = [s for s in sentences if normal(s) in parts]
    labels, _, probs = infer(triton, "grpc", family, recovered)
    assert [parts[normal(s)]["label"] for s in recovered] == labels
    np.testing.assert_allclose([parts[normal(s)]["probabilities"] for s in recovered], probs, atol=1e-5)
    record_property("recovered", f"{len(recovered)}/{len(sentences)} from {origin}")
    print(f"\n{family}: the splitter recovered {len(recovered)}/{len(sentences)} sentences exactly ({origin})")
    if not fpb.shared_file("75"):  # in the summary, not only in -s output: the bar below is easier then
        warnings.warn(f"no Financial PhraseBank in ../shared: the 85% recovery bar was met on {origin}")
    assert len(recovered) >= 0.85 * len(sentences)
    assert doc["SENTENCES"].reshape(-1)[0] == len(parts)
    shares = np.array([s["label"] for s in doc["BREAKDOWN"][0]["sentences"]])
    assert doc["NEGATIVE_SHARE"].reshape(-1)[0] == pytest.approx(np.mean(shares == "negative"))
    assert doc["POSITIVE_SHARE"].reshape(-1)[0] == pytest.approx(np.mean(shares == "positive"))
    mean = np.mean([s["probabilities"] for s in doc["BREAKDOWN"][0]["sentences"]], axis=0)
    np.testing.assert_allclose(doc["PROBABILITIES"][0], mean, atol=1e-5)
    assert doc["NET"].reshape(-1)[0] == pytest.approx(mean[2] - mean[0], abs=1e-5)


def test_a_sentence_longer_than_the_max_length_is_scored_in_overlapping_windows(triton):
    long = "The company reported revenue of EUR 12 million and costs of EUR 9 million " * 60 + "in 2023."
    doc = documents(triton, "finbert", ["Profit rose. " + long])
    first, second = doc["BREAKDOWN"][0]["sentences"]
    assert first["windows"] == 1 and second["windows"] >= 3
    assert (second["start"], second["end"]) == (len("Profit rose. "), len("Profit rose. ") + len(long))


def test_sentences_of_documents_reach_the_classifier_in_few_executions(triton):
    stats = lambda: stats_of(triton, "finbert_classifier" + BACKGROUND_SUFFIX)  # background work's classifier
    sentences, _ = fpb_like_sentences(400)
    texts = [" ".join(sentences[i : i + 50]) for i in range(0, 400, 50)]
    before = stats()
    with ThreadPoolExecutor(len(texts)) as pool:  # .result(): a document that failed fails the test
        scored = [f.result() for f in [pool.submit(documents, triton, "finbert", [t]) for t in texts]]
    sentences = sum(int(doc["SENTENCES"].reshape(-1)[0]) for doc in scored)
    assert sentences >= 380
    # Every sentence is a row (a long one, several): wait for Triton to count the last execute, which
    # it does once the execute ends, after the classifier has answered.
    counted = wait_until(
        lambda: (s := stats())[0] - before[0] >= sentences and s, f"the classifier counts {sentences} rows", 30
    )
    rows, executions = (a - b for a, b in zip(counted, before))
    print(f"\nclassifier: {rows} sentences in {executions} executions")
    # Sent in requests of `sentences_per_request` sentences (8) and joined by the background classifier's
    # batcher: never more executions than requests.
    assert rows >= 380 and executions <= math.ceil(rows / 8) + len(texts)


BAD = [
    (["fine. really.", ""], "TEXT[1] is empty or whitespace only"),
    (["fine.", " \n\t "], "TEXT[1] is empty or whitespace only"),
    ([b"caf\xe9 results."], "TEXT[0] is not valid UTF-8"),
    (["- * -"], "TEXT[0] has no sentence to score"),
    (["ok.", "Sales rose. " * 400_000], "TEXT[1] is 4,800,000 bytes: a document may have at most 4,194,304"),
]


@pytest.mark.parametrize("texts,message", BAD, ids=["empty", "whitespace", "utf8", "no-sentence", "over-limit"])
def test_bad_documents_get_a_clear_error_and_single_texts_are_unaffected(served, texts, message):
    failures, stop = [], threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                infer(served, "grpc", "finbert", ["Profit rose."])
            except Exception as exc:  # noqa: BLE001 - any failure of the good traffic is the finding
                failures.append(exc)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        with pytest.raises(InferenceServerException) as raised:
            documents(served, "finbert", texts)
        assert message in str(raised.value)
        assert documents(served, "finbert", ["Profit rose. Costs fell."])["SENTENCES"].reshape(-1).tolist() == [2]
    finally:
        stop.set()
        thread.join()
    assert failures == []


def test_a_megabyte_document_does_not_starve_short_requests(triton):
    sentences, _ = fpb_like_sentences(400)
    text = ""
    while len(text.encode()) < 1_000_000:
        text += " ".join(sentences) + "\n\n"
    calls, finished, failures = [], threading.Event(), []  # calls: (began, ended) of each short request

    def short():
        while not finished.is_set():
            start = time.perf_counter()
            try:
                infer(triton, "grpc", "finbert", ["Profit rose."])
            except Exception as exc:  # noqa: BLE001
                failures.append(exc)
            calls.append((start, time.perf_counter()))

    with ThreadPoolExecutor(4) as pool:
        clients = [pool.submit(short) for _ in range(4)]
        try:
            start = time.perf_counter()
            doc = documents(triton, "finbert", [text])
            end = time.perf_counter()
        finally:
            finished.set()
        for client in clients:
            client.result()
    during = [b - a for a, b in calls]
    print(
        f"\n1 MB document: {doc['SENTENCES'][0][0]} sentences in {end - start:.1f} s; {len(during)} short requests "
        f"meanwhile, p50 {np.percentile(during, 50) * 1000:.0f} ms, p99 {np.percentile(during, 99) * 1000:.0f} ms"
    )
    assert failures == [] and doc["SENTENCES"][0][0] > 5000
    # Not starved: short requests kept completing throughout the document, in each quarter of its
    # time (starved, they wait behind its sentences to its end). How fast: benchmarks/documents.py
    # (short requests during a long document) and benchmarks/traffic_classes.py.
    quarters = np.linspace(start, end, 5)
    answered = [sum(a <= ended < b for _, ended in calls) for a, b in zip(quarters, quarters[1:])]
    assert min(answered) > 0, f"short requests answered in each quarter of the document: {answered}"


def test_sentences_refused_for_load_are_retried_inside_the_document_model(exports, tmp_path, monkeypatch):
    """A full background queue refuses some of a document's sentence requests: the document model
    retries them (document.pbtxt's overload_wait_seconds), so the document is scored, not failed."""
    # One background request may wait at the classifier: a flood of background requests keeps it full.
    monkeypatch.setitem(classes.CLASSIFIER, BACKGROUND, classes.Bound(1))
    sentences, _ = fpb_like_sentences(120)
    text, floods = " ".join(sentences), 4
    refused, done = [], threading.Event()

    def flood():
        with Client(server.grpc_url, model="finbert", traffic="background", retry=Retry(attempts=0)) as client:
            while not done.is_set():
                try:
                    client.classify(sentences[:64])
                except OverloadedError:
                    refused.append(1)

    def documents_refused():  # the copy's refusals less the flood's (each flood may have one not yet counted)
        return requests_of(server, "finbert" + BACKGROUND_SUFFIX, "fail") - len(refused) - floods

    with stack.serve({"finbert": exports["finbert"]}, tmp_path, TargetOptions("local"), started=False) as server:
        with ThreadPoolExecutor(floods + 2) as pool:
            running = [pool.submit(flood) for _ in range(floods)]
            try:
                scored = [pool.submit(documents, server, "finbert", [text]) for _ in range(2)]
                # The flood lasts until the queue has refused a document's sentences, then the documents
                # get through: refused, they are waited for and retried, not failed.
                wait_until(lambda: documents_refused() > 0, "a document's sentence request refused")
            finally:
                done.set()
            for future in running:
                future.result()
            counts = [f.result()["SENTENCES"].reshape(-1).tolist() for f in scored]
    assert counts[0] == counts[1] and counts[0][0] >= 100, counts  # every sentence scored (the splitter's count)
