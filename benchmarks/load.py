"""Closed-loop load: N clients, each sending its next request as soon as the last returns."""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

import numpy as np


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
        return {"clients": self.clients, "texts_per_request": self.texts_per_request,
                "requests": len(self.latencies_ms), "errors": self.errors, "texts_per_s": round(self.texts_per_s, 2),
                "p50_ms": round(self.percentile(50), 2), "p95_ms": round(self.percentile(95), 2),
                "p99_ms": round(self.percentile(99), 2)}


def run(make_sender, texts: list[str], clients: int, duration_s: float, warmup_s: float = 2.0,
        texts_per_request: int = 1) -> LoadResult:
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
                if window[0] <= ended <= window[1]:   # completions inside the window
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
