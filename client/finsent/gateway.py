"""REST gateway in front of Triton (Starlette + uvicorn, async gRPC): `finsent gateway`.

    POST /             [{"text": "..."}, ...]  -> [{"label": "positive", "score": 0.89}, ...]
    POST /v1/classify  {"texts": ["..."], "model": "distilbert"}
                       -> {"model": "distilbert", "predictions": [{"label", "score", "probabilities", "net"}]}
    POST /v1/documents {"documents": ["..."], "model": "finbert", "sentences": true}
                       -> {"model": "finbert", "documents": [{"label", "score", "probabilities", "net",
                           "sentence_count", "negative_share", "positive_share", "sentences": [...]}]}
                       (the model's document model; "sentences": false leaves the breakdown out)
    GET  /healthz      the process answers
    GET  /readyz       Triton is ready and the default model is loaded (503 otherwise)

`POST /` keeps the request/response shape of the classic Starlette FinBERT batch server, so
its callers switch without changes. Errors are JSON {"error": "...", "item": i?}: 400 bad JSON,
401 wrong/missing API key (when keys are set: finsent.access), 404 unknown model or route, 405 wrong
method, 413 body or item count over the limit, 422 an item that is not valid (which one, why), 429
Triton overloaded (its queue for the class is full) or the key over its request rate (both with
Retry-After), 503 Triton unreachable, 504 Triton too slow. Texts go at the interactive priority,
documents at the background one (finsent.traffic).
"""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from finsent.access import API_KEY_HEADER, ApiKeys, RateLimit, Unauthorized, credential
from finsent.address import DEFAULT_URLS, GATEWAY_PORT
from finsent.aio import AsyncClient
from finsent.core import Retry
from finsent.errors import FinsentError, ModelError, OverloadedError, RequestTimeout, TextError, UnavailableError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Settings:
    triton: str = DEFAULT_URLS["grpc"]  # Triton's gRPC address
    model: str | None = None  # the model of POST / and /readyz; None: core.choose_model
    api_key: str | None = None  # when set, every POST needs header X-API-Key (or Bearer)
    api_key_file: str | None = None  # or one of the keys in this file, one per line, re-read when it changes
    rate_limit: float = 0.0  # requests a second per key (all callers together without keys); 0: none
    rate_burst: float | None = None  # default: one second's worth (at least 1)
    max_items: int = 256
    max_body_bytes: int = 1 << 20
    timeout_s: float = 10.0  # a whole request, retries included
    max_document_body_bytes: int = 8 << 20  # POST /v1/documents: a server takes documents of up to 4 MiB
    document_timeout_s: float = 300.0  # POST /v1/documents: a megabyte of text is thousands of sentences
    retries: int = 2  # on UNAVAILABLE, with a short backoff


