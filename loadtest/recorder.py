"""Per-request samples and step boundaries, written while Locust runs.

Locust's own CSV statistics accumulate over the whole run; a sweep needs numbers per
concurrency step. The locustfile records every request here (completion time, latency,
texts, success) and the step shape marks when each step starts and ends. Rows are flushed
as they come, so a Locust process that hangs after its summary (and gets killed) still
leaves complete data. `loadtest.analysis` turns the files into per-step results.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

SAMPLES = "samples.csv"
SCHEDULE = "schedule.csv"
SAMPLE_FIELDS = ["time", "step", "users", "request_type", "name", "response_time_ms", "texts", "ok", "error"]
SCHEDULE_FIELDS = ["step", "users", "start", "end"]

ACTIVE: "Recorder | None" = None  # set by the locustfile when --record-dir is given


def parse_levels(text: str) -> list[int]:
    """User levels of a sweep: "1 4 16" or "1,4,16"."""
    try:
        levels = [int(v) for v in str(text).replace(",", " ").split()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise ValueError(f'user levels must be positive integers, e.g. "1 4 16"; got {text!r}')
    return levels


def summarize(samples, start: float, end: float) -> dict:
    """samples: (completion time, latency ms, texts, ok) tuples; window [start, end]. Here, below
    loadtest.analysis, because the recorder prints each step's figures as it ends."""
    import numpy as np  # late import: keeps locust start light

    inside = [s for s in samples if start <= s[0] <= end]
    good = np.array([s[1] for s in inside if s[3]], dtype=float)
    window = max(end - start, 1e-9)
    texts = sum(s[2] for s in inside if s[3])
    pct = (lambda q: float(np.percentile(good, q))) if good.size else (lambda q: float("nan"))
    return {
        "window_s": round(window, 3),
        "requests": len(inside),
        "failures": sum(1 for s in inside if not s[3]),
        "texts": texts,
        "texts_per_s": texts / window,
        "requests_per_s": int(good.size) / window,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "mean_ms": float(good.mean()) if good.size else float("nan"),
        "max_ms": float(good.max()) if good.size else float("nan"),
    }


class Recorder:
    def __init__(self, directory: str | Path, warmup_s: float = 0.0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.warmup_s = warmup_s
        self._samples_file = open(self.directory / SAMPLES, "w", newline="", buffering=1)
        self._schedule_file = open(self.directory / SCHEDULE, "w", newline="", buffering=1)
        self._samples = csv.writer(self._samples_file)
        self._schedule = csv.writer(self._schedule_file)
        self._samples.writerow(SAMPLE_FIELDS)
        self._schedule.writerow(SCHEDULE_FIELDS)
        self.step, self.users, self.start = -1, 0, 0.0
        self._current: list[tuple[float, float, int, bool]] = []  # this step, for the progress line
        self.total_steps = 0

    def begin_step(self, index: int, users: int) -> None:
        self.end_step()
        self.step, self.users, self.start = index, users, time.time()
        self._current = []

    def end_step(self) -> None:
        if self.step < 0:
            return
        end = time.time()
        self._schedule.writerow([self.step, self.users, f"{self.start:.6f}", f"{end:.6f}"])
        stats = summarize(self._current, self.start + self.warmup_s, end)
        of = f"/{self.total_steps}" if self.total_steps else ""
        print(
            f"step {self.step + 1}{of}: {self.users:>3} users  {stats['texts_per_s']:8.1f} texts/s  "
            f"p50 {stats['p50_ms']:7.1f} ms  p95 {stats['p95_ms']:7.1f} ms  "
            f"p99 {stats['p99_ms']:7.1f} ms  failures {stats['failures']}",
            file=sys.stderr,
            flush=True,
        )
        self.step = -1

    def sample(
        self, request_type: str, name: str, response_time_ms: float, texts: int, exception: BaseException | None
    ) -> None:
        if self.step < 0:
            return  # outside any step (start-up, shutdown)
        now = time.time()
        ok = exception is None
        self._current.append((now, response_time_ms, texts, ok))
        error = "" if ok else f"{type(exception).__name__}: {exception}"[:300].replace("\n", " ")
        self._samples.writerow(
            [f"{now:.6f}", self.step, self.users, request_type, name, f"{response_time_ms:.3f}", texts, int(ok), error]
        )

    def close(self) -> None:
        self.end_step()
        self._samples_file.close()
        self._schedule_file.close()
