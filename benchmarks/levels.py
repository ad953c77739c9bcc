"""The serving benchmark's load levels: which load (Level) and what it measured (Measured).

serving.json keeps the keys earlier runs wrote ("16x1", "1x64", "16x1 perf_analyzer") so the committed
reports still load; code reads and writes them through Level.key/Level.parse, not by building strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Level:
    clients: int
    texts_per_request: int = 1
    client: str = ""  # who sent the load: "" this process's Python gRPC threads, else "perf_analyzer"

    @property
    def key(self) -> str:
        """'16x1'; '16x1 perf_analyzer'."""
        return f"{self.clients}x{self.texts_per_request}" + (f" {self.client}" if self.client else "")

    @property
    def name(self) -> str:
        """'16 × 1'; '16 × 1, perf_analyzer' (the reports' column)."""
        return f"{self.clients} × {self.texts_per_request}" + (f", {self.client}" if self.client else "")

    @classmethod
    def parse(cls, key: str) -> Level:
        counts, _, client = key.partition(" ")
        clients, texts = counts.split("x")
        return cls(int(clients), int(texts), client)


@dataclass
class Measured:
    """One level's figures (loadtest.traffic.LoadResult.summary(), or perf_analyzer's), and for the
    ensemble's levels Triton's per-step statistics and where the cores went."""

    clients: int
    texts_per_request: int
    requests: int
    errors: int
    texts_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    client: str | None = None  # perf_analyzer's levels: "perf_analyzer"
    client_cpu_share: float | None = None  # perf_analyzer's own CPU, as a share of the cores
    steps: dict | None = None  # Triton model -> measure.stats_delta()
    cpu_share: dict | None = None  # process -> share of the cores (serving.cpu_share())

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def load(saved: dict) -> dict[Level, Measured]:
    """A "triton" or "baseline" object of serving.json."""
    return {Level.parse(key): Measured(**figures) for key, figures in saved.items()}


def dump(measured: dict[Level, Measured]) -> dict:
    """The JSON object load() reads."""
    return {level.key: figures.to_json() for level, figures in measured.items()}
