"""finsent client: classify financial text with the finsent ensembles on Triton.

from finsent import Client
with Client("localhost:8001") as client:            # gRPC; Client("localhost:8000", "http")
    [p] = client.classify(["Profit rose 12%."])
    p.label, p.score, p.probabilities["negative"], p.net
    [d] = client.classify_documents([filing_text])      # sentence by sentence: d.sentences
"""

from finsent.aio import AsyncClient
from finsent.client import Client
from finsent.core import Retry
from finsent.errors import (
    FinsentError,
    ModelError,
    OverloadedError,
    RequestTimeout,
    RestrictedError,
    TextError,
    UnavailableError,
)
from finsent.results import DocumentPrediction, Failure, Health, ModelInfo, ModelStatus, Prediction, Sentence

__all__ = [
    "AsyncClient",
    "Client",
    "DocumentPrediction",
    "Failure",
    "FinsentError",
    "Health",
    "ModelError",
    "ModelInfo",
    "ModelStatus",
    "OverloadedError",
    "Prediction",
    "RequestTimeout",
    "RestrictedError",
    "Retry",
    "Sentence",
    "TextError",
    "UnavailableError",
]
