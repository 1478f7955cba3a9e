"""Dead letters (死信): what the intake could not apply, filed in ``CITY_DLQ`` with the reason.

Why one module for filing, reading and replaying: the headers the intake writes on a dead letter
(reason, field, detail, the subject as published, the original sequence and deliveries, the event
id, and a replay's ``Hub-Replay-Of``) are the format ``hub dlq list`` reads and ``hub dlq replay``
re-drives; kept together, the writer and its readers cannot drift apart. Bad input is never
dropped: it waits here, under a bounded retention (see :mod:`hub.intake.topology`), until an
operator replays it after the cause is fixed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from hub import messages as m


@dataclass(slots=True)
class Letter:
    """A message the intake is about to dead-letter, and why (the headers of its copy)."""

    msg: Msg
    reason: m.Reason
    field: str
    detail: str


async def file_dead_letters(js: JetStreamContext, letters: Sequence[Letter]) -> None:
    """Copy each letter to CITY_DLQ (stored, acknowledged); the caller terminates the originals
    only after this returns, so a crash in between redelivers them and files nothing twice."""
    now = datetime.now(UTC).isoformat()
    publishes = []
    for letter in letters:
        meta = letter.msg.metadata
        original_id = (letter.msg.headers or {}).get("Nats-Msg-Id", "")
        # Filed under the subject as published (the case key back in place of the server's
        # partition token): a replay is then partitioned again by the stream, and a publisher
        # waiting for its event's fate (GraphQL mutations) listens on dlq.<its own subject>.
        subject = m.public_subject(letter.msg.subject, letter.msg.data)
        headers = {
            m.H_REASON: letter.reason.value,
            m.H_FIELD: letter.field,
            m.H_DETAIL: letter.detail[:2000],
            m.H_SUBJECT: subject,
            m.H_SEQ: str(meta.sequence.stream),
            m.H_DELIVERIES: str(meta.num_delivered),
            m.H_MSG_ID: original_id,
            m.H_TIME: now,
            # One copy per stored message, however often it is delivered: a redelivery after a
            # crash between the copy and the term, or of a batch slower than the ack wait, is
            # deduplicated by the server (a replay is a new message with a sequence of its own).
            "Nats-Msg-Id": f"dlq-{meta.sequence.stream}",
        }
        replay_of = (letter.msg.headers or {}).get(m.H_REPLAY_OF)
        if replay_of:
            headers[m.H_REPLAY_OF] = replay_of
        publishes.append(
            js.publish(
                m.dlq_subject_for(subject),
                letter.msg.data,
                headers=headers,
                stream=m.DLQ_STREAM,
            )
        )
    await asyncio.gather(*publishes)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of CITY_DLQ as operators see it (``hub dlq list``)."""

    seq: int
    time: str
    reason: str
    field: str
    detail: str
    subject: str
    stream_seq: int
    deliveries: int
    msg_id: str
    replay_of: str
    data: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "reason": self.reason,
            "field": self.field,
            "detail": self.detail,
            "subject": self.subject,
            "stream_seq": self.stream_seq,
            "deliveries": self.deliveries,
            "msg_id": self.msg_id,
            "replay_of": self.replay_of,
            "data": self.data.decode("utf-8", errors="replace"),
        }


async def read_dead_letters(js: JetStreamContext, reason: str | None = None) -> list[DeadLetter]:
    """Every dead letter currently in CITY_DLQ (optionally of one reason), oldest first."""
    info = await js.stream_info(m.DLQ_STREAM)
    if info.state.messages == 0:
        return []
    letters: list[DeadLetter] = []
    sub = await js.subscribe(
        f"{m.DLQ_PREFIX}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, stream=m.DLQ_STREAM
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except NatsTimeoutError:
                break
            h = msg.headers or {}
            letter = DeadLetter(
                seq=msg.metadata.sequence.stream,
                time=h.get(m.H_TIME, ""),
                reason=h.get(m.H_REASON, ""),
                field=h.get(m.H_FIELD, ""),
                detail=h.get(m.H_DETAIL, ""),
                subject=h.get(m.H_SUBJECT, msg.subject.removeprefix(f"{m.DLQ_PREFIX}.")),
                stream_seq=int(h.get(m.H_SEQ, "0") or 0),
                deliveries=int(h.get(m.H_DELIVERIES, "0") or 0),
                msg_id=h.get(m.H_MSG_ID, ""),
                replay_of=h.get(m.H_REPLAY_OF, ""),
                data=msg.data,
            )
            if reason is None or letter.reason == reason:
                letters.append(letter)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return letters


async def replay_dead_letters(js: JetStreamContext, reason: str | None = None) -> list[DeadLetter]:
    """Re-drive dead letters onto their original subjects after the cause was fixed.

    Each replay carries a fresh ``Nats-Msg-Id`` (the original id may still be inside the stream's
    duplicate window) derived from the dead letter's sequence, so running replay twice publishes
    once; the case's idempotent receiver protects against double application regardless.
    """
    letters = await read_dead_letters(js, reason)
    await asyncio.gather(
        *(
            js.publish(
                letter.subject,
                letter.data,
                headers={
                    "Nats-Msg-Id": f"replay-{letter.seq}",
                    m.H_REPLAY_OF: str(letter.seq),
                },
                stream=m.STREAM,
            )
            for letter in letters
        )
    )
    return letters
