"""What the sync and async clients share: results, errors, retry policy, request/response codec.

Nothing here knows about tokenization or label order: the label order is read from the
ensemble config's `labels` parameter on the server, the label itself comes from `LABEL`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Generator, Iterator, Mapping, Sequence, Union

import numpy as np
from tritonclient.utils import InferenceServerException

from finsent.traffic import BACKGROUND, BACKGROUND_ROWS_PARAMETER, TRAFFIC_PARAMETER, level

TEXT_ROW = re.compile(r"TEXT\[(\d+)\]\s*(.*)", re.DOTALL)
# Triton's answer to a restricted API (--http-restricted-api / --grpc-restricted-protocol) called
# without its header: HTTP 403 "This API is restricted, ..."; gRPC UNAVAILABLE "This protocol is restricted, ...".
RESTRICTED = re.compile(r"\b(API|protocol) is restricted\b")
# The ensembles a finsent repository can hold (export.facts.FAMILIES; a test keeps them equal).
ENSEMBLES = ("finbert", "distilbert")
# The model a client, the CLI, the gateway and the load tests use when none is named (--model,
# $FINSENT_MODEL): the one finsent ensemble the server serves, or this one when it serves several.
DEFAULT_MODEL = "finbert"
log = logging.getLogger("finsent")


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    probabilities: Mapping[str, float]  # negative, neutral, positive (the server's `labels` order)
    logits: Mapping[str, float] | None = None  # raw scores, before the model's temperature: asked for only

    @property
    def net(self) -> float:
        """P(positive) - P(negative): FinBERT's authors' sentiment score, from -1 to 1."""
        return self.probabilities["positive"] - self.probabilities["negative"]

    def as_dict(self) -> dict:
        out = {"label": self.label, "score": self.score, "probabilities": dict(self.probabilities), "net": self.net}
        return out if self.logits is None else {**out, "logits": dict(self.logits)}


# The document models (<ensemble>_document) and the BREAKDOWN version this client reads (docs/documents.md).
DOCUMENT_SUFFIX = "_document"
BREAKDOWN_VERSION = 1


@dataclass(frozen=True)
class Sentence:
    """One sentence of a document: its characters text[start:end], and its scores."""

    start: int
    end: int
    text: str
    label: str
    probabilities: Mapping[str, float]
    net: float
    windows: int  # 1, or the overlapping windows a sentence past the max length was scored in

    def as_dict(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "net": self.net,
            "windows": self.windows,
        }


@dataclass(frozen=True)
class DocumentPrediction:
    """A document's verdict: probabilities are the mean over its sentences; the shares are of
    sentences labelled negative / positive (docs/documents.md)."""

    label: str
    score: float
    probabilities: Mapping[str, float]
    net: float
    sentence_count: int
    negative_share: float
    positive_share: float
    sentences: tuple[Sentence, ...]

    def as_dict(self, sentences: bool = True) -> dict:
        out = {
            "label": self.label,
            "score": self.score,
            "probabilities": dict(self.probabilities),
            "net": self.net,
            "sentence_count": self.sentence_count,
            "negative_share": self.negative_share,
            "positive_share": self.positive_share,
        }
        return {**out, "sentences": [s.as_dict() for s in self.sentences]} if sentences else out


def describe(reason: str, index: int | None = None) -> str:
    who = "text" if index is None else f"text {index}"
    return f"{who} {reason}" if reason.startswith("is ") else f"{who}: {reason}"


@dataclass(frozen=True)
class Failure:
    """A text the server refused (empty, invalid UTF-8); returned with on_error="return"."""

    index: int
    reason: str  # e.g. "is empty or whitespace only"

    @property
    def message(self) -> str:
        return describe(self.reason, self.index)


Result = Union[Prediction, Failure]
DocumentResult = Union["DocumentPrediction", Failure]


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


@dataclass(frozen=True)
class ModelInfo:
    name: str
    max_batch_size: int
    labels: tuple[str, ...]
    background_batch_size: int = 0  # rows a background request holds at most (0: max_batch_size)


@dataclass(frozen=True)
class Health:
    live: bool
    ready: bool
    model: str
    model_ready: bool

    @property
    def ok(self) -> bool:
        return self.live and self.ready and self.model_ready


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: str
    state: str
    reason: str = ""


def model_statuses(index) -> list[ModelStatus]:
    """get_model_repository_index() of either protocol (gRPC JSON: {"models": [...]}; HTTP: [...])."""
    rows = index.get("models", []) if isinstance(index, dict) else index
    return [ModelStatus(m["name"], str(m.get("version", "")), m.get("state", ""), m.get("reason", "")) for m in rows]


NOT_SERVED = "not loaded, or not in the repository"


def served_ensembles() -> Plan:
    """The finsent ensembles the server serves, as a plan (see list_models): model readiness is
    open on every server, unlike the repository index that `make serve` restricts."""
    served = []
    for name in ENSEMBLES:
        ready = yield ("is_model_ready", name)
        if isinstance(ready, FinsentError) and not isinstance(ready, (ModelError, RestrictedError)):
            raise ready  # unreachable, timed out: not an answer about the model
        if ready is True:
            served.append(name)
    yield served


def choose_model(url: str) -> Plan:
    """The model to use when none is named: the one finsent ensemble served, else DEFAULT_MODEL."""
    served = yield from _run_plan(served_ensembles())
    if not served:
        raise ModelError(
            f"Triton at {url} serves none of the finsent ensembles ({', '.join(ENSEMBLES)}): "
            f"is it a finsent server, and did `make serve` load a model?"
        )
    yield DEFAULT_MODEL if DEFAULT_MODEL in served else served[0]


def unknown_model(model: str, url: str) -> Plan:
    """The error for a model the server does not serve, naming the ones it does."""
    served = yield from _run_plan(served_ensembles())
    yield ModelError(
        f"model {model!r} is not served by Triton at {url}; it serves "
        + (
            ", ".join(served) + " (choose with --model or $FINSENT_MODEL)"
            if served
            else "none of the finsent ensembles"
        )
    )


def _run_plan(plan: Plan):
    """Delegate a sub-plan's calls to the caller; return its last value."""
    step = next(plan)
    while isinstance(step, tuple):
        step = plan.send((yield step))
    return step


