"""Documents and net scores through the client, the CLI and `finsent score --documents`, against the
session's tritonserver (the document models of tests/model_repository/test_document.py)."""

from __future__ import annotations

import asyncio
import csv
import json

import numpy as np
import pytest

from finsent import AsyncClient, Client, DocumentPrediction, Failure, TextError
from tests.client.test_cli import finsent
from tests.model_repository.test_document import documents

DOC = (
    "Acme Inc. said net sales rose approx. 3.2 % to EUR 1.5 mn. in the quarter. Shares fell 4% after the "
    "guidance cut.\n\nOutlook\n- Costs will rise.\n- The dividend is unchanged."
)


def test_a_prediction_carries_its_net_score(triton):
    with Client(triton.grpc_url) as client:
        (p,) = client.classify(["Profit rose."])
    assert p.net == pytest.approx(p.probabilities["positive"] - p.probabilities["negative"])
    assert p.as_dict()["net"] == p.net


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classify_documents_returns_what_the_document_model_answers(triton, protocol):
    url = triton.grpc_url if protocol == "grpc" else triton.http_url
    with Client(url, protocol, "distilbert") as client:
        (doc, other) = client.classify_documents([DOC, "Profit rose."])
    truth = documents(triton, "distilbert", [DOC])
    assert isinstance(doc, DocumentPrediction) and doc.label == truth["LABEL"][0]
    assert doc.sentence_count == 5 == len(doc.sentences) and other.sentence_count == 1
    assert [s.text for s in doc.sentences] == [
        "Acme Inc. said net sales rose approx. 3.2 % to EUR 1.5 mn. in the quarter.",
        "Shares fell 4% after the guidance cut.",
        "Outlook",
        "Costs will rise.",
        "The dividend is unchanged.",
    ]
    assert [s.text for s in doc.sentences] == [DOC[s.start : s.end] for s in doc.sentences]
    np.testing.assert_allclose(
        [doc.probabilities[k] for k in ("negative", "neutral", "positive")], truth["PROBABILITIES"][0], atol=1e-7
    )
    assert doc.net == pytest.approx(float(truth["NET"][0][0]), abs=1e-6)
    assert doc.negative_share == pytest.approx(float(truth["NEGATIVE_SHARE"][0][0]))
    assert doc.as_dict()["sentences"][0]["text"] == doc.sentences[0].text


def test_async_classify_documents_and_a_refused_document_by_index(triton):
    async def run():
        async with AsyncClient(triton.grpc_url) as client:
            return await client.classify_documents(["Profit rose. Costs fell.", "  ", "Sales rose."], on_error="return")

    ok, bad, last = asyncio.run(run())
    assert ok.sentence_count == 2 and last.sentence_count == 1
    assert isinstance(bad, Failure) and bad.index == 1 and "empty or whitespace only" in bad.reason
    with Client(triton.grpc_url) as client, pytest.raises(TextError) as raised:
        client.classify_documents(["Profit rose.", b"caf\xe9 ok."])
    assert raised.value.index == 1 and "not valid UTF-8" in str(raised.value)


def test_cli_classify_shows_net_and_a_document_sentence_by_sentence(triton):
    run = finsent("classify", "--url", triton.grpc_url, "Profit rose.")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].split()[-1] == "net"
    run = finsent("classify", "--document", "--url", triton.grpc_url, stdin=DOC)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("document: 5 sentences") and "net" in lines[0]
    assert any(line.startswith("  0-") and "Acme Inc." in line for line in lines)
    run = finsent("classify", "--document", "--json", "--url", triton.grpc_url, DOC, "Profit rose.")
    rows = json.loads(run.stdout)
    assert [len(r["sentences"]) for r in rows] == [5, 1] and rows[1]["sentences"][0]["text"] == "Profit rose."


def test_score_documents_one_row_per_document_and_a_sentence_file(triton, tmp_path):
    source = tmp_path / "filings.csv"
    with open(source, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ticker", "text"])
        writer.writerows([["ACME", DOC], ["BAD", " "], ["XYZ", "Profit rose. Costs fell."]])
    out, sentences = tmp_path / "scored.csv", tmp_path / "sentences.jsonl"
    run = finsent(
        "score", source, "-o", out, "--documents", "--sentences", sentences, "--no-progress", "--url", triton.grpc_url
    )
    assert run.returncode == 0, run.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["ticker"] for r in rows] == ["ACME", "BAD", "XYZ"]
    assert [r["sentences"] for r in rows] == ["5", "", "2"] and "empty" in rows[1]["error"]
    assert {"net", "share_negative", "share_positive", "p_positive"} <= set(rows[0])
    per = [json.loads(line) for line in sentences.read_text().splitlines()]
    assert [(p["row"], p["sentence"]) for p in per] == [(0, i) for i in range(5)] + [(2, 0), (2, 1)]
    assert per[-1]["text"] == "Costs fell." and {"start", "end", "label", "net", "p_negative"} <= set(per[0])


def test_gateway_v1_documents(triton):
    from finsent.gateway import Settings
    from tests.client.test_gateway import Gateway

    gateway = Gateway(Settings(triton=triton.grpc_url, max_items=4, max_body_bytes=4096))
    try:
        resp = gateway.post("/v1/documents", json={"documents": [DOC, "Profit rose."]})
        assert resp.status_code == 200, resp.text
        with Client(triton.grpc_url) as client:
            want = client.classify_documents([DOC, "Profit rose."])
        assert resp.json() == {"model": "finbert", "documents": [d.as_dict() for d in want]}
        big = "Sales rose 3 % in the quarter. " * 400  # over max_body_bytes, under the document limit
        short = gateway.post("/v1/documents", json={"documents": [big], "model": "distilbert", "sentences": False})
        assert short.status_code == 200 and "sentences" not in short.json()["documents"][0]
        assert short.json()["documents"][0]["sentence_count"] == 400
        bad = gateway.post("/v1/documents", json={"documents": ["ok.", "   "]})
        assert bad.status_code == 422 and bad.json() == {"error": "item 1: text is empty or whitespace only", "item": 1}
    finally:
        gateway.stop()


def test_score_documents_resumes_with_its_sentence_file(triton, tmp_path):
    """Stopped after its first document, a re-run goes on: each document and sentence once."""
    from finsent.bulk.job import score_file

    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in [DOC, "Profit rose. Costs fell.", "Sales rose."]))
    out, sentences = tmp_path / "out.jsonl", tmp_path / "sentences.csv"

    class StopsAtTheSecondChunk:
        def __init__(self, client):
            self.client, self.calls, self.info = client, 0, client.info

        def classify_documents(self, texts, on_error):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return self.client.classify_documents(texts, on_error=on_error)

    with Client(triton.grpc_url) as client:
        with pytest.raises(KeyboardInterrupt):
            score_file(
                StopsAtTheSecondChunk(client),
                source,
                out,
                chunk_size=1,
                progress_bar=False,
                documents=True,
                sentences=sentences,
            )
        assert not out.exists() and not sentences.exists()
        summary = score_file(client, source, out, chunk_size=1, progress_bar=False, documents=True, sentences=sentences)
    assert summary.resumed_from == 1 and summary.rows == 3
    assert [json.loads(line)["sentences"] for line in out.read_text().splitlines()] == [5, 2, 1]
    with open(sentences, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["row"], r["sentence"]) for r in rows] == [("0", str(i)) for i in range(5)] + [
        ("1", "0"),
        ("1", "1"),
        ("2", "0"),
    ]
