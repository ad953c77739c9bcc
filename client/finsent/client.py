"""Synchronous client: `Client("localhost:8001").classify(["Profit rose 12%."])`.

Long lists go out as requests of at most the model's max_batch_size (read from the server),
`max_in_flight` at a time on a thread pool (one tritonclient client per thread: the HTTP
client is not thread-safe), and come back in input order. What is sent and what the answers
mean is core's and codec's, shared with AsyncClient; this module does the calls.
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from finsent.address import not_http
from finsent.codec import Chunk
from finsent.core import (
    GRPC_CHANNEL_ARGS,
    Call,
    ClientBase,
    check_health,
    choose_model,
    classify_args,
    list_models,
    read_info,
    retry_delay,
)
from finsent.errors import FinsentError, RequestTimeout, TextError, UnavailableError
from finsent.results import DocumentResult, Health, ModelInfo, ModelStatus, Result


def transport_error(exc: BaseException, url: str) -> FinsentError | None:
    """Errors raised below tritonclient (sockets, gevent timeouts) as the client's errors."""
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "Timeout":  # gevent.Timeout
        return RequestTimeout(f"no answer in time: {exc!r}")
    if isinstance(exc, http.client.HTTPException):  # geventhttpclient's HTTPParseError('Expected HTTP/')
        return not_http(url)
    if isinstance(exc, (OSError, ConnectionError)):
        return UnavailableError(f"cannot reach the server: {exc!r}")
    return None


class Client(ClientBase):
    def _setup(self) -> None:
        if self.protocol == "grpc":
            import tritonclient.grpc as types
        else:
            import tritonclient.http as types
        self._types = types
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def _triton(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._types.InferenceServerClient(self.url, channel_args=GRPC_CHANNEL_ARGS)
            else:
                client = self._types.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _call(self, fn, retry: bool = True):
        """fn(triton_client) with the errors mapped, retried on UNAVAILABLE / connection errors."""
        delays = enumerate(self.retry.delays() if retry else ())
        while True:
            try:
                return fn(self._triton())
            except Exception as exc:
                delay = retry_delay(exc, delays, self.model, self.url, transport_error, self.protocol, self.retry)
            time.sleep(delay)

    def _drive(self, plan):
        """Run a plan of core's: make each Call it yields, send it the answer; its last step is the result."""
        step = next(plan)
        while isinstance(step, Call):
            step = plan.send(self._answer(step))
        return step

    def _answer(self, call: Call):
        """One call of a plan: the answer (as_json), or the FinsentError it raised."""
        kw = self._keywords(call.method)
        try:
            return self._call(lambda c: getattr(c, call.method)(*call.args, **kw), call.retry)
        except FinsentError as exc:
            return exc

    # -- public -----------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        """The model's max_batch_size and label order, read once from the server."""
        if self._info is None:
            self._info = self._drive(read_info(self.resolve(), self.url))
        return self._info

    def resolve(self) -> str:
        """The model this client calls: the one given, else chosen from what the server serves."""
        if self.model is None:
            self.model = self._drive(choose_model(self.url))
        return self.model

    def classify(self, texts: Sequence[str | bytes] | str, on_error: str = "raise") -> list[Result]:
        """One Prediction per text, in input order. on_error="raise" raises TextError naming the
        index of the first refused text; "return" puts a Failure in its place and serves the rest."""
        return self._classify(texts, on_error, documents=False)

    def classify_documents(self, texts: Sequence[str | bytes] | str, on_error: str = "raise") -> list[DocumentResult]:
        """One DocumentPrediction per document, in input order: the model's document model
        (`<model>_document`) scores every sentence and gives the document's verdict. One request per
        document, max_in_flight at a time; the client's timeout_s bounds each. on_error as in classify."""
        return self._classify(texts, on_error, documents=True)

    def _classify(self, texts, on_error: str, documents: bool) -> list:
        texts, raise_errors = classify_args(texts, on_error)
        if not texts:
            return []
        work, model, decoder = self._work(texts, raise_errors, documents, self.info)
        if len(work) == 1:
            return self._run(work[0], model, decoder)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="finsent")
        futures = [self._pool.submit(self._run, chunk, model, decoder) for chunk in work]
        try:
            return [p for f in futures for p in f.result()]
        finally:
            for f in futures:
                f.cancel()

    def _run(self, chunk: Chunk, model: str, decoder) -> list:
        while chunk.pending:
            try:
                texts = chunk.batch()
                request = self._request(model, texts)
                return chunk.served(decoder(self._call(lambda c: c.infer(**request)), texts))
            except TextError as exc:
                chunk.refused(exc)
        return chunk.out

    def health(self) -> Health:
        """Server live/ready and this model ready; never raises, never retries."""
        health = self._drive(check_health(self.model, self.url))
        self.model = self.model or health.model  # chosen, where none was named
        return health

    def models(self) -> list[ModelStatus]:
        """The server's models and their state: the repository index, or where the server restricts it,
        the finsent ensembles and their steps (see core.list_models)."""
        return self._drive(list_models(self.model, self.url))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for client in self._clients:
                try:
                    client.close()
                except Exception:  # closing a client whose server is gone must not mask anything
                    pass
            self._clients.clear()
        self._local = threading.local()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
