"""Audit facts recorded in the event store itself: who saw which personal data of which case.

Why events in the store: the read access log is evidence for auditors, so it gets what the case
history gets: the notification log's order and the sha256 audit chain (hub.adapters.audit), and no table an
API process could quietly rewrite. Each access is its own one-event aggregate (a fresh UUID), so
any number of API replicas record accesses without ever contending on a version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate


class AccessRecord(Aggregate):
    """One read of personal data: the case, the fields revealed, who (token role and principal), when."""

    TOPIC = "citybrain.audit.access"

    class Event(Aggregate.Event):
        TOPIC = "citybrain.audit.access.event"

    class Recorded(Aggregate.Created, Event):
        TOPIC = "citybrain.audit.access.recorded.v1"
        case_id: UUID
        role: str
        principal: str
        fields: list[str]
        at: datetime
        operation: str

    def __init__(
        self, case_id: UUID, role: str, principal: str, fields: list[str], at: datetime, operation: str
    ) -> None:
        self.case_id, self.role, self.principal = case_id, role, principal
        self.fields, self.at, self.operation = fields, at, operation

    @classmethod
    def record(
        cls,
        *,
        case_id: UUID,
        role: str,
        fields: list[str],
        at: datetime,
        principal: str = "",
        operation: str = "",
    ) -> Any:
        return cls._create(
            cls.Recorded,
            id=uuid4(),
            case_id=case_id,
            role=role,
            principal=principal,
            fields=sorted(fields),
            at=at,
            operation=operation,
        )
