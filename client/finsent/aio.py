"""The asyncio twin of Client, on tritonclient's aio modules:

async with AsyncClient("localhost:8001") as client:
    predictions = await client.classify(texts)
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from finsent.client import transport_error
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


def _aio_transport_error(exc: BaseException, url: str) -> FinsentError | None:
    if isinstance(exc, asyncio.TimeoutError):
        return RequestTimeout(f"no answer in time: {exc!r}")
    try:
        import aiohttp
    except ImportError:  # the gRPC-only install
        aiohttp = None
    if aiohttp is not None and isinstance(exc, aiohttp.ClientConnectionError):  # refused, reset, disconnected
        return UnavailableError(f"cannot reach the server: {exc!r}")
    if aiohttp is not None and isinstance(exc, aiohttp.ClientResponseError):
        # tritonclient reads every answer itself (no raise_for_status): this is an answer aiohttp could not parse
        return not_http(url)
    return transport_error(exc, url)


class AsyncClient(ClientBase):
    def _setup(self) -> None:
        if self.protocol == "grpc":
            import tritonclient.grpc as types
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.http as types
            import tritonclient.http.aio as module
        self._module, self._types = module, types
        self._client = None

    def _triton(self):
        # Created on first use, inside the running loop (aiohttp and grpc.aio bind to it).
        if self._client is None:
            if self.protocol == "grpc":
                self._client = self._module.InferenceServerClient(self.url, channel_args=GRPC_CHANNEL_ARGS)
            else:
                self._client = self._module.InferenceServerClient(
                    self.url, conn_timeout=self.timeout_s, conn_limit=self.max_in_flight
                )
        return self._client

    def _timeout(self) -> dict:
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def _as_json(self) -> dict:
        return {"as_json": True, "client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    async def _call(self, fn, retry: bool = True):
        delays = enumerate(self.retry.delays() if retry else ())
        while True:
            try:
                return await asyncio.wait_for(fn(self._triton()), self.timeout_s)
            except Exception as exc:
                delay = retry_delay(exc, delays, self.model, self.url, _aio_transport_error, self.protocol, self.retry)
            await asyncio.sleep(delay)

    async def info(self) -> ModelInfo:
        if self._info is None:
            model = await self.resolve()
            try:
                config = await self._call(lambda c: c.get_model_config(model, **self._as_json()))
            except ModelError:
                raise await self._drive(unknown_model(model, self.url)) from None
            self._info = model_info(model, config)
        return self._info

    async def resolve(self) -> str:
        """See Client.resolve."""
        if self.model is None:
            self.model = await self._drive(choose_model(self.url))
        return self.model

    async def classify(self, texts: Sequence[str | bytes] | str, on_error: str = "raise") -> list[Result]:
        """See Client.classify."""
        return await self._classify(texts, on_error, documents=False)

    async def classify_documents(
        self, texts: Sequence[str | bytes] | str, on_error: str = "raise"
    ) -> list[DocumentResult]:
        """See Client.classify_documents."""
        return await self._classify(texts, on_error, documents=True)

    async def _classify(self, texts, on_error: str, documents: bool) -> list:
        """See Client._classify."""
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        raise_errors = check_on_error(on_error)
        if not texts:
            return []
        info = await self.info()
        if documents:
            return await self._map(
                chunks(texts, 1, raise_errors),
                self.model + DOCUMENT_SUFFIX,
                lambda result, batch: decode_documents(result, info.labels, batch),
            )
        size = self._batch_size(info)
        return await self._map(
            chunks(texts, size, raise_errors), self.model, lambda result, _: decode(result, info.labels, self.logits)
        )

    async def _map(self, work: list[Chunk], model: str, decoder) -> list:
        gate = asyncio.Semaphore(self.max_in_flight)
        options = self._infer_options(model, self._types)

        async def run(chunk: Chunk) -> list:
            async with gate:
                while chunk.pending:
                    try:
                        texts = chunk.batch()
                        batch = encode(texts)
                        tensor = self._types.InferInput("TEXT", list(batch.shape), "BYTES")
                        tensor.set_data_from_numpy(batch)
                        result = await self._call(lambda c: c.infer(model, [tensor], **options, **self._timeout()))
                        return chunk.served(decoder(result, texts))
                    except TextError as exc:
                        chunk.refused(exc)
                return chunk.out

        tasks = [asyncio.ensure_future(run(chunk)) for chunk in work]
        try:
            return [p for part in await asyncio.gather(*tasks) for p in part]
        finally:
            for task in tasks:
                task.cancel()

    async def health(self) -> Health:
        async def probe(fn):
            try:
                return bool(await self._call(fn, retry=False))
            except FinsentError:
                return False

        kw = self._timeout()
        live = await probe(lambda c: c.is_server_live(**kw))
        ready = live and await probe(lambda c: c.is_server_ready(**kw))
        try:
            model = await self.resolve() if ready else self.model
        except FinsentError:  # no finsent ensemble served: the model is not ready
            model = None
        model_ready = bool(model) and ready and await probe(lambda c: c.is_model_ready(model, **kw))
        return Health(live, ready, model, model_ready)

    async def models(self) -> list[ModelStatus]:
        """See Client.models."""
        return await self._drive(list_models(self.model, self.url))

    async def _drive(self, plan):
        """See Client._drive."""
        step = next(plan)
        while isinstance(step, tuple):
            step = plan.send(await self._answer(*step))
        return step

    async def _answer(self, method: str, *args):
        """One call of a plan of core's: the answer (as_json), or the FinsentError it raised."""
        kw = self._timeout() if method.startswith("is_") else self._as_json()  # is_* take no as_json
        try:
            return await self._call(lambda c: getattr(c, method)(*args, **kw))
        except FinsentError as exc:
            return exc

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.close()
            except Exception:  # closing a client whose server is gone must not mask anything
                pass

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
