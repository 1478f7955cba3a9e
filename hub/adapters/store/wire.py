"""The store writer's wire protocol (单写进程的管道协议): the messages on its two pipes, and its errors.

Why its own module: three processes speak it — the intake (``remote.RemoteLedger``), the writer
(``writer``) and its recorder (``recorder``) — and each side must decode exactly what the other
encodes. Messages are msgpack-encoded ``msgspec`` structs, tagged so one decoder reads a union.

Intake ↔ writer: a batch goes as the events the intake already validated, in their compact
pre-parsed form (``hub.messages.WireEvent``: the writer rebuilds them without re-parsing JSON,
keeping the sources' time zones); outcomes come back as the few events not applied. Every request
carries a number its reply repeats; a reply out of step ends the pipe (its batches are redelivered)
instead of answering a batch with another's outcome (ADR 0002, decision 9).

Writer ↔ recorder: the rows of a decided batch, numbered; the recorder answers each number in
order, committed or not, and skips everything after a failure until a reset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from hub import messages as m


# --------------------------------------------------------------------------- intake ↔ writer
class Apply(msgspec.Struct, tag="apply"):
    id: int
    """The request's number: its reply carries it back (see ``channel.Channel``)."""
    events: list[m.WireEvent]


class Breaches(msgspec.Struct, tag="breaches"):
    id: int
    now: datetime


class Applied(msgspec.Struct, tag="applied"):
    """Every event of the batch applied, except ``others``: (position in the batch, verdict, detail,
    field).

    Why not one outcome per event: nearly all are "applied", and the intake knows each event's case
    id already; 500 case ids decoded back per batch cost the intake's loop ≈ 1 µs an event."""

    id: int
    others: list[tuple[int, str, str, str]]


class BreachList(msgspec.Struct, tag="breach_list"):
    id: int
    events: list[dict[str, Any]]


class Failed(msgspec.Struct, tag="failed"):
    error: str
    id: int = 0
    """0 only when the writer could not start (no request was asked yet)."""


class Ready(msgspec.Struct, tag="ready"):
    pass


Request = Apply | Breaches
Reply = Applied | BreachList | Failed | Ready


# --------------------------------------------------------------------------- writer ↔ recorder
class Row(msgspec.Struct, array_like=True, frozen=True):
    """A stored event as it crosses to the recorder: the fields of the library's ``StoredEvent``
    under the same names, which is all its recorders read (decoded as such, not rebuilt)."""

    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


class Record(msgspec.Struct, tag="record", array_like=True):
    seq: int
    events: list[Row]


class Reset(msgspec.Struct, tag="reset", array_like=True):
    pass


class Recorded(msgspec.Struct, tag="recorded", array_like=True):
    seq: int
    error: str = ""
    """Empty when the rows are committed."""
    conflict: bool = False
    """The store refused a row as already there (a case created optimistically existed after all)."""
    skipped: bool = False
    """Not attempted: an earlier batch failed, and no reset came since."""


# --------------------------------------------------------------------------- errors
class WriterError(RuntimeError):
    """The writer process failed a request (the message is its error) or died."""


class ProtocolError(WriterError):
    """The pipe to the writer is out of order (a reply to no request, or to another one, or a frame
    that is not one): nothing read from it can be trusted any more, so the pipe is dropped, every
    batch waiting on it fails (to be redelivered) and the next request starts a new writer."""
