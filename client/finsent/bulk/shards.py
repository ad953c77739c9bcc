"""`finsent score --shard K/N`: N workers together score each row once.

A row belongs to a shard by a digest of its text (dedupe.text_key), so every copy of a text lands in
the same shard and de-duplication within a shard is de-duplication across the whole input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """`K/N`: shard K (0-based, as Kubernetes' JOB_COMPLETION_INDEX) of N."""

    index: int
    count: int

    @classmethod
    def parse(cls, value: str) -> "Shard":
        try:
            index, count = (int(v) for v in value.split("/"))
        except ValueError:
            index = count = None
        if count is None or count < 1 or not 0 <= index < count:
            raise ValueError(f"must be K/N with 0 <= K < N, e.g. 0/8, got {value!r}")
        return cls(index, count)

    def owns(self, key: bytes | None, row: int) -> bool:
        # By text, not by position; rows without a text are spread by position.
        n = int.from_bytes(key[:8], "big") if key is not None else row
        return n % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
