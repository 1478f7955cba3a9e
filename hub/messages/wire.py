"""The hand-off form of a validated event: what the intake sends the store-writer process.

Why not the raw JSON: the intake has already decoded and checked the event (:func:`hub.messages.validate`);
re-decoding it in the writer (envelope patterns, timestamp parsing) cost ≈ 6.5 µs an event on the
writer's core, the intake's bottleneck. :class:`WireEvent` carries the checked fields positionally
(msgpack), and :func:`from_wire` rebuilds the :class:`~hub.messages.validation.Valid` in ≈ 3 µs
without checking again. The module-level assertion keeps it field for field with the envelope.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from msgspec import Struct

from hub.messages.actions import ACTION_OF
from hub.messages.envelope import Envelope
from hub.messages.payloads import PAYLOADS
from hub.messages.validation import Valid


class WireEvent(Struct, array_like=True, frozen=True):
    """A validated event as the intake hands it to the store-writer process (hub/adapters/store/writer.py).

    Why not the raw JSON: re-decoding it in the writer (envelope patterns, timestamp parsing)
    cost ≈ 6.5 µs an event on the writer's core, the intake's bottleneck; this already-checked
    form (msgpack, positional) is rebuilt in ≈ 3 µs. ``time`` travels as ISO 8601 text, so the
    source's UTC offset is kept exactly (msgpack timestamps would turn it into UTC).
    """

    id: str
    source: str
    type: str
    time: str
    subject: str | None
    department: str
    grid: str | None
    actor: str
    actorrole: str | None
    caseref: str
    caseid: uuid.UUID | None
    data: dict[str, Any]
    case_id: uuid.UUID


_NOT_ON_WIRE = frozenset({"specversion", "datacontenttype"})  # constants of the envelope
assert set(Envelope.__struct_fields__) - _NOT_ON_WIRE == set(WireEvent.__struct_fields__) - {"case_id"}


def to_wire(valid: Valid) -> WireEvent:
    """The compact form of a validated event for the store writer (see :class:`WireEvent`)."""
    e = valid.envelope
    return WireEvent(
        e.id, e.source, e.type, e.time.isoformat(), e.subject, e.department, e.grid, e.actor,
        e.actorrole, e.caseref, e.caseid, e.data, valid.case_id,
    )  # fmt: skip


def from_wire(w: WireEvent) -> Valid:
    """Rebuild an event :func:`validate` already accepted (in the intake process): no checks, and
    any failure is a programming error, not bad input. ``raw`` stays empty (nothing reads it there)."""
    env = Envelope(
        specversion="1.0", id=w.id, source=w.source, type=w.type,
        time=datetime.fromisoformat(w.time), subject=w.subject, department=w.department,
        grid=w.grid, actor=w.actor, actorrole=w.actorrole, caseref=w.caseref, caseid=w.caseid,
        data=w.data,
    )  # fmt: skip
    payload = msgspec.convert(w.data, PAYLOADS[ACTION_OF[w.type.rpartition(".")[2]]])
    return Valid(env, payload, w.case_id)
