"""The client's errors: what a caller catches (all are FinsentError)."""

from __future__ import annotations


def describe(reason: str, index: int | None = None) -> str:
    """A refused text's reason as a sentence, naming its index where known."""
    who = "text" if index is None else f"text {index}"
    return f"{who} {reason}" if reason.startswith("is ") else f"{who}: {reason}"


class FinsentError(Exception):
    """Base class of the client's errors."""


class TextError(FinsentError, ValueError):
    """The server refused one text; `index` is its position in the caller's list."""

    def __init__(self, index: int, reason: str):
        self.index, self.reason = index, reason
        super().__init__(describe(reason, index))


class ModelError(FinsentError):
    """The model is unknown to the server, or does not follow the finsent contract."""


class UnavailableError(FinsentError):
    """The server could not be reached (after the retries)."""


class OverloadedError(UnavailableError):
    """The server refused the request for load (a full queue of its traffic class, or its time in the
    queue ran out): retry later. Retried with backoff; `Retry(patient=True)` (finsent score) never gives up."""


class RequestTimeout(FinsentError):
    """The server did not answer within the timeout."""


class RestrictedError(FinsentError):
    """The server restricts this API to callers with its admin key (as `make serve` and the k8s chart do)."""
