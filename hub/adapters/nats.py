"""nats-py internals the intake's hot path relies on: direct delivery, header parsing, batched acks.

Why here, at the edge (design §3): these functions reach into nats-py's private parts
(``Client._process_msg``, ``Client._send_command``, ``Msg._ackd``; nats-py pinned < 3) to save
microseconds an event on the event loop the intake shares with validation. Kept in one adapter,
a nats-py upgrade is checked in one place, and the intake's consumer loop reads as JetStream
semantics (pull, ack, nak, term) rather than as a patch of a driver. Each function falls back to
nats-py's public behaviour when the internal it needs is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    MsgAlreadyAckdError,
    NotJSMessageError,
    OutboundBufferLimitError,
)

RawHandler = Callable[[int, bytes, bytes, bytes, "bytes | None"], None]
"""``(sid, subject, reply, data, headers)`` as nats-py's protocol parser hands a message over."""


def route_directly(nc: NATS, sub: Any, handler: RawHandler) -> Callable[[], None] | None:
    """Deliver ``sub``'s messages to ``handler`` straight from nats-py's protocol parser.

    Why: nats-py hands every message through a coroutine that parses its headers, a ``Msg``, an
    ``asyncio.Queue`` and a per-subscription task that awaits the callback: ≈ 11 µs a message
    with the ack, on the event loop the intake shares with validation. The intake's own inbox
    needs none of it (its own buffer is the queue). Other subscriptions of the client are
    untouched. This relies on nats-py's internal ``Client._process_msg(sid, subject, reply,
    data, headers)`` (pinned < 3); when it is missing the subscription's callback is used as
    before. Returns the function that removes the route (before unsubscribing).
    """
    process = getattr(nc, "_process_msg", None)
    sid = getattr(sub, "_id", None)
    if process is None or not isinstance(sid, int):
        return None
    routes: dict[int, RawHandler] | None = getattr(nc, "_hub_direct_routes", None)
    if routes is None:
        table: dict[int, RawHandler] = {}

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            direct = table.get(sid)
            if direct is None:
                await process(sid, subject, reply, data, headers)
                return
            stats = nc.stats
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            direct(sid, subject, reply, data, headers)

        nc._process_msg = process_msg  # type: ignore[method-assign]
        nc._hub_direct_routes = routes = table  # type: ignore[attr-defined]
    routes[sid] = handler
    return lambda: routes.pop(sid, None) and None


_ONLY_MSG_ID = b"NATS/1.0\r\nNats-Msg-Id:"


def parse_headers(raw: bytes) -> dict[str, str]:
    """``NATS/1.0[ status]\r\nName: value\r\n…\r\n\r\n`` → {name: value} (as nats-py does;
    a status line becomes ``Status``/``Description``).

    Nearly every event carries one header, its ``Nats-Msg-Id``: that block is read without
    splitting (≈ 1.5 µs an event less on the intake's event loop)."""
    if raw.startswith(_ONLY_MSG_ID) and raw.count(b"\r\n") == 3 and raw.endswith(b"\r\n\r\n"):
        return {"Nats-Msg-Id": raw[len(_ONLY_MSG_ID) : -4].decode("utf-8", "replace").strip()}
    lines = raw.decode("utf-8", "replace").split("\r\n")
    out: dict[str, str] = {}
    first = lines[0]
    if len(first) > 8 and first[8] == " ":
        code, _, description = first[9:].partition(" ")
        if code.isdigit():
            out["Status"] = code
        if description:
            out["Description"] = description
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.strip()
        if sep and name and " " not in name and "\t" not in name:
            out[name] = value.strip()
    return out


async def ack_all(nc: NATS, msgs: Sequence[Msg]) -> None:
    """Acknowledge each message, as ``Msg.ack()`` does, with one buffered write for all of them.

    Why: ``Msg.ack()`` is two coroutines and a formatted command per message (≈ 3 µs each on the
    event loop the intake shares with validation); a batch of 500 acks is one ``PUB <reply> 0``
    per message joined into one command. Still one ack per message (``AckExplicit``): a batch
    mixes acks with naks and terms, which an ``AckAll`` of the last message would swallow. The
    same guards as ``publish`` (closed, draining, full reconnect buffer) raise the same errors, so
    the caller's failure path is unchanged; relies on nats-py's ``Client._send_command`` (pinned
    < 3) and falls back to ``Msg.ack()`` without it.
    """
    if not msgs:
        return
    send = getattr(nc, "_send_command", None)
    if send is None:
        for msg in msgs:
            await msg.ack()
        return
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    for msg in msgs:
        if not msg.reply:
            raise NotJSMessageError
        if msg._ackd:
            raise MsgAlreadyAckdError(msg)
    command = b"".join([b"PUB " + msg.reply.encode() + b" 0\r\n\r\n" for msg in msgs])
    if not nc.is_connected:
        limit = nc._max_pending_size
        if limit <= 0 or len(command) + nc._pending_data_size > limit:
            raise OutboundBufferLimitError
    for msg in msgs:
        msg._ackd = True
    nc.stats["out_msgs"] += len(msgs)
    await send(command)
    flush_queue = nc._flush_queue
    if flush_queue is not None and flush_queue.empty():
        await nc._flush_pending()
