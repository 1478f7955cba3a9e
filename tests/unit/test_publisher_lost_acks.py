"""Acks lost with a server cost the publish window one timeout, not one timeout each.

CI caught the cluster test's publisher stalled for over a minute after the stream leader was
killed: every outstanding ack of the window was awaited with its own full timeout, one after the
other, before any was retried. A JetStream stand-in that never answers some publishes shows it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from connectors.publisher import publish_events
from tests.factories import event


@dataclass
class _Ack:
    seq: int
    duplicate: bool = False


class _LosingJetStream:
    """Answers every publish except the async ones it 'loses' (their futures never resolve)."""

    def __init__(self, lose_every: int) -> None:
        self.lose_every = lose_every
        self.seq = 0
        self.retried: list[str] = []

    async def publish_async(self, subject: str, body: bytes, headers: dict[str, str]) -> Any:
        future: asyncio.Future[_Ack] = asyncio.get_running_loop().create_future()
        self.seq += 1
        if self.seq % self.lose_every:
            future.set_result(_Ack(self.seq))
        return future

    async def publish(self, subject: str, body: bytes, headers: Any = None, timeout: float = 0) -> _Ack:
        self.retried.append(headers["Nats-Msg-Id"])
        self.seq += 1
        return _Ack(self.seq)


def test_lost_acks_are_retried_after_one_timeout_for_the_window() -> None:
    events = [event(f"C{i}", "reported") for i in range(200)]
    js = _LosingJetStream(lose_every=4)  # 50 acks lost

    started = time.monotonic()
    results = asyncio.run(publish_events(js, events, timeout=0.2))  # type: ignore[arg-type]
    elapsed = time.monotonic() - started

    assert [r.status for r in results] == ["accepted"] * len(events)
    assert len(js.retried) == 50
    # one timeout for the window (0.2 s) vs one each (10 s): 5 s leaves a loaded machine its margin
    assert elapsed < 5.0, f"{elapsed:.1f}s: lost acks were awaited one full timeout each (50 × 0.2 s)"
