"""The read access log (访问留痕): who saw which personal data of which case, as audit events.

Why events in the event store: see ``hub.domain.audit``; the access log is chained like the case
history and survives every rebuild of the read models. Why buffered: a GraphQL query revealing a
reporter must not wait for a store commit (≈ 1 ms on SQLite, more under the intake's load), so
records are queued and written in one transaction at most every ``flush_interval`` seconds, or
once ``max_pending`` are waiting, or on :meth:`AccessLog.flush` / :meth:`AccessLog.close`. A crash
can lose at most that interval of records; an API that must never lose one calls ``flush()``
before answering.

How the API uses it (hub/api owns the call sites): build ONE ``AccessLog(ledger.events)`` at start
(ops wires it; ``ledger`` is any ``CaseLedger`` on the same store), ``start()`` it, and for every
response that includes personal data (reporter name/phone/id number, sealed free text) call
``record_access(token_role, case_id, fields, at, principal=token_id, operation=operation_name)``;
``close()`` at shutdown. ``hub audit access [CASE]`` lists the records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from hub.domain.audit import AccessRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Access:
    """One recorded read of personal data."""

    position: int
    case_id: UUID
    role: str
    principal: str
    fields: tuple[str, ...]
    at: datetime
    operation: str
    recorded_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "case_id": str(self.case_id),
            "role": self.role,
            "principal": self.principal,
            "fields": list(self.fields),
            "at": self.at.isoformat(),
            "operation": self.operation,
            "recorded_at": self.recorded_at.isoformat(),
        }


class AccessLog:
    """Buffered writer of ``AccessRecord`` events into the event store (thread-safe)."""

    def __init__(self, events: Any, *, flush_interval: float = 1.0, max_pending: int = 256) -> None:
        self.events = events  # the application's EventStore (ledger.events)
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record_access(
        self,
        token_role: str,
        case_id: UUID,
        fields: Iterable[str],
        at: datetime | None = None,
        *,
        principal: str = "",
        operation: str = "",
    ) -> None:
        """Record that ``token_role`` (and ``principal``) was shown ``fields`` of ``case_id`` at ``at``."""
        record = AccessRecord.record(
            case_id=case_id,
            role=token_role,
            fields=list(fields),
            at=at or datetime.now(UTC),
            principal=principal,
            operation=operation,
        )
        with self._lock:
            self._pending.extend(record.collect_events())
            full = len(self._pending) >= self.max_pending
        if full:
            self.flush()

    def flush(self) -> int:
        """Write every queued record in one transaction; returns how many."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self.events.put(batch)
            except Exception:
                with self._lock:
                    self._pending[:0] = batch  # keep them for the next attempt
                raise
            return len(batch)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:
                log.exception("access log: flush failed; retrying")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush()


def read_access(
    recorder: Any, mapper: Any, case_id: UUID | None = None, limit: int | None = None
) -> list[Access]:
    """Recorded accesses in order (of one case, when given), straight from the event store."""
    topics = [AccessRecord.Recorded.TOPIC]
    out: list[Access] = []
    start = 0
    while True:
        section: Sequence[Any] = recorder.select_notifications(
            start=start, limit=5000, topics=topics, inclusive_of_start=False
        )
        if not section:
            return out
        for n in section:
            e = mapper.to_domain_event(n)
            if case_id is not None and e.case_id != case_id:
                continue
            out.append(
                Access(n.id, e.case_id, e.role, e.principal, tuple(e.fields), e.at, e.operation, e.timestamp)
            )
            if limit is not None and len(out) >= limit:
                return out
        start = section[-1].id
