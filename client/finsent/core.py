"""What the sync and async clients share besides the codec (codec.py) and the addresses (address.py):
model discovery, as plans both clients run; the retry policy and what a Triton error means; the
requests they send (ClientBase).

Nothing here knows about tokenization or label order: the label order is read from the
ensemble config's `labels` parameter on the server, the label itself comes from `LABEL`.
"""

from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, NamedTuple, Sequence, Union

from tritonclient.utils import InferenceServerException

from finsent.address import DEFAULT_URLS, not_grpc, speaks_http, split_url
from finsent.codec import check_on_error, chunks, decode, decode_documents, model_info, model_statuses, text_input
from finsent.errors import (
    FinsentError,
    ModelError,
    OverloadedError,
    RequestTimeout,
    RestrictedError,
    TextError,
    UnavailableError,
)
from finsent.results import (
    Health,
    ModelInfo,
    ModelStatus,
)
from finsent.traffic import BACKGROUND, BACKGROUND_MODEL_PARAMETER, TRAFFIC_PARAMETER, level
from finsent.wire import DOCUMENT_SUFFIX, LOGITS, OUTPUTS, OVERLOADED, backoff

TEXT_ROW = re.compile(r"TEXT\[(\d+)\]\s*(.*)", re.DOTALL)
# Triton's answer to a restricted API (--http-restricted-api / --grpc-restricted-protocol) called
# without its header: HTTP 403 "This API is restricted, ..."; gRPC UNAVAILABLE "This protocol is restricted, ...".
RESTRICTED = re.compile(r"\b(API|protocol) is restricted\b")
# The ensembles a finsent repository can hold (export.facts.FAMILIES; a test keeps them equal).
ENSEMBLES = ("finbert", "distilbert")
# The model a client, the CLI, the gateway and the load tests use when none is named (--model,
# $FINSENT_MODEL): the one finsent ensemble the server serves, or this one when it serves several.
DEFAULT_MODEL = "finbert"
NOT_SERVED = "not loaded, or not in the repository"
log = logging.getLogger("finsent")


# -- discovery: plans ------------------------------------------------------------------------------
# A plan is a generator both clients run (Client._drive, AsyncClient._drive): it yields the Call to
# make, is sent its answer (as_json; or the FinsentError it raised) and yields its result last. So
# what is asked of the server, and what the answers mean, is written once, without I/O.


class Call(NamedTuple):
    """One call a plan asks for: a tritonclient method, its arguments, and whether to retry it."""

    method: str
    args: tuple = ()
    retry: bool = True


Plan = Generator[Union[Call, object], object, None]


def _run_plan(plan: Plan):
    """Delegate a sub-plan's calls to the caller; return its last value."""
    step = next(plan)
    while isinstance(step, Call):
        step = plan.send((yield step))
    return step


def served_ensembles() -> Plan:
    """The finsent ensembles the server serves, as a plan (see list_models): model readiness is
    open on every server, unlike the repository index that `make serve` restricts."""
    served = []
    for name in ENSEMBLES:
        ready = yield Call("is_model_ready", (name,))
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


def read_info(model: str, url: str) -> Plan:
    """The model's ModelInfo, from its config; a model the server lacks is named with those it serves."""
    config = yield Call("get_model_config", (model,))
    if isinstance(config, ModelError):
        raise (yield from _run_plan(unknown_model(model, url)))
    if isinstance(config, FinsentError):
        raise config
    yield model_info(model, config)


def check_health(model: str | None, url: str) -> Plan:
    """health(): server live and ready, and the model (chosen if none is named) ready. Never raises,
    never retries a probe: an error is a "no"."""

    def yes(answer) -> bool:
        return not isinstance(answer, FinsentError) and bool(answer)

    live = yes((yield Call("is_server_live", retry=False)))
    ready = live and yes((yield Call("is_server_ready", retry=False)))
    if ready and model is None:
        try:
            model = yield from _run_plan(choose_model(url))
        except FinsentError:  # no finsent ensemble served: the model is not ready
            model = None
    model_ready = bool(model) and ready and yes((yield Call("is_model_ready", (model,), retry=False)))
    yield Health(live, ready, model, model_ready)


