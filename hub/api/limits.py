"""Limits at the HTTP edge: bodies read within a size, requests paced per caller (限流).

Why here and not in each endpoint: a limit that is enforced only after the whole body has been
read is no limit (a 50 MB body was once read whole before anything looked at it), and a pace
that each endpoint computes its own way cannot be reasoned about. Both are small, pure helpers
with no I/O of their own beyond the request stream they are given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request


class BodyTooLarge(ValueError):
    """The request body is over the limit; the message says how large it may be."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, read chunk by chunk and abandoned as soon as it passes ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body
    (no length) is refused at the first chunk that takes it over. Either way the rest is never
    read, so a client cannot make the hub buffer more than ``limit`` plus one chunk.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Pace:
    """How fast one caller may go: ``burst`` requests at once, refilled at ``per_minute``."""

    per_minute: float
    burst: int


class TokenBuckets:
    """One token bucket (令牌桶) per caller: a request takes a token or is told how long to wait.

    Why a bucket and not a fixed window: a window lets a caller send twice its limit around the
    window's edge, and a bucket lets a citizen app send a small burst (a queue of photos after
    the phone comes back online) while holding its long-run rate. Single event loop: no locks.
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # caller → (tokens, when counted)

    def take(self, caller: str, pace: Pace) -> float:
        """Take a token: 0 when the request may go on, else the seconds until one is available."""
        now = self._monotonic()
        tokens, then = self._buckets.get(caller, (float(pace.burst), now))
        tokens = min(float(pace.burst), tokens + (now - then) * pace.per_minute / 60.0)
        if tokens >= 1.0:
            self._buckets[caller] = (tokens - 1.0, now)
            return 0.0
        self._buckets[caller] = (tokens, now)
        return (1.0 - tokens) * 60.0 / pace.per_minute

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """``Retry-After`` in whole seconds, never 0 (a client told 0 would retry at once)."""
        return str(max(1, math.ceil(wait_s)))