Plan = Generator[Union[tuple, list], object, None]


def list_models(model: str, url: str) -> Plan:
    """models() as a plan both clients run: it yields the call to make, (tritonclient method,
    *args), is sent its answer (as_json; the FinsentError it raised) and yields the rows last.

    The repository index lists every model. Where the server restricts it to its admin key
    (`make serve`, the k8s chart), the finsent ensembles (and `model`) and then the steps of each
    one served are looked up through the APIs every caller may use: metadata lists a model's
    ready versions and fails for a model that is not loaded or not in the repository (which it
    cannot tell apart), so those rows are READY, or UNAVAILABLE with that reason."""
    index = yield ("get_model_repository_index",)
    if not isinstance(index, RestrictedError):
        if isinstance(index, FinsentError):
            raise index
        yield model_statuses(index)
        return
    log.info(
        "the repository index of Triton at %s needs its admin key: "
        "listing the finsent ensembles and their steps instead",
        url,
    )
    rows, names = [], list(dict.fromkeys((*([model] if model else []), *ENSEMBLES)))
    for name in names:  # grows by the steps and the document model of the ensembles served
        metadata = yield ("get_model_metadata", name)
        if isinstance(metadata, FinsentError):
            if not name.endswith(DOCUMENT_SUFFIX):  # a repository from before the document models: no row
                rows.append(ModelStatus(name, "", "UNAVAILABLE", NOT_SERVED))
            continue
        rows += [ModelStatus(name, str(version), "READY") for version in metadata.get("versions", [])]
        if metadata.get("platform") == "ensemble":
            names.append(name + DOCUMENT_SUFFIX)
            config = yield ("get_model_config", name)
            if not isinstance(config, FinsentError):
                steps = config.get("config", config).get("ensemble_scheduling", {}).get("step", [])
                names += [s["model_name"] for s in steps if s["model_name"] not in names]
    yield sorted(rows, key=lambda row: (row.name, row.version))


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with jitter, for UNAVAILABLE / connection errors only."""

    # Retries after the first try (0 disables): 7 wait 8-16 s in all, longer than a local
    # server's restart (6.9 s measured with `make faults`; 5 attempts, 4-8 s, lost 15 callers).
    attempts: int = 7
    initial_s: float = 0.25
    max_s: float = 4.0
    # An overloaded server (OverloadedError) is retried without limit, every max_s at most: a bulk
    # job slows down instead of failing. An unreachable one still gives up after `attempts`.
    patient: bool = False

    def delays(self) -> Iterator[float]:
        for k in range(self.attempts):
            yield min(self.max_s, self.initial_s * 2**k) * (0.5 + random.random() / 2)


# tritonclient's own defaults, plus a short reconnect backoff: after a server restart gRPC would
# otherwise wait out its own backoff (1 s growing to 120 s) before our retries can get through.
GRPC_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.keepalive_time_ms", 2**31 - 1),
    ("grpc.keepalive_timeout_ms", 20000),
    ("grpc.keepalive_permit_without_calls", False),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


DEFAULT_URLS = {"grpc": "localhost:8001", "http": "localhost:8000"}


class ClientBase:
    """The settings Client and AsyncClient share; each sets up its transport in _setup()."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "grpc",
        model: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: Retry = Retry(),
        max_in_flight: int = 4,
        batch_size: int | None = None,
        logits: bool = False,
        traffic: str | int = "interactive",
    ):
        self.protocol = protocol
        # The priority of classify()'s requests (finsent.traffic); documents are always background.
        self.priority = level(traffic)
        self.logits = logits  # also ask for LOGITS (raw scores, for callers who calibrate themselves)
        self.url = split_url(url or DEFAULT_URLS[protocol], protocol)
        # None: chosen on first use from what the server serves (core.choose_model).
        self.model, self.timeout_s, self.retry = model or None, timeout_s, retry
        self.max_in_flight, self.batch_size = max(1, max_in_flight), batch_size
        self._info: ModelInfo | None = None
        self._setup()

    def _setup(self) -> None:
        raise NotImplementedError

    def _batch_size(self, info: ModelInfo) -> int:
        """Rows per classify() request: background work in requests the server's batcher can cap."""
        default = info.max_batch_size
        if self.priority == BACKGROUND and info.background_batch_size:
            default = info.background_batch_size
        return min(self.batch_size or default, info.max_batch_size)

    def _infer_options(self, model: str, types) -> dict:
        """infer()'s keywords besides the model and inputs, the same for both clients: the outputs (an
        ensemble's named, so a server never sends what was not asked for, LOGITS being off by default; a
        document model's all), and the traffic class as priority and parameter (documents are background
        work; their sentences run at the default level, background)."""
        priority = BACKGROUND if model.endswith(DOCUMENT_SUFFIX) else self.priority
        outputs = None
        if not model.endswith(DOCUMENT_SUFFIX):
            outputs = [types.InferRequestedOutput(name) for name in OUTPUTS + ("LOGITS",) * self.logits]
        return {"outputs": outputs, "priority": priority, "parameters": {TRAFFIC_PARAMETER: priority}}


