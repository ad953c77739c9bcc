"""The wire contract of the finsent models: tensor names, the document model's BREAKDOWN version, and
Triton's refusals for load. Stated once, here.

No imports, on purpose: model_repository/assemble.py copies this file next to the document model
(python_models/document.py), which imports it inside Triton's Python stub, where finsent is not
installed. The client reads the same names; tests/client/test_wire.py ties configs/ensemble.pbtxt
and configs/document.pbtxt to them.
"""

# One text per batch row, UTF-8 BYTES [B, 1], into every finsent model.
INPUT = "TEXT"
# An ensemble's outputs (LABEL: the label; SCORE: its probability; PROBABILITIES: the labels' in the
# ensemble's `labels` order), and LOGITS (raw scores, same order), sent only to callers who ask.
OUTPUTS = ("LABEL", "SCORE", "PROBABILITIES")
LOGITS = "LOGITS"
# The document models (<ensemble>_document) and their outputs (docs/documents.md): the document's
# verdict, and BREAKDOWN, JSON of each sentence's scores, in the version below.
DOCUMENT_SUFFIX = "_document"
DOCUMENT_OUTPUTS = (
    *OUTPUTS,
    "NET",
    "SENTENCES",
    "NEGATIVE_SHARE",
    "POSITIVE_SHARE",
    "BREAKDOWN",
)
BREAKDOWN_VERSION = 1
# Triton's refusals for load (core r24.10: a priority level's max_queue_size; its queue timeout):
# the clients retry them; the document model answers a sentence refused so as UNAVAILABLE.
OVERLOADED = ("Exceeds maximum queue size", "Request timeout expired")


def backoff(initial_s: float, max_s: float):
    """The waits before each retry of a refusal: doubling from initial_s, at most max_s, without end
    (the caller stops it: finsent.core.Retry after its attempts, the document model at its deadline)."""
    delay = initial_s
    while True:
        yield delay
        delay = min(2 * delay, max_s)
