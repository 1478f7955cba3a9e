"""What each closed-loop step carries: the ``data`` schema of every action (上报 … 关联).

One schema per :class:`~hub.messages.actions.Action`, so a department's ``data`` is checked against
exactly the fields its step means, with limits a store and a screen can hold (lengths, ranges, a
UTC offset on every timestamp). Why msgspec Structs: they decode and check in one pass, ≈ 4 µs an
event on the intake's hot path, and give integrators a JSON Schema (``hub.messages.json_schemas``).
Every payload refuses unknown fields (:class:`Payload`): a misspelt field would otherwise be lost
without a word.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from hub.messages.actions import Action
from hub.messages.subjects import case_id_for
from hub.vocabulary import LinkRelation, Priority

Token = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[a-z][a-z0-9_]*$")]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=500, pattern=r"\S")]
Text = Annotated[str, Meta(max_length=8000)]
Short = Annotated[str, Meta(max_length=200)]
Url = Annotated[str, Meta(max_length=2000)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]
"""A timestamp with its UTC offset: department clocks differ, so a naive time is refused."""


class Payload(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Payloads refuse unknown fields: a misspelt field would otherwise be silently lost."""


class Location(Payload, kw_only=True, frozen=True):
    """WGS-84 point (lon/lat in degrees) with an optional address line."""

    lon: Annotated[float, Meta(ge=-180, le=180)]
    lat: Annotated[float, Meta(ge=-90, le=90)]
    address: Text | None = None


class Person(Payload, kw_only=True, frozen=True):
    """A reporter or party (个人信息): personal data, masked for screens and protected at rest."""

    name: Short | None = None
    phone: Annotated[str, Meta(max_length=40)] | None = None
    id_number: Annotated[str, Meta(max_length=40)] | None = None


class CaseRef(Payload, kw_only=True, frozen=True):
    """Points at a case in another department's system: by hub id, or by (source, caseref)."""

    caseid: uuid.UUID | None = None
    source: NonEmpty | None = None
    caseref: NonEmpty | None = None

    def resolve(self) -> uuid.UUID:
        if self.caseid is not None:
            return self.caseid
        if self.source and self.caseref:
            return case_id_for(self.source, self.caseref)
        raise ValueError("a case reference needs either caseid, or both source and caseref")


class Reported(Payload, kw_only=True, frozen=True):
    """上报: the first record of a case. ``category`` is a code of the department's taxonomy."""

    category: NonEmpty
    title: Annotated[str, Meta(min_length=1, max_length=500)]
    description: Text = ""
    priority: Priority = "normal"
    channel: Token = "system"
    location: Location | None = None
    reporter: Person | None = None
    attachments: Annotated[list[Url], Meta(max_length=50)] = field(default_factory=list)


class Note(Payload, kw_only=True, frozen=True):
    note: Text = ""


class Registered(Note, kw_only=True, frozen=True):
    """立案. Optional corrections of category and priority made by the registering operator."""

    category: NonEmpty | None = None
    priority: Priority | None = None


class WithReason(Payload, kw_only=True, frozen=True):
    reason: NonEmpty


class Rejected(WithReason, kw_only=True, frozen=True):
    """不予立案."""


class Merged(Note, kw_only=True, frozen=True):
    """合并: this case duplicates ``primary``."""

    primary: CaseRef


class Dispatched(Note, kw_only=True, frozen=True):
    """派遣 to one or more responsible departments (several = 联合处置 joint handling)."""

    departments: Annotated[list[Token], Meta(min_length=1, max_length=20)]


class Accepted(Note, kw_only=True, frozen=True):
    """签收 by one responsible department."""

    department: Token


class Returned(WithReason, kw_only=True, frozen=True):
    """退回: a responsible department says the case is not theirs."""

    department: Token


class Handled(Note, kw_only=True, frozen=True):
    """处置反馈: a responsible department reports its handling done."""

    department: Token
    attachments: Annotated[list[Url], Meta(max_length=50)] = field(default_factory=list)


class Verified(Note, kw_only=True, frozen=True):
    """核查: ``passed`` false sends the case back to the departments (返工 rework)."""

    passed: bool


class Closed(Note, kw_only=True, frozen=True):
    """结案."""


class Evaluated(Note, kw_only=True, frozen=True):
    """评价: satisfaction 1–5, by the citizen or an operator."""

    score: Annotated[int, Meta(ge=1, le=5)]
    by: Literal["citizen", "operator"] = "citizen"


class Escalated(WithReason, kw_only=True, frozen=True):
    """督办: raised by the SLA watcher or by an operator."""

    level: Annotated[int, Meta(ge=1, le=5)] = 1
    stage: Token | None = None
    """SLA breach only: the stage whose deadline passed (set together with ``deadline``)."""
    deadline: AwareDatetime | None = None
    """SLA breach only: the breached deadline; the hub refuses it when no longer current."""


class Extended(WithReason, kw_only=True, frozen=True):
    """延期: a new deadline for the current stage."""

    until: AwareDatetime


class Suspended(WithReason, kw_only=True, frozen=True):
    """挂起: the SLA clock pauses until 恢复 resumed."""


class Resumed(Note, kw_only=True, frozen=True):
    """恢复."""


class Linked(Note, kw_only=True, frozen=True):
    """关联: a relation to a case in another department (警调对接, 诉调对接, 精神卫生 …)."""

    relation: LinkRelation
    target: CaseRef
    target_department: Token | None = None
    target_kind: Token | None = None
    """When the target case does not exist yet and the hub opens it: its record kind (default: the
    target department's first configured kind)."""
    target_category: NonEmpty | None = None
    """When the hub opens the target case: its category (default: this case's category)."""


PAYLOADS: dict[Action, type[Payload]] = {
    Action.REPORTED: Reported,
    Action.REGISTERED: Registered,
    Action.REJECTED: Rejected,
    Action.MERGED: Merged,
    Action.DISPATCHED: Dispatched,
    Action.ACCEPTED: Accepted,
    Action.RETURNED: Returned,
    Action.HANDLED: Handled,
    Action.VERIFIED: Verified,
    Action.CLOSED: Closed,
    Action.EVALUATED: Evaluated,
    Action.ESCALATED: Escalated,
    Action.EXTENDED: Extended,
    Action.SUSPENDED: Suspended,
    Action.RESUMED: Resumed,
    Action.LINKED: Linked,
}


def payload_dict(payload: Payload) -> dict[str, Any]:
    """A payload as plain builtins (nested structs as dicts), e.g. to hand to the domain."""
    result: dict[str, Any] = msgspec.to_builtins(payload, builtin_types=(datetime, uuid.UUID))
    return result
