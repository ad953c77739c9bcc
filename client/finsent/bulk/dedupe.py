"""Exact-text de-duplication: each distinct text is sent once per run and every copy gets its result.

The cache maps a text's digest to its result (a few hundred bytes per distinct text); a resumed run
starts it from the results its partial output already holds."""

from __future__ import annotations

import hashlib

from finsent.bulk.columns import Columns
from finsent.bulk.tables import Unusable
from finsent.results import Failure, Prediction, Result


def text_key(text) -> bytes | None:
    """A stable digest of a text (Python's hash() differs per process), the same for the shard
    choice of every worker and the de-duplication; None for a row without a text."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=16).digest() if isinstance(text, bytes) else None


def written_results(writer, columns: Columns, column: str) -> dict[bytes, Prediction]:
    """{text digest: prediction} of the rows a resumed run's partial output already holds."""
    found = {}
    for row in writer.written_rows(column):
        key, prediction = text_key(row.get(column)), columns.prediction(row)
        if key is not None and prediction is not None:
            found[key] = prediction
    return found


def classify_rows(
    client, texts: list, column: str, numbers: list[int], keys: list, cache: dict | None, documents: bool = False
) -> tuple[list[Result], int]:
    """Results for one chunk (rows `numbers` of the input), and how many rows reused the result of an
    earlier row with the same text (`cache`, shared by the chunks of a run; None: no reuse). Rows
    without a usable text fail here, without a request. documents: each text is a document."""
    results: list[Result | None] = [None] * len(texts)
    send, first, reused = [], {}, 0  # first: key -> the row of this chunk that sends it
    for i, text in enumerate(texts):
        if isinstance(text, Unusable):
            results[i] = Failure(numbers[i], text.reason)
        elif text is None:
            results[i] = Failure(numbers[i], f"no value in column {column!r}")
        elif cache is not None and (keys[i] in cache or keys[i] in first):
            reused += 1
        else:
            first[keys[i]] = i
            send.append(i)
    classify = client.classify_documents if documents else client.classify
    served = classify([texts[i] for i in send], on_error="return") if send else []
    for i, result in zip(send, served):
        results[i] = result
        if cache is not None:
            cache[keys[i]] = result
    for i, result in enumerate(results):
        if result is None:
            results[i] = cache[keys[i]]
        if isinstance(results[i], Failure):  # a refusal is the row's, with its own number
            results[i] = Failure(numbers[i], results[i].reason)
    return results, reused
