"""The deadline watch (督办): escalate every breached deadline exactly once.

Why it follows the notification log and not the cases: any writer, in any process, may move a
case into a stage with a deadline, so the watch keeps an index of due times fed from the log
(through the :class:`~hub.application.ports.NotificationLog` port; the composition root plugs in
the gap-safe ``LogFollower``: on PostgreSQL a lower id can become visible after a higher one, and
stepping past it would miss that case's escalation). Breach events carry deterministic ids
(:func:`hub.domain.sla.breach_event_id`), so publishing or applying them twice escalates once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError

from hub import messages as m
from hub.application.batch import BatchDecisions
from hub.application.outcome import Outcome
from hub.application.ports import NotificationLog
from hub.domain import Case
from hub.domain.sla import breach_event_id
from hub.vocabulary import STAGE_LIMIT_NAMES

log = logging.getLogger(__name__)

WATCHER_ACTOR = "system:sla-watcher"

DEADLINE_TOPICS = tuple(
    cls.TOPIC
    for cls in (
        Case.Reported,
        Case.Registered,
        Case.Rejected,
        Case.Merged,
        Case.Dispatched,
        Case.Accepted,
        Case.Returned,
        Case.Handled,
        Case.Verified,
        Case.Closed,
        Case.Extended,
        Case.Suspended,
        Case.Resumed,
    )
)
"""The events that set, move or clear a case's due time, or pause its clock."""


class DeadlineWatch(BatchDecisions):
    """督办: the due-time index, the breach events it finds, and escalating them."""

    _watch_log: NotificationLog | None
    _watch_position: int
    _watch_due: dict[UUID, datetime]
    _watch_suspended: set[UUID]

    def _follow_deadlines(self) -> None:
        """Bring the deadline index up to date from the notification log (any writer, any process)."""
        if self._watch_log is None:
            self._watch_log = self._open_log(self.recorder, DEADLINE_TOPICS)
        for section in self._watch_log.batches(self._watch_position, 5000):
            for notification in section:
                event = self.mapper.to_domain_event(notification)
                case_id = notification.originator_id
                assert isinstance(case_id, UUID)
                if isinstance(event, Case.Suspended):
                    self._watch_suspended.add(case_id)
                elif isinstance(event, Case.Resumed):
                    self._watch_suspended.discard(case_id)
                if isinstance(event, (Case.Closed, Case.Rejected, Case.Merged)):
                    self._watch_due.pop(case_id, None)
                elif isinstance(event, Case.Extended):
                    self._watch_due[case_id] = event.until
                elif hasattr(event, "due"):
                    due = event.due
                    if due is None:
                        self._watch_due.pop(case_id, None)
                    else:
                        self._watch_due[case_id] = due
            self._watch_position = section[-1].id

    def breach_events(self, now: datetime, limit: int = 10_000) -> list[dict[str, Any]]:
        """Canonical ``escalated`` events (督办) for every deadline passed before ``now``.

        Each has the deterministic id :func:`hub.domain.sla.breach_event_id`, the breach moment as
        its event time, the command centre as department and the hub case id: publish them on NATS
        (the intake applies each once) or hand them to :meth:`apply_batch` directly.
        """
        self._follow_deadlines()
        overdue = sorted(
            (due, case_id)
            for case_id, due in self._watch_due.items()
            if due < now and case_id not in self._watch_suspended
        )
        events: list[dict[str, Any]] = []
        for _, case_id in overdue[:limit]:
            case = self._cache.get(case_id)
            if case is None:
                try:
                    case = self.get_case(case_id)
                except AggregateNotFoundError:
                    continue
            if not case.is_overdue(now) or case.due is None:
                continue
            event_id = breach_event_id(case.id, case.stage.value, case.due)
            if case.has_applied(event_id):
                continue
            limit_name = STAGE_LIMIT_NAMES.get(case.stage.value, case.stage.value)
            events.append(
                m.make_event(
                    id=event_id,
                    source=case.source,
                    department=m.COMMAND_DEPARTMENT,
                    kind=case.kind,
                    action=m.Action.ESCALATED,
                    caseref=case.caseref,
                    actor=WATCHER_ACTOR,
                    actorrole="system",
                    time=case.due,
                    caseid=case.id,
                    data={
                        "reason": f"超期: the {case.stage.value} deadline ({limit_name}) "
                        f"{case.due.isoformat()} passed",
                        "level": min(5, case.breaches + 1),
                        "stage": case.stage.value,
                        "deadline": case.due.isoformat(),
                    },
                )
            )
        return events

    def escalate_overdue(self, now: datetime) -> list[Outcome]:
        """The deadline watcher: escalate every breached deadline exactly once, in one transaction.

        Safe to run any number of times and after restarts (deterministic event ids, idempotent
        receiver). It writes through :meth:`apply_batch`, so run it on the same thread as the
        intake's writer (or publish :meth:`breach_events` instead).
        """
        valids: list[m.Valid] = []
        for event in self.breach_events(now):
            result = m.validate(orjson.dumps(event), self.catalogue)
            if isinstance(result, m.Valid):
                valids.append(result)
            else:
                log.error("deadline watcher built an invalid event %s: %s", event["id"], result)
        return self.apply_batch(valids) if valids else []
