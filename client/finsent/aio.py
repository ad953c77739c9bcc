"""The asyncio twin of Client, on tritonclient's aio modules:

async with AsyncClient("localhost:8001") as client:
    predictions = await client.classify(texts)
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from finsent.address import not_http
from finsent.client import transport_error
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

    async def _call(self, fn, retry: bool = True):
        delays = enumerate(self.retry.delays() if retry else ())
        while True:
            try:
                return await asyncio.wait_for(fn(self._triton()), self.timeout_s)
            except Exception as exc:
                delay = retry_delay(exc, delays, self.model, self.url, _aio_transport_error, self.protocol, self.retry)
            await asyncio.sleep(delay)

    async def _drive(self, plan):
        """See Client._drive."""
        step = next(plan)
        while isinstance(step, Call):
            step = plan.send(await self._answer(step))
        return step

    async def _answer(self, call: Call):
        """See Client._answer."""
        kw = self._keywords(call.method)
        try:
            return await self._call(lambda c: getattr(c, call.method)(*call.args, **kw), call.retry)
        except FinsentError as exc:
            return exc

    async def info(self) -> ModelInfo:
        if self._info is None:
            self._info = await self._drive(read_info(await self.resolve(), self.url))
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
        texts, raise_errors = classify_args(texts, on_error)
        if not texts:
            return []
        work, model, decoder = self._work(texts, raise_errors, documents, await self.info())
        gate = asyncio.Semaphore(self.max_in_flight)

        async def run(chunk: Chunk) -> list:
            async with gate:
                while chunk.pending:
                    try:
                        texts = chunk.batch()
                        request = self._request(model, texts)
                        return chunk.served(decoder(await self._call(lambda c: c.infer(**request)), texts))
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
        """See Client.health."""
        health = await self._drive(check_health(self.model, self.url))
        self.model = self.model or health.model
        return health

    async def models(self) -> list[ModelStatus]:
        """See Client.models."""
        return await self._drive(list_models(self.model, self.url))

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
