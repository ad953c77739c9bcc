"""Synchronous client: `Client("localhost:8001").classify(["Profit rose 12%."])`.

Long lists go out as requests of at most the model's max_batch_size (read from the server),
`max_in_flight` at a time on a thread pool (one tritonclient client per thread: the HTTP
client is not thread-safe), and come back in input order.
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from finsent.core import (
    DOCUMENT_SUFFIX,
    GRPC_CHANNEL_ARGS,
    Chunk,
    ClientBase,
    DocumentResult,
    FinsentError,
    Health,
    ModelError,
    ModelInfo,
    ModelStatus,
    RequestTimeout,
    Result,
    TextError,
    UnavailableError,
    check_on_error,
    choose_model,
    chunks,
    decode,
    decode_documents,
    encode,
    list_models,
    model_info,
    not_http,
    retry_delay,
    unknown_model,
)


def transport_error(exc: BaseException, url: str) -> FinsentError | None:
    """Errors raised below tritonclient (sockets, gevent timeouts) as the client's errors."""
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "Timeout":  # gevent.Timeout
        return RequestTimeout(f"no answer in time: {exc!r}")
    if isinstance(exc, http.client.HTTPException):  # geventhttpclient's HTTPParseError('Expected HTTP/')
        return not_http(url)
    if isinstance(exc, (OSError, ConnectionError)):
        return UnavailableError(f"cannot reach the server: {exc!r}")
    return None


def _module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


class Client(ClientBase):
    def _setup(self) -> None:
        self._module = _module(self.protocol)
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def _triton(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._module.InferenceServerClient(self.url, channel_args=GRPC_CHANNEL_ARGS)
            else:
                client = self._module.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _timeout(self) -> dict:
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def _as_json(self) -> dict:
        return {"as_json": True, "client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def _call(self, fn, retry: bool = True):
        """fn(triton_client) with the errors mapped, retried on UNAVAILABLE / connection errors."""
        delays = enumerate(self.retry.delays() if retry else ())
        while True:
            try:
                return fn(self._triton())
            except Exception as exc:
                delay = retry_delay(exc, delays, self.model, self.url, transport_error, self.protocol, self.retry)
            time.sleep(delay)

    # -- public -----------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        """The model's max_batch_size and label order, read once from the server."""
        if self._info is None:
            model = self.resolve()
            try:
                config = self._call(lambda c: c.get_model_config(model, **self._as_json()))
            except ModelError:
                raise self._drive(unknown_model(model, self.url)) from None
            self._info = model_info(model, config)
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
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        raise_errors = check_on_error(on_error)
        if not texts:
            return []
        info = self.info
        if documents:
            return self._map(
                chunks(texts, 1, raise_errors),
                self.model + DOCUMENT_SUFFIX,
                lambda result, batch: decode_documents(result, info.labels, batch),
            )
        size = self._batch_size(info)
        return self._map(
            chunks(texts, size, raise_errors), self.model, lambda result, _: decode(result, info.labels, self.logits)
        )

    def _map(self, work: list[Chunk], model: str, decoder) -> list:
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
        def infer(batch):
            def call(c):
                tensor = self._module.InferInput("TEXT", list(batch.shape), "BYTES")
                tensor.set_data_from_numpy(batch)
                return c.infer(model, [tensor], **self._infer_options(model, self._module), **self._timeout())

            return self._call(call)

        while chunk.pending:
            try:
                batch = chunk.batch()
                return chunk.served(decoder(infer(encode(batch)), batch))
            except TextError as exc:
                chunk.refused(exc)
        return chunk.out

    def health(self) -> Health:
        """Server live/ready and this model ready; never raises, never retries."""

        def probe(fn):
            try:
                return bool(self._call(fn, retry=False))
            except FinsentError:
                return False

        kw = self._timeout()
        live = probe(lambda c: c.is_server_live(**kw))
        ready = live and probe(lambda c: c.is_server_ready(**kw))
        try:
            model = self.resolve() if ready else self.model
        except FinsentError:  # no finsent ensemble served: the model is not ready
            model = None
        return Health(live, ready, model, bool(model) and ready and probe(lambda c: c.is_model_ready(model, **kw)))

    def models(self) -> list[ModelStatus]:
        """The server's models and their state: the repository index, or where the server restricts it,
        the finsent ensembles and their steps (see core.list_models)."""
        return self._drive(list_models(self.model, self.url))

    def _drive(self, plan):
        """Run a plan of core's: make each call it yields, send it the answer; its last step is the result."""
        step = next(plan)
        while isinstance(step, tuple):
            step = plan.send(self._answer(*step))
        return step

    def _answer(self, method: str, *args):
        """One call of a plan of core's: the answer (as_json), or the FinsentError it raised."""
        kw = self._timeout() if method.startswith("is_") else self._as_json()  # is_* take no as_json
        try:
            return self._call(lambda c: getattr(c, method)(*args, **kw))
        except FinsentError as exc:
            return exc

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