class HTTPProblem(Exception):
    def __init__(self, status: int, error: str, item: int | None = None, headers: dict | None = None):
        self.status, self.error, self.item, self.headers = status, error, item, headers

    def response(self) -> JSONResponse:
        body = {"error": self.error} if self.item is None else {"error": self.error, "item": self.item}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def create_app(settings: Settings = Settings()) -> Starlette:
    keys = ApiKeys(settings.api_key, settings.api_key_file)  # ValueError: a key file without a key
    rate = RateLimit(settings.rate_limit, settings.rate_burst)
    clients: dict[str, AsyncClient] = {}
    lock = asyncio.Lock()
    retry = Retry(attempts=settings.retries, initial_s=0.1, max_s=1.0)

    chosen: dict[str, str] = {}

    async def default_model() -> str:
        """settings.model, else the model the server serves, chosen once it serves one."""
        if settings.model:
            return settings.model
        if "model" not in chosen:
            probe = AsyncClient(settings.triton, "grpc", None, timeout_s=min(2.0, settings.timeout_s), retry=retry)
            try:
                chosen["model"] = await asyncio.wait_for(probe.resolve(), settings.timeout_s)
            finally:
                await probe.close()
        return chosen["model"]

    async def client_for(model: str) -> AsyncClient:
        """A client per model, kept once the server has shown it serves that model."""
        if model in clients:
            return clients[model]
        async with lock:
            if model not in clients:
                client = AsyncClient(
                    settings.triton, "grpc", model, timeout_s=settings.timeout_s, retry=retry, max_in_flight=4
                )
                try:
                    await client.info()
                except BaseException:
                    await client.close()
                    raise
                clients[model] = client
        return clients[model]

    def authorize(request: Request) -> None:
        """Before the body is read: a refused request costs the model nothing."""
        who = ""
        if keys.required:
            try:
                who = keys.check(credential(request.headers))
            except Unauthorized:
                raise HTTPProblem(
                    401,
                    f"missing or wrong API key: send header {API_KEY_HEADER}: <key> or Authorization: Bearer <key>",
                    headers={"WWW-Authenticate": "Bearer"},
                ) from None
        wait = rate.retry_after(who)
        if wait:
            raise HTTPProblem(
                429, f"over this key's limit of {settings.rate_limit:g} requests/s", headers={"Retry-After": str(wait)}
            )

    async def read_json(request: Request, limit: int = settings.max_body_bytes):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPProblem(413, f"body of {declared} bytes is over the limit of {limit}")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise HTTPProblem(413, f"body is over the limit of {limit} bytes")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise HTTPProblem(400, f"body is not valid JSON: {exc}") from None

    def check_count(items: list) -> None:
        if len(items) > settings.max_items:
            raise HTTPProblem(413, f"{len(items)} items is over the limit of {settings.max_items} per request")

    async def classify(model: str | None, texts: list[str], documents: bool = False) -> tuple[str, list]:
        """(the model used: `model`, else the default one; its predictions, or its document model's)."""
        timeout_s = settings.document_timeout_s if documents else settings.timeout_s
        try:
            client = await client_for(model or await default_model())
            call = client.classify_documents if documents else client.classify
            return client.model, (await asyncio.wait_for(call(texts), timeout_s) if texts else [])
        except TextError as exc:
            raise HTTPProblem(422, f"item {exc.index}: text {exc.reason}", item=exc.index) from None
        except ModelError as exc:
            raise HTTPProblem(404, str(exc)) from None
        except OverloadedError as exc:  # Triton's queue for this class is full: shed, retry later
            raise HTTPProblem(429, str(exc), headers={"Retry-After": "1"}) from None
        except UnavailableError as exc:
            raise HTTPProblem(503, str(exc), headers={"Retry-After": "1"}) from None
        except (RequestTimeout, asyncio.TimeoutError):
            raise HTTPProblem(504, f"Triton at {settings.triton} did not answer within {timeout_s} s") from None
        except FinsentError as exc:
            raise HTTPProblem(502, f"Triton refused the request: {exc}") from None

    async def classic(request: Request) -> JSONResponse:
        authorize(request)
        items = await read_json(request)
        if not isinstance(items, list):
            raise HTTPProblem(422, 'body must be a JSON list of {"text": "..."} objects')
        check_count(items)
        texts = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "text" not in item:
                raise HTTPProblem(422, f'item {i} must be an object with a "text" field', item=i)
            if not isinstance(item["text"], str):
                raise HTTPProblem(422, f'item {i}: "text" must be a string, got {type(item["text"]).__name__}', item=i)
            texts.append(item["text"])
        _, predictions = await classify(None, texts)
        return JSONResponse([{"label": p.label, "score": p.score} for p in predictions])

    async def v1_body(request: Request, field: str, limit: int = settings.max_body_bytes) -> tuple[dict, str | None]:
        """A /v1 body {field: ["...", ...], "model": "..."}, checked: (body, model or None)."""
        authorize(request)
        body = await read_json(request, limit)
        if not isinstance(body, dict) or not isinstance(body.get(field), list):
            raise HTTPProblem(422, f'body must be {{"{field}": ["...", ...], "model": "finbert"}} ("model" optional)')
        model = body.get("model")
        if model is not None and (not isinstance(model, str) or not MODEL_NAME.match(model)):
            raise HTTPProblem(422, f'"model" must be a model name such as "finbert", got {model!r}')
        check_count(body[field])
        for i, text in enumerate(body[field]):
            if not isinstance(text, str):
                raise HTTPProblem(422, f"item {i} must be a string, got {type(text).__name__}", item=i)
        return body, model

    async def v1_classify(request: Request) -> JSONResponse:
        body, model = await v1_body(request, "texts")
        model, predictions = await classify(model, body["texts"])
        return JSONResponse({"model": model, "predictions": [p.as_dict() for p in predictions]})

    async def v1_documents(request: Request) -> JSONResponse:
        body, model = await v1_body(request, "documents", settings.max_document_body_bytes)
        sentences = body.get("sentences", True)
        if not isinstance(sentences, bool):
            raise HTTPProblem(422, f'"sentences" must be true or false, got {sentences!r}')
        model, results = await classify(model, body["documents"], documents=True)
        return JSONResponse({"model": model, "documents": [d.as_dict(sentences) for d in results]})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        model = settings.model or chosen.get("model")
        probe = AsyncClient(settings.triton, "grpc", model, timeout_s=min(2.0, settings.timeout_s))
        try:
            health = await asyncio.wait_for(probe.health(), min(3.0, settings.timeout_s))
        except asyncio.TimeoutError:
            health = None
        finally:
            await probe.close()
        model = health.model if health else model
        if health is not None and health.ok:
            chosen.setdefault("model", model)
            return JSONResponse({"status": "ready", "triton": settings.triton, "model": model})
        state = {"live": health.live, "ready": health.ready, "model_ready": health.model_ready} if health else {}
        return JSONResponse(
            {"status": "not ready", "triton": settings.triton, "model": model, **state}, status_code=503
        )

    @asynccontextmanager
    async def lifespan(app):
        yield
        for client in list(clients.values()):
            await client.close()

    return Starlette(
        routes=[
            Route("/", classic, methods=["POST"]),
            Route("/v1/classify", v1_classify, methods=["POST"]),
            Route("/v1/documents", v1_documents, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers=ERROR_HANDLERS,
    )


async def problem_response(request: Request, problem: HTTPProblem) -> JSONResponse:
    return problem.response()


async def starlette_error(request: Request, exc: HTTPException) -> JSONResponse:
    return HTTPProblem(exc.status_code, exc.detail, headers=exc.headers).response()


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    return HTTPProblem(500, "internal error of the gateway").response()  # uvicorn logs the traceback


# Every error is JSON {"error": ...}: ours, Starlette's own (404 no such route, 405 wrong method), and 500.
ERROR_HANDLERS = {HTTPProblem: problem_response, HTTPException: starlette_error, Exception: internal_error}


def serve(settings: Settings, host: str = "127.0.0.1", port: int = GATEWAY_PORT, log_level: str = "info") -> None:
    import uvicorn

    uvicorn.run(
        create_app(settings), host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=10
    )
