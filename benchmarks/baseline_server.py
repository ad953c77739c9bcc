"""The common "Starlette + transformers pipeline behind an asyncio queue" FinBERT server.

Written as that pattern usually is, to be the benchmark's baseline: every request is put on
one asyncio queue, and a single loop takes them one at a time and runs each text through a
`transformers.pipeline` (PyTorch, fp32). Nothing is batched across requests.

    BASELINE_MODEL=path/to/checkpoint uvicorn benchmarks.baseline_server:app --port 8090
    curl -s localhost:8090/ -d '[{"text": "Profit rose."}]'   ->  [{"label": "positive", "score": 0.9}]
"""

import asyncio
import contextlib
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from transformers import pipeline


async def classify(request: Request) -> JSONResponse:
    items = await request.json()
    reply: asyncio.Queue = asyncio.Queue()
    await request.app.state.queue.put(([item["text"] for item in items], reply))
    return JSONResponse(await reply.get())


async def model_loop(queue: asyncio.Queue, pipe) -> None:
    while True:
        texts, reply = await queue.get()
        outputs = [pipe(text, truncation=True)[0] for text in texts]  # one text at a time, on the event loop
        await reply.put([{"label": o["label"].lower(), "score": round(float(o["score"]), 4)} for o in outputs])


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    pipe = pipeline("text-classification", model=os.environ.get("BASELINE_MODEL", "ProsusAI/finbert"), device="cpu")
    app.state.queue = asyncio.Queue()
    task = asyncio.create_task(model_loop(app.state.queue, pipe))
    yield
    task.cancel()


app = Starlette(routes=[Route("/", classify, methods=["POST"])], lifespan=lifespan)
