"""Publishing canonical events to JetStream: acks in flight, dedup ids, bounded retries.

Why acks in flight: one acknowledged publish at a time runs ≈ 4k/s; keeping a window of
publishes outstanding and awaiting their acks together runs ≈ 30k/s, with the same guarantee
(every event is stored, or its failure is reported). Each event's ``id`` is its ``Nats-Msg-Id``,
so a retry after a lost connection or a timed-out ack is deduplicated by the stream. No
``Nats-Expected-Stream`` header: only CITY captures ``city.>``, and every header is stored with the
event and parsed again, character by character, on every delivery to the intake.

Lost connections: nats-py buffers publishes while it reconnects; a publish that fails outright
(connection closed, no responders while the stream leader moves, a stalled ack) is retried one at
a time with exponential backoff (0.1 s doubling to ``max_delay``) for ``attempts`` tries, always with
the same dedup id, and only then reported ``rejected`` with the last error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from hub import messages as m


@dataclass(frozen=True, slots=True)
class Published:
    """The per-record answer a department gets: stored (new or duplicate), or why not."""

    index: int
    event_id: str
    status: str  # "accepted" | "duplicate" | "rejected"
    seq: int = 0
    error: str = ""


def route(event: dict[str, Any]) -> str:
    """The subject for a canonical event: ``city.<department>.<kind>.<action>.<casekey>``.

    The fifth token, the case key (ADR 0006), lets the stream put every event of one case in the
    same partition, so several intake workers share the city while each case stays in order. An
    event that does not name its case (no source/caseref, a malformed caseid) keeps the 4-token
    subject: the intake still receives it and dead-letters it with the exact schema error.
    """
    department, type_ = event.get("department"), event.get("type")
    if not isinstance(department, str) or not department:
        raise ValueError("field 'department' is missing or empty")
    if not isinstance(type_, str) or type_.count(".") != 1:
        raise ValueError("field 'type' must be '<kind>.<action>', e.g. 'incident.reported'")
    key = m.case_key_of(event)
    if key is None:
        return f"{m.SUBJECT_PREFIX}.{department}.{type_}"
    return f"{m.SUBJECT_PREFIX}.{department}.{type_}.{key}"


async def publish_events(
    js: JetStreamContext,
    events: Iterable[dict[str, Any]],
    *,
    window: int = 2000,
    attempts: int = 5,
    timeout: float = 5.0,
    max_delay: float = 2.0,
) -> list[Published]:
    """Publish with up to ``window`` acks outstanding; a failed one is retried with the same dedup id.

    ``js`` should be created with ``publish_async_max_pending >= window``. Results come back in
    input order, one per event.
    """
    results: list[Published] = []
    chunk: list[tuple[int, str, str, bytes]] = []

    async def flush() -> None:
        futures: list[asyncio.Future[Any] | None] = []
        for _, event_id, subject, body in chunk:
            headers = {"Nats-Msg-Id": event_id} if event_id else {}
            try:
                futures.append(await js.publish_async(subject, body, headers=headers))
            except NatsError:  # connection lost mid-chunk: retried below, one by one with backoff
                futures.append(None)
        # One deadline for the whole window: acks lost with a server (a stream leader killed, a
        # connection dropped) then cost ``timeout`` once, not once each, before they are retried.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for (index, event_id, subject, body), future in zip(chunk, futures, strict=True):
            try:
                if future is None:
                    raise NatsTimeoutError
                ack = await asyncio.wait_for(future, max(deadline - loop.time(), 0.0))
            except (TimeoutError, NatsError, APIError):
                results.append(await _retry(js, index, event_id, subject, body, attempts, timeout, max_delay))
                continue
            results.append(Published(index, event_id, "duplicate" if ack.duplicate else "accepted", ack.seq))
        chunk.clear()

    for index, event in enumerate(events):
        event_id = str(event.get("id", ""))
        try:
            subject = route(event)
        except ValueError as exc:
            results.append(Published(index, event_id, "rejected", error=str(exc)))
            continue
        chunk.append((index, event_id, subject, orjson.dumps(event)))
        if len(chunk) >= window:
            await flush()
    await flush()
    results.sort(key=lambda r: r.index)
    return results


async def _retry(
    js: JetStreamContext,
    index: int,
    event_id: str,
    subject: str,
    body: bytes,
    attempts: int,
    timeout: float,
    max_delay: float = 2.0,
) -> Published:
    """One event at a time, with backoff: the connection may be coming back."""
    delay = 0.1
    last_error = ""
    for _ in range(attempts):
        try:
            headers = {"Nats-Msg-Id": event_id} if event_id else None
            ack = await js.publish(subject, body, headers=headers, timeout=timeout)
            return Published(index, event_id, "duplicate" if ack.duplicate else "accepted", ack.seq)
        except (TimeoutError, NatsTimeoutError) as exc:
            last_error = f"no acknowledgement from JetStream ({exc.__class__.__name__})"
        except APIError as exc:
            if exc.code == 503:  # no responders: the stream (leader) is not there yet
                last_error = f"JetStream unavailable: {exc.description}"
            else:
                return Published(index, event_id, "rejected", error=f"JetStream refused: {exc.description}")
        except NatsError as exc:  # closed / reconnecting connection
            last_error = f"connection problem: {exc.__class__.__name__}: {exc}"
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
    return Published(index, event_id, "rejected", error=f"{last_error} after {attempts} attempts")