# gRPC name-resolver targets (unix:/path, dns:///host:port, ...) are passed to gRPC as they are.
GRPC_TARGET = re.compile(r"^(unix|unix-abstract|dns|ipv4|ipv6|vsock):")
HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")


def split_url(url: str, protocol: str) -> str:
    """host:port without a grpc:// or http:// scheme; ValueError when it is not one."""
    if protocol not in ("grpc", "http"):
        raise ValueError(f"protocol {protocol!r}: 'grpc' or 'http'")
    for scheme in ("grpc://", "http://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
            break
    url = url.rstrip("/")
    if protocol == "grpc" and GRPC_TARGET.match(url):
        return url
    address = HOST_PORT.match(url)
    if address is None or not 0 < int(address.group(2)) < 65536:
        raise ValueError(f"Triton address {url!r} is not host:port (e.g. {DEFAULT_URLS[protocol]})")
    return url


def model_info(name: str, config: dict) -> ModelInfo:
    """ModelInfo from get_model_config(as_json=True) of either protocol."""
    config = config.get("config", config)  # gRPC wraps it in {"config": ...}
    parameters = config.get("parameters", {})
    labels = parameters.get("labels", {}).get("string_value", "")
    background = int(parameters.get(BACKGROUND_ROWS_PARAMETER, {}).get("string_value") or 0)
    max_batch = int(config.get("max_batch_size", 0))
    if not labels or max_batch < 1:
        raise ModelError(
            f"model {name!r} is not a finsent ensemble (needs a `labels` parameter and "
            f"max_batch_size > 0, has labels={labels!r}, max_batch_size={max_batch})"
        )
    return ModelInfo(name, max_batch, tuple(labels.split(",")), min(background, max_batch))


def encode(texts: Sequence[str | bytes]) -> np.ndarray:
    """[B, 1] BYTES. str is encoded with surrogateescape so bytes that were not UTF-8 in a
    file reach the server unchanged (and it names them) instead of failing here."""
    rows = []
    for i, t in enumerate(texts):
        if isinstance(t, str):
            try:
                rows.append([t.encode("utf-8", "surrogateescape")])
            except UnicodeEncodeError as exc:  # a lone surrogate that stands for no byte
                raise TextError(i, f"is not encodable as UTF-8 ({exc.reason} at {exc.start})") from None
        elif isinstance(t, (bytes, bytearray)):
            rows.append([bytes(t)])
        else:
            raise TypeError(f"texts must be str or bytes, got {type(t).__name__}")
    return np.array(rows, dtype=np.object_).reshape(len(rows), 1)


OUTPUTS = ("LABEL", "SCORE", "PROBABILITIES")


def decode(result, labels: tuple[str, ...], logits: bool = False) -> list[Prediction]:
    names = [x.decode() for x in result.as_numpy("LABEL").reshape(-1)]
    scores = result.as_numpy("SCORE").reshape(-1)
    probs = result.as_numpy("PROBABILITIES")
    raw = result.as_numpy("LOGITS") if logits else [None] * len(names)
    return [
        Prediction(
            n, float(s), dict(zip(labels, map(float, p))), None if z is None else dict(zip(labels, map(float, z)))
        )
        for n, s, p, z in zip(names, scores, probs, raw)
    ]


def decode_documents(result, labels: tuple[str, ...], texts: Sequence[str | bytes]) -> list[DocumentPrediction]:
    """The document model's outputs; sentence texts are cut from the documents sent (offsets are
    characters of the UTF-8-decoded document)."""
    out = []
    columns = {
        name: result.as_numpy(name).reshape(len(texts), -1)
        for name in (
            "LABEL",
            "SCORE",
            "PROBABILITIES",
            "NET",
            "SENTENCES",
            "NEGATIVE_SHARE",
            "POSITIVE_SHARE",
            "BREAKDOWN",
        )
    }
    for i, text in enumerate(texts):
        breakdown = json.loads(columns["BREAKDOWN"][i][0])
        if breakdown.get("version") != BREAKDOWN_VERSION:
            raise ModelError(
                f"the document model's BREAKDOWN is version {breakdown.get('version')}; this client "
                f"reads version {BREAKDOWN_VERSION}: upgrade finsent-client"
            )
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        sentences = tuple(
            Sentence(
                s["start"],
                s["end"],
                text[s["start"] : s["end"]],
                s["label"],
                dict(zip(labels, s["probabilities"])),
                s["net"],
                s["windows"],
            )
            for s in breakdown["sentences"]
        )
        out.append(
            DocumentPrediction(
                columns["LABEL"][i][0].decode(),
                float(columns["SCORE"][i][0]),
                dict(zip(labels, map(float, columns["PROBABILITIES"][i]))),
                float(columns["NET"][i][0]),
                int(columns["SENTENCES"][i][0]),
                float(columns["NEGATIVE_SHARE"][i][0]),
                float(columns["POSITIVE_SHARE"][i][0]),
                sentences,
            )
        )
    return out


# Errors the server gives while the watchdog replaces a dead Python stub (unload + load of the
# model): the model exists and comes back within seconds. A model that is not in the
# repository says "... is not found" instead and is not retried.
TRANSIENT = ("is not healthy", "has no available versions")
# Triton's refusals for load (core r24.10: a priority level's max_queue_size; its queue timeout).
OVERLOADED = ("Exceeds maximum queue size", "Request timeout expired")


def server_error(status: str | None, message: str, model: str) -> FinsentError:
    """Map a Triton error (gRPC status or HTTP code) to the client's errors."""
    status = str(status or "")
    if RESTRICTED.search(message):  # gRPC says UNAVAILABLE, but no retry will get through
        return RestrictedError(f"{message} (the server restricts this API to callers with its admin key)")
    if any(refusal in message for refusal in OVERLOADED):
        return OverloadedError(f"the server is overloaded and refused the request ({message.strip()}): retry later")
    if status.endswith("UNAVAILABLE") or status == "503":
        return UnavailableError(message)
    if status.endswith("DEADLINE_EXCEEDED"):
        return RequestTimeout(message)
    if any(transient in message for transient in TRANSIENT):
        return UnavailableError(message)  # a step being healed or reloaded: worth a retry
    row = TEXT_ROW.search(message)
    if row:
        return TextError(int(row.group(1)), row.group(2).strip())  # index within this request
    if "unknown model" in message.lower() or status.endswith("NOT_FOUND"):
        return ModelError(f"model {model!r} is not available on the server: {message}")
    return FinsentError(message)


def speaks_http(url: str, timeout_s: float = 1.0) -> bool:
    """Whether host:port answers an HTTP/1.x request: a gRPC client's only way to tell Triton's
    HTTP port from a closed one (gRPC says "Socket closed" or "Connection refused" for both)."""
    address = HOST_PORT.match(url)
    if address is None:
        return False
    try:
        with socket.create_connection((address.group(1).strip("[]"), int(address.group(2))), timeout_s) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
            return sock.recv(5) == b"HTTP/"
    except OSError:
        return False


def not_grpc(url: str) -> FinsentError:
    return FinsentError(
        f"{url} does not speak gRPC (it answers HTTP/1.x): is it the HTTP port? "
        f"Triton's gRPC port is {DEFAULT_URLS['grpc'].split(':')[1]} by default, or use protocol http"
    )


_overload_logged = -1e9


def retry_delay(
    exc: Exception,
    delays: Iterator[tuple[int, float]],
    model: str,
    url: str,
    transport,
    protocol: str = "http",
    retry: Retry | None = None,
) -> float:
    """The pause before retrying after `exc`; raises the client's error when it is not worth a
    retry (anything but UNAVAILABLE / connection errors) or the retries are spent. `delays`:
    enumerate(Retry.delays()); the first retry is logged (INFO on "finsent": the CLI shows it).
    With `retry.patient`, an overloaded server is waited for without limit."""
    if isinstance(exc, InferenceServerException):
        error = server_error(exc.status(), exc.message() or str(exc), model)
    else:
        error = transport(exc, url)  # socket / aiohttp / timeout errors; None: not ours to map
        if error is None:
            raise exc
    if not isinstance(error, UnavailableError):
        raise error from None
    if isinstance(error, OverloadedError) and retry is not None and retry.patient:
        global _overload_logged
        if time.monotonic() - _overload_logged > 30:  # a bulk job's every request backs off: say it now and then
            _overload_logged = time.monotonic()
            log.info("Triton at %s is overloaded; backing off and retrying (%s)", url, error)
        return retry.max_s * (0.5 + random.random() / 2)
    attempt, delay = next(delays, (None, None))
    # Once, before any wait, and only when the port closed on us (a quick local probe then): an HTTP
    # server refuses gRPC's HTTP/2 that way; a host that does not answer at all is not probed.
    if (
        protocol == "grpc"
        and attempt in (0, None)
        and re.search(r"Socket closed|refused", str(error), re.I)
        and speaks_http(url)
    ):
        raise not_grpc(url) from None
    if delay is None:
        if isinstance(error, OverloadedError):  # the server answered: it is busy, not unreachable
            raise error from None
        raise UnavailableError(f"Triton at {url} is unavailable: {error}") from None
    if attempt == 0:
        log.info("waiting for Triton at %s (%s) ...", url, error)
    return delay


def not_http(url: str) -> FinsentError:
    """An answer that is not HTTP: most likely Triton's gRPC port given with protocol "http"."""
    return FinsentError(f"{url} does not speak HTTP (its answer is not an HTTP response): is it the gRPC port?")


@dataclass
class Chunk:
    """One request's worth of texts; rows the server refuses are taken out one by one (the
    server names the first bad row of a request) and the rest is sent again."""

    texts: Sequence[str | bytes]
    offset: int
    raise_errors: bool = True
    pending: list[int] = field(default_factory=list)
    out: list = field(default_factory=list)

    def __post_init__(self):
        self.pending = list(range(len(self.texts)))
        self.out = [None] * len(self.texts)

    def batch(self) -> list:
        return [self.texts[i] for i in self.pending]

    def refused(self, exc: TextError) -> None:
        if exc.index >= len(self.pending):  # the server named a row we did not send
            raise FinsentError(f"server named row {exc.index} of a {len(self.pending)}-row request: {exc.reason}")
        local = self.pending.pop(exc.index)
        error = TextError(self.offset + local, exc.reason)
        if self.raise_errors:
            raise error from None
        self.out[local] = Failure(error.index, error.reason)

    def served(self, predictions: list[Prediction]) -> list[Result]:
        for i, p in zip(self.pending, predictions):
            self.out[i] = p
        self.pending = []
        return self.out


def chunks(texts: Sequence, size: int, raise_errors: bool) -> list[Chunk]:
    return [Chunk(texts[i : i + size], i, raise_errors) for i in range(0, len(texts), size)]


def check_on_error(on_error: str) -> bool:
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error {on_error!r}: 'raise' or 'return'")
    return on_error == "raise"
