"""What deciding one canonical event came to (处理结果): the verdict the intake acts on.

Why a module of its own: the intake, the store writer and the GraphQL commands all act on an
outcome (ack, retry, dead-letter, answer), and none of them needs the ledger to read one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID


class Verdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the case already holds this event id, or the step it reports (no-op)
    REFUSED = "refused"  # the case's stage does not allow it (maybe not yet: retry, then dead-letter)
    NOT_FOUND = "not_found"  # no such case (yet: its report may still be on the way)
    NOT_PERMITTED = "not_permitted"  # a department acting beyond its cases, for good: dead-lettered at once
    NOT_PERMITTED_YET = "not_permitted_yet"  # not its case (yet: a dispatch may be on the way): retried
    FAILED = "failed"  # deciding or mapping this one event raised: it is dead-lettered, never retried


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    case_id: UUID
    detail: str = ""
    field: str = ""
    """The event's field the failure points at, when it can be told (``FAILED``)."""