def list_models(model: str, url: str) -> Plan:
    """models() as a plan: the repository index lists every model. Where the server restricts it to
    its admin key (`make serve`, the k8s chart), the finsent ensembles (and `model`) and then the
    steps of each one served are looked up through the APIs every caller may use: metadata lists a
    model's ready versions and fails for a model that is not loaded or not in the repository (which
    it cannot tell apart), so those rows are READY, or UNAVAILABLE with that reason."""
    index = yield Call("get_model_repository_index")
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
        metadata = yield Call("get_model_metadata", (name,))
        if isinstance(metadata, FinsentError):
            if not name.endswith(DOCUMENT_SUFFIX):  # a repository from before the document models: no row
                rows.append(ModelStatus(name, "", "UNAVAILABLE", NOT_SERVED))
            continue
        rows += [ModelStatus(name, str(version), "READY") for version in metadata.get("versions", [])]
        if metadata.get("platform") == "ensemble":
            names.append(name + DOCUMENT_SUFFIX)
            config = yield Call("get_model_config", (name,))
            if not isinstance(config, FinsentError):
                config = config.get("config", config)
                steps = [s["model_name"] for s in config.get("ensemble_scheduling", {}).get("step", [])]
                # and its background copy (finsent.traffic), with that copy's own steps
                elsewhere = config.get("parameters", {}).get(BACKGROUND_MODEL_PARAMETER, {}).get("string_value")
                names += [n for n in dict.fromkeys((*steps, elsewhere)) if n and n not in names]
    yield sorted(rows, key=lambda row: (row.name, row.version))


# -- retry -----------------------------------------------------------------------------------------


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
        for _, delay in zip(range(self.attempts), backoff(self.initial_s, self.max_s)):
            yield delay * (0.5 + random.random() / 2)


# Errors the server gives while the watchdog replaces a dead Python stub (unload + load of the
# model): the model exists and comes back within seconds. A model that is not in the
# repository says "... is not found" instead and is not retried.
TRANSIENT = ("is not healthy", "has no available versions")


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


class ClientBase:
    """The settings Client and AsyncClient share, and what they ask of tritonclient, built here once:
    each client sets up its transport (`_types`: tritonclient.grpc or .http) in _setup() and does the I/O."""

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
        self._types = None
        self._setup()

    def _setup(self) -> None:
        raise NotImplementedError

    def _timeout(self) -> dict:
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def _keywords(self, method: str) -> dict:
        """A plan's call's keywords: answers as JSON (gRPC; HTTP's are), is_* take no as_json."""
        if method.startswith("is_") or self.protocol != "grpc":
            return self._timeout()
        return {"as_json": True, **self._timeout()}

    def _batch_size(self, info: ModelInfo) -> int:
        """Rows per classify() request: background work in requests the server's batcher can cap."""
        default = info.max_batch_size
        if self.priority == BACKGROUND and info.background_batch_size:
            default = info.background_batch_size
        return min(self.batch_size or default, info.max_batch_size)

    def _work(self, texts: Sequence, raise_errors: bool, documents: bool, info: ModelInfo) -> tuple:
        """classify()'s requests: (chunks, the model they go to, decoder(result, texts))."""
        if documents:  # one document per request
            decoder: Callable = lambda result, batch: decode_documents(result, info.labels, batch)
            return chunks(texts, 1, raise_errors), self.model + DOCUMENT_SUFFIX, decoder
        decoder = lambda result, _: decode(result, info.labels, self.logits)
        # Background work goes to the server's background copy of the ensemble where it has one.
        model = info.background_model if self.priority == BACKGROUND and info.background_model else self.model
        return chunks(texts, self._batch_size(info), raise_errors), model, decoder

    def _request(self, model: str, texts: Sequence) -> dict:
        """infer()'s keywords, the same for both clients: the input; the outputs (an ensemble's named, so
        a server never sends what was not asked for, LOGITS being off by default; a document model's
        all); the traffic class as priority and parameter (documents are background work; their
        sentences run at the default level, background); the timeout."""
        priority = BACKGROUND if model.endswith(DOCUMENT_SUFFIX) else self.priority
        outputs = None
        if not model.endswith(DOCUMENT_SUFFIX):
            outputs = [self._types.InferRequestedOutput(name) for name in OUTPUTS + (LOGITS,) * self.logits]
        return {
            "model_name": model,
            "inputs": [text_input(self._types, texts)],
            "outputs": outputs,
            "priority": priority,
            "parameters": {TRAFFIC_PARAMETER: priority},
            **self._timeout(),
        }


def classify_args(texts, on_error: str) -> tuple[Sequence, bool]:
    """classify()'s texts as a list (one str or bytes is one text), and whether to raise on a refused one."""
    return ([texts] if isinstance(texts, (str, bytes)) else texts), check_on_error(on_error)
