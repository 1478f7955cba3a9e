"""Live changes for subscriptions: projection commit notices on NATS core subjects.

Why NATS and not an in-process queue: several API processes (each with its own DuckDB file
following the shared log, design §7) must all deliver changes. The process that runs a projector
publishes ``hub.projection.committed`` after each committed batch (position + touched case ids);
each API process, on a notice, waits until its own read models reflect that position and reads
the events after the subscriber's last position from the ``events`` read model. A notice is only a
wake-up: the read model is the source of what is delivered, so a lost notice delays a change until
the next one (or the periodic poll) and never loses it, and a reconnecting client that passes its
last position gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

import orjson

from hub.api.gql.context import ApiContext, run
from hub.views import EventRow

COMMITTED_SUBJECT = "hub.projection.committed"
"""Payload: ``{"position": int, "cases": [case id, …] | null}`` (null: too many to list)."""
MAX_LISTED_CASES = 2000
POLL_S = 2.0
"""Safety net: without notices (no projector publishing) subscribers still see changes this often."""


_pending: set[asyncio.Future[None]] = set()


def commit_publisher(nc: Any, loop: asyncio.AbstractEventLoop) -> Callable[[int, Sequence[str]], None]:
    """A thread-safe ``Projector.on_commit`` hook that publishes the notice (ops wires it)."""

    def publish(position: int, cases: Sequence[str]) -> None:
        listed = list(cases) if len(cases) <= MAX_LISTED_CASES else None
        payload = orjson.dumps({"position": position, "cases": listed})

        def send() -> None:
            if nc.is_connected:
                task = asyncio.ensure_future(nc.publish(COMMITTED_SUBJECT, payload))
                _pending.add(task)
                task.add_done_callback(_pending.discard)

        with contextlib.suppress(RuntimeError):  # the loop is closing: the hub is stopping
            loop.call_soon_threadsafe(send)

    return publish


async def notices(ctx: ApiContext) -> AsyncGenerator[int, None]:
    """Positions announced by projectors (or a poll tick), after this process's views reflect them."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1000)

    async def on_msg(msg: Any) -> None:
        try:
            position = int(orjson.loads(msg.data)["position"])
        except (ValueError, KeyError, TypeError):
            return
        if queue.full():  # a slow subscriber: keep the latest (delivery reads from the read model)
            queue.get_nowait()
        queue.put_nowait(position)

    sub = await ctx.nc.subscribe(COMMITTED_SUBJECT, cb=on_msg) if ctx.nc is not None else None
    try:
        while True:
            try:
                position = await asyncio.wait_for(queue.get(), POLL_S)
            except TimeoutError:
                position = ctx.views.position()
            while not queue.empty():
                position = max(position, queue.get_nowait())
            await run(ctx.views.wait, position, 5.0)
            yield position
    finally:
        if sub is not None:
            await sub.unsubscribe()


async def events_since(ctx: ApiContext, after: int, upto: int | None = None) -> AsyncIterator[EventRow]:
    """Events after ``after`` from the read model, in log order, paged."""
    while True:
        rows = await run(ctx.views.events_after, after, 1000)
        for row in rows:
            if upto is not None and row.position > upto:
                return
            yield row
            after = row.position
        if len(rows) < 1000:
            return
