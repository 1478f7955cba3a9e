"""Erasure in the NATS streams: delete a person's raw events still held in ``CITY`` and ``CITY_DLQ``.

Why: the streams are a buffer in front of the event store, and what they buffer is the raw
event — the reporter's name, phone and id number in clear, which crypto-shredding the store
cannot reach. Stream retention (``HUB_STREAM_MAX_AGE``/``MAX_BYTES``) bounds how long they stay;
an erasure must not wait for it.

Why a scan and not a purge by subject: ``CITY`` stores ``city.<dept>.<kind>.<action>.<key>`` as
``….<partition>`` (ADR 0006), so a subject holds many cases; dead letters keep the case key, but
a malformed one may name no case at all. Each message is therefore read once (an ordered
consumer, flow-controlled) and matched by its case (``caseid``, or ``source`` + ``caseref``) and
by the person's values in its bytes — raw UTF-8 and JSON ``\\uXXXX`` escapes, in the payload and
the headers (a dead letter's detail). Matches are deleted one by one with JetStream's
``STREAM.MSG.DELETE``, which overwrites the message in the store's block files (secure erase: the
request's ``no_erase`` is left false), so the bytes do not linger on disk either.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from hub import messages as m

log = logging.getLogger(__name__)


@dataclass
class StreamErasure:
    """What one stream held of the person: messages read and the sequences deleted."""

    stream: str
    scanned: int = 0
    deleted: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    """Matches not yet settled by a durable consumer (the intake): kept, so no event is lost
    before the store records it (sealed); the command says so, and deletes them when run again."""


def needles(values: Iterable[str]) -> set[bytes]:
    """Byte forms a value may take in a raw event: as written, normalised (no spaces or dashes),
    and JSON-escaped (``\\u738b`` in lower or upper case hex, as ``json.dumps`` writes it)."""
    out: set[bytes] = set()
    for value in values:
        for form in {value, "".join(value.split()).replace("-", "")}:
            if len(form) < 2:
                continue
            out.add(form.encode())
            escaped = json.dumps(form)[1:-1]
            out.add(escaped.encode())
            out.add(escaped.replace("\\u", "\\U").upper().replace("\\U", "\\u").encode())
    return out


def _case_of(event: Any) -> str | None:
    if not isinstance(event, Mapping):
        return None
    case_id = m.case_id_of(event)
    return None if case_id is None else str(case_id)


def concerns(data: bytes, headers: Mapping[str, str] | None, cases: set[str], found: set[bytes]) -> bool:
    """True when a raw message is about one of ``cases`` or holds one of the ``found`` byte forms."""
    blob = data + b"\n" + b"\n".join(v.encode() for v in (headers or {}).values())
    if any(n in blob for n in found):
        return True
    if not cases:
        return False
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    events = parsed if isinstance(parsed, list) else [parsed]
    return any(_case_of(e) in cases for e in events)


async def erase_from_stream(
    js: Any, stream: str, cases: Iterable[str], values: Iterable[str], *, idle_s: float = 2.0
) -> StreamErasure:
    """Delete every message of ``stream`` about ``cases`` or holding one of ``values``."""
    result = StreamErasure(stream)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return result
    if not info.state.messages:
        return result
    wanted, found = {str(c) for c in cases}, needles(values)
    settled = await _settled_through(js, stream, int(info.state.last_seq))
    sub = await js.subscribe(
        info.config.subjects[0] if info.config.subjects else ">",
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        stream=stream,
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except NatsTimeout:
                break
            result.scanned += 1
            if concerns(msg.data, msg.headers, wanted, found):
                seq = msg.metadata.sequence.stream
                (result.deleted if seq <= settled else result.pending).append(seq)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    for seq in result.deleted:
        try:
            await js.delete_msg(stream, seq)
        except NotFoundError:  # gone meanwhile (retention, a replayed dead letter): nothing to erase
            continue
    if result.deleted:
        log.info("erasure: deleted %d of %d messages in %s", len(result.deleted), result.scanned, stream)
    return result


async def _settled_through(js: Any, stream: str, last: int) -> int:
    """The highest stream sequence every durable consumer of ``stream`` has settled (acked or
    terminated) everything up to: the lowest ack floor of those with work left, the stream's
    end when none has any. Conservative: a consumer's floor only speaks for its own subjects."""
    floor = last
    for consumer in await js.consumers_info(stream):
        if not consumer.config.durable_name:
            continue  # an ordered reader (``hub dlq list``, a waiting publisher): settles nothing
        if not consumer.num_pending and not consumer.num_ack_pending:
            continue  # nothing left for it: every message it will ever take is settled
        ack = consumer.ack_floor.stream_seq if consumer.ack_floor is not None else 0
        floor = min(floor, ack)
    return floor


async def erase_from_streams(
    js: Any, cases: Iterable[str], values: Iterable[str], streams: Iterable[str] = (m.STREAM, m.DLQ_STREAM)
) -> list[StreamErasure]:
    """:func:`erase_from_stream` for each of the hub's streams (``CITY`` and ``CITY_DLQ``)."""
    cases, values = list(cases), list(values)
    return list(await asyncio.gather(*(erase_from_stream(js, s, cases, values) for s in streams)))
