"""Requests and answers as data (finsent/codec.py): texts to the TEXT tensor, answers to results
(read by tritonclient's own InferResult from a JSON answer), and the rows a server refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import serialize_byte_tensor

from finsent import wire
from finsent.codec import Chunk, chunks, decode, decode_documents, encode, model_info
from finsent.errors import FinsentError, ModelError, TextError
from finsent.results import Failure, ModelInfo
from finsent.traffic import BACKGROUND_ROWS_PARAMETER

LABELS = ("negative", "neutral", "positive")


def answer(outputs: dict):
    """A Triton HTTP answer of these outputs (name: rows), binary as Triton sends them, read by tritonclient."""
    header, data = {"model_name": "m", "outputs": []}, b""
    for name, rows in outputs.items():
        strings = isinstance(rows[0][0], str)
        array = np.array([[x.encode() for x in row] for row in rows], np.object_) if strings else np.float32(rows)
        raw = serialize_byte_tensor(array).item() if strings else array.tobytes()
        shape = list(array.shape)
        output = {"name": name, "datatype": "BYTES" if strings else "FP32", "shape": shape}
        header["outputs"].append({**output, "parameters": {"binary_data_size": len(raw)}})
        data += raw
    head = json.dumps(header).encode()
    return httpclient.InferResult.from_response_body(head + data, header_length=len(head))


def test_texts_are_sent_as_utf8_bytes_and_bytes_unchanged():
    batch = encode(["Profit rose.", b"\xff raw", "caf\udce9"])  # surrogateescape: a file's non-UTF-8 byte
    assert batch.shape == (3, 1) and batch.dtype == np.object_
    assert batch.reshape(-1).tolist() == [b"Profit rose.", b"\xff raw", b"caf\xe9"]
    with pytest.raises(TextError, match="text 1 is not encodable as UTF-8") as refused:
        encode(["fine", "\ud800"])
    assert refused.value.index == 1
    with pytest.raises(TypeError, match="str or bytes"):
        encode([3])


def test_predictions_are_read_in_the_servers_label_order():
    result = answer({"LABEL": [["positive"]], "SCORE": [[0.7]], "PROBABILITIES": [[0.1, 0.2, 0.7]]})
    [p] = decode(result, LABELS)
    assert (p.label, p.logits) == ("positive", None) and p.probabilities["negative"] == pytest.approx(0.1)


def document_answer(version: int):
    sentence = {"start": 0, "end": 12, "label": "positive", "probabilities": [0.1, 0.2, 0.7], "net": 0.6, "windows": 1}
    breakdown = json.dumps({"version": version, "sentences": [sentence]})
    columns = {name: [[0.5]] for name in wire.DOCUMENT_OUTPUTS}
    columns.update(LABEL=[["positive"]], PROBABILITIES=[[0.1, 0.2, 0.7]], SENTENCES=[[1]], BREAKDOWN=[[breakdown]])
    return answer(columns)


def test_a_documents_sentences_are_cut_from_the_text_sent():
    [d] = decode_documents(document_answer(wire.BREAKDOWN_VERSION), LABELS, ["Profit rose. Costs fell."])
    assert (d.label, d.sentence_count, d.probabilities["positive"]) == ("positive", 1, pytest.approx(0.7))
    assert [(s.text, s.label, s.windows) for s in d.sentences] == [("Profit rose.", "positive", 1)]


def test_a_breakdown_of_another_version_is_refused_by_name():
    with pytest.raises(ModelError, match=f"reads version {wire.BREAKDOWN_VERSION}: upgrade finsent-client"):
        decode_documents(document_answer(wire.BREAKDOWN_VERSION + 1), LABELS, ["Profit rose. Costs fell."])


def test_model_info_needs_labels_and_caps_background_rows_at_the_batch():
    config = {"max_batch_size": 8, "parameters": {"labels": {"string_value": ",".join(LABELS)}}}
    config["parameters"][BACKGROUND_ROWS_PARAMETER] = {"string_value": "16"}
    assert model_info("m", {"config": config}) == ModelInfo("m", 8, LABELS, 8)
    with pytest.raises(ModelError, match="is not a finsent ensemble"):
        model_info("m_tokenizer", {"max_batch_size": 8})


def test_a_refused_row_is_named_by_its_index_in_the_whole_list():
    [first, second] = chunks(["a", "", "c", "d"], 2, raise_errors=False)
    assert second.offset == 2 and second.batch() == ["c", "d"]
    second.refused(TextError(0, "is empty"))  # the server's index within the request it was sent
    assert second.batch() == ["d"] and second.out[0] == Failure(2, "is empty")
    assert second.served(["D"]) == [Failure(2, "is empty"), "D"]
    strict = Chunk(["a", "b"], 10)
    with pytest.raises(TextError, match="text 11 is bad"):
        strict.refused(TextError(1, "is bad"))
    with pytest.raises(FinsentError, match="named row 5 of a 1-row request"):
        strict.refused(TextError(5, "?"))
