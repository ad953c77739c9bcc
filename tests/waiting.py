"""Waiting in tests for something that takes its time (a server to answer, a repair to happen): poll
until it holds, fail at once when the process meant to bring it about has died, and give up only at
a deadline that a hang misses, not a slow machine. The failure names what was awaited."""

from __future__ import annotations

import subprocess
import time
import urllib.request

# A busy 2-core machine starts a gateway or Prometheus in seconds; this much means it never will.
DEADLINE_S = 120


def wait_until(
    condition,
    what: str,
    deadline_s: float = DEADLINE_S,
    *,
    process: subprocess.Popen | None = None,
    poll_s: float = 0.2,
    detail=lambda: "",
):
    """condition()'s first true answer, polled every poll_s. AssertionError naming `what` (and
    detail(), e.g. a log) when `process` exits first or deadline_s passes."""
    if not isinstance(what, str):  # a call in the old (condition, timeout, poll) order
        raise TypeError(f"wait_until(condition, what, deadline_s, ...): what must say what is awaited, got {what!r}")
    deadline = time.monotonic() + deadline_s
    while not (met := condition()):
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({process.returncode}) first\n{detail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_s:g} s\n{detail()}")
        time.sleep(poll_s)
    return met


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Whether `url` answers a GET with a success status."""
    try:
        urllib.request.urlopen(url, timeout=timeout_s).close()
        return True
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def wait_for_url(url: str, what: str, deadline_s: float = DEADLINE_S, **kwargs) -> None:
    """Until `url` answers (wait_until's process, poll_s and detail)."""
    wait_until(lambda: answers(url), what, deadline_s, **kwargs)
