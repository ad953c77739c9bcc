"""Threads of clients against a running server, every call recorded: the benchmarks' and the tests' traffic.

Two shapes of load, each fed by a sender factory, make() -> (send, close), called once per client thread:
  Traffic      `clients` threads sending one text per request until stop(): every call's outcome
               (the fault and soak benchmarks, the reliability tests).
  closed_loop  N clients for a measured window, each sending its next request as soon as the last
               returns: throughput and latency percentiles (the serving benchmarks).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import numpy as np

TEXTS = [
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.",
    "The company's shares fell 4% on the news.",
    "The board will meet on Tuesday.",
    "Net sales decreased by 5.2% year on year.",
]


@dataclass
class Call:
    began: float
    ended: float
    error: str | None
    caller: int = 0


@dataclass
class Traffic:
    """`clients` threads sending one text per request until stop(); every call recorded."""

    send_factory: object  # () -> (send(text), close())
    clients: int = 16
    pause_after_error_s: float = 0.0  # a caller that backs off after a failure it could not retry
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self):
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]

    def _client(self, i: int) -> None:
        send, close = self.send_factory()
        try:
            n = i
            while not self._halt.is_set():
                began = time.monotonic()
                try:
                    send(TEXTS[n % len(TEXTS)])
                    error = None
                except Exception as exc:  # recorded: the point of the run
                    error = f"{type(exc).__name__}: {exc}"[:200]
                with self._lock:
                    self.calls.append(Call(began, time.monotonic(), error, i))
                n += 1
                if error and self.pause_after_error_s:
                    self._halt.wait(self.pause_after_error_s)
        finally:
            close()

    def start(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 60) -> list[Call]:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout_s)
        with self._lock:
            return sorted(self.calls, key=lambda c: c.ended)


def grpc_sender(url: str, model: str):
    """One text per request, raw tritonclient: no retries, so every failure counts."""
    import tritonclient.grpc as grpcclient

    def make():
        client = grpcclient.InferenceServerClient(url)

        def send(text):
            tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
            client.infer(model, [tensor], client_timeout=30)

        return send, client.close

    return make


def finsent_sender(url: str, model: str):
    """One text per request, finsent.Client over gRPC, with its retries on UNAVAILABLE."""
    from finsent import Client

    def make():
        client = Client(url, model=model)
        return (lambda text: client.classify([text])), client.close

    return make


def grpc_batch_sender(url: str, model: str):
    """A list of texts per request, raw tritonclient, asking for LABEL only."""
    import tritonclient.grpc as grpcclient

    def make():
        client = grpcclient.InferenceServerClient(url)

        def send(batch):
            tensor = grpcclient.InferInput("TEXT", [len(batch), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[t.encode()] for t in batch], dtype=np.object_))
            client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput("LABEL")])

        return send, client.close

    return make


def http_batch_sender(url: str):
    """A list of texts per request as a JSON array of {"text": ...} (the baseline server's API)."""

    def make():
        def send(batch):
            body = json.dumps([{"text": t} for t in batch]).encode()
            with urllib.request.urlopen(
                urllib.request.Request(url, body, {"Content-Type": "application/json"}), timeout=120
            ) as resp:
                resp.read()

        return send, lambda: None

    return make


@dataclass
class LoadResult:
    clients: int
    texts_per_request: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def texts_per_s(self) -> float:
        return len(self.latencies_ms) * self.texts_per_request / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict:
        return {
            "clients": self.clients,
            "texts_per_request": self.texts_per_request,
            "requests": len(self.latencies_ms),
            "errors": self.errors,
            "texts_per_s": round(self.texts_per_s, 2),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


def closed_loop(
    make_sender, texts: list[str], clients: int, duration_s: float, warmup_s: float = 2.0, texts_per_request: int = 1
) -> LoadResult:
    """make_sender() -> (send(list[str]), close()) per client thread; returns what the window measured."""
    counter = itertools.count()
    start = time.perf_counter()
    window = (start + warmup_s, start + warmup_s + duration_s)
    latencies, errors, lock = [], [0], threading.Lock()

    def client():
        send, close = make_sender()
        try:
            while True:
                began = time.perf_counter()
                if began >= window[1]:
                    return
                i = next(counter) * texts_per_request
                batch = [texts[(i + k) % len(texts)] for k in range(texts_per_request)]
                try:
                    send(batch)
                    ok = True
                except Exception:  # counted, reported in the table
                    ok = False
                ended = time.perf_counter()
                if window[0] <= ended <= window[1]:  # completions inside the window
                    with lock:
                        if ok:
                            latencies.append((ended - began) * 1000)
                        else:
                            errors[0] += 1
        finally:
            close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + warmup_s + 120)
    return LoadResult(clients, texts_per_request, duration_s, latencies, errors[0])
