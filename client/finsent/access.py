"""Who may use the gateway: API keys (a literal one, or a file of them that rotates) and a per-key
token bucket. The key file is what Kubernetes mounts from a Secret: one key per line, re-read when
it changes (Kubernetes swaps a mounted Secret's files in place), so keys rotate without a restart."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import time
from dataclasses import dataclass, field

API_KEY_HEADER = "X-API-Key"  # or Authorization: Bearer <key>
KEY_FILE_ENV = "FINSENT_API_KEY_FILE"  # --api-key-file's default: the chart points it at the mounted Secret
NO_KEY_BANNER = "no API key: anyone who can reach this port can classify"
log = logging.getLogger("finsent.gateway")


class Unauthorized(Exception):
    """No credential, or not one of the keys."""


def read_keys(path: str) -> tuple[bytes, ...]:
    with open(path, "rb") as f:
        return tuple(line.strip() for line in f.read().splitlines() if line.strip())


def fingerprint(key: bytes) -> str:
    """A name for a key in logs and rate buckets that does not give the key away."""
    return hashlib.sha256(key).hexdigest()[:12]


class ApiKeys:
    """The accepted keys: `key` (a literal), or those in `path`, re-read when the file changes."""

    def __init__(self, key: str | None = None, path: str | None = None):
        if key and path:
            raise ValueError("give an API key or an API key file, not both")
        self.path, self._seen = path, None
        self._keys: tuple[bytes, ...] = (key.encode(),) if key else ()
        if path:
            self._reload()
            if not self._keys:
                raise ValueError(f"API key file {path} holds no key (one per line)")

    @property
    def required(self) -> bool:
        return bool(self.path or self._keys)

    def describe(self) -> str:
        """For the startup banner."""
        if self.path:
            return f"API key required: {len(self._reload())} in {self.path}, re-read when it changes"
        return "API key required" if self._keys else NO_KEY_BANNER

    def _reload(self) -> tuple[bytes, ...]:
        if not self.path:
            return self._keys
        try:
            st = os.stat(self.path)  # follows Kubernetes' ..data symlink: a swap changes inode and mtime
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen == self._seen:
                return self._keys
            keys = read_keys(self.path)
        except OSError as exc:
            if self._seen is None:
                raise ValueError(f"cannot read API key file {self.path}: {exc.strerror}") from None
            log.error("API key file %s: %s; keeping the %d keys read before", self.path, exc.strerror, len(self._keys))
            return self._keys
        if self._seen is not None:  # empty: every request is refused until a key is back (fail closed)
            log.log(logging.INFO if keys else logging.ERROR, "API keys re-read from %s: %d", self.path, len(keys))
        self._keys, self._seen = keys, seen
        return keys

    def check(self, given: str) -> str:
        """The fingerprint of the key `given` is, else Unauthorized. Every key is compared, in constant
        time, so the time taken says nothing about which key, or how much of one, matched."""
        given_bytes = given.encode()
        matched = None
        for key in self._reload():
            if hmac.compare_digest(given_bytes, key) and matched is None:
                matched = key
        if not given or matched is None:
            raise Unauthorized
        return fingerprint(matched)


def credential(headers) -> str:
    """The key a request carries: X-API-Key, else Authorization: Bearer."""
    given = headers.get(API_KEY_HEADER) or ""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if not given and scheme.lower() == "bearer":
        given = token.strip()
    return given


@dataclass
class TokenBucket:
    """`rate` requests a second, bursts of up to `burst`: take() is 0 when allowed, else the seconds
    until a token is back (for Retry-After)."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.tokens = self.burst

    def take(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimit:
    """One TokenBucket per key fingerprint (without keys, one for all callers); rate 0: no limit."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate, self.burst = rate, burst or max(1.0, rate)
        self.buckets: dict[str, TokenBucket] = {}

    def retry_after(self, who: str) -> int:
        """0 when `who` may go on, else whole seconds to wait (at least 1)."""
        if self.rate <= 0:
            return 0
        bucket = self.buckets.setdefault(who, TokenBucket(self.rate, self.burst))
        wait = bucket.take()
        return math.ceil(wait) if wait else 0
