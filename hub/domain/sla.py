"""SLA policy (办理时限): the deadline of every open stage, by category and priority.

Each stage of the closed loop has its own time limit: 立案时限 (reported → registered), 派遣时限,
签收时限, 处置时限, 核查时限, 结案时限. Limits are data: rules matched by department, record kind,
category code prefix and priority, the most specific rule that defines the stage wins. A rule
counts in working time (工作时, the calendar's office hours) or in calendar time (自然时, e.g.
urgent safety incidents that run around the clock).

Why the aggregate gets a :class:`Deadlines` object instead of reading this policy: the case stays
pure and replayable. It asks "when is the stage I am entering due?" at command time and records
the answer in the event, so replay never needs the policy and a later change of policy never
rewrites history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from uuid import UUID

from hub.domain.calendar import WorkingCalendar
from hub.vocabulary import OPEN_STAGE_NAMES
from hub.vocabulary import STAGE_LIMIT_NAMES as STAGE_LIMIT_NAMES

CLOCKED_STAGES = OPEN_STAGE_NAMES
"""Open stages that have a time limit; the limit ends when the case leaves the stage."""
Clock = Literal["working", "calendar"]


class Deadlines(Protocol):
    """What a case needs to know about its SLA: when a stage entered now is due."""

    def due(self, stage: str, start: datetime) -> datetime | None:
        """The deadline of ``stage`` entered at ``start``; None when the stage has no limit."""

    def resume(self, stage: str, due: datetime, suspended_at: datetime, resumed_at: datetime) -> datetime:
        """The deadline after a suspension (挂起): the clock did not run while suspended."""


@dataclass(frozen=True, slots=True)
class SlaRule:
    """One entry of the SLA table; empty criteria match everything."""

    name: str
    hours: Mapping[str, float]
    """Stage → time limit in hours (working hours unless ``clock`` is calendar)."""
    department: str | None = None
    kind: str | None = None
    categories: tuple[str, ...] = ()
    """Category code prefixes (``"01"`` = every 市政公用设施 code, ``"01001"`` = exactly that code)."""
    priority: str | None = None
    clock: Clock = "working"

    def specificity(self, department: str, kind: str, category: str, priority: str) -> tuple[int, ...] | None:
        """None when the rule does not apply; otherwise larger = more specific."""
        if self.department is not None and self.department != department:
            return None
        if self.kind is not None and self.kind != kind:
            return None
        if self.priority is not None and self.priority != priority:
            return None
        prefix = 0
        if self.categories:
            matched = [len(p) for p in self.categories if category.startswith(p)]
            if not matched:
                return None
            prefix = max(matched)
        return (
            prefix,
            self.priority is not None,
            self.department is not None,
            self.kind is not None,
        )


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The SLA table and the calendar it counts working time in."""

    calendar: WorkingCalendar
    rules: tuple[SlaRule, ...] = field(default_factory=tuple)

    def rule_for(
        self, stage: str, *, department: str, kind: str, category: str, priority: str
    ) -> SlaRule | None:
        best: SlaRule | None = None
        best_score: tuple[int, ...] | None = None
        for rule in self.rules:
            if stage not in rule.hours:
                continue
            score = rule.specificity(department, kind, category, priority)
            if score is not None and (best_score is None or score > best_score):
                best, best_score = rule, score
        return best

    def for_case(self, *, department: str, kind: str, category: str, priority: str) -> CaseDeadlines:
        return CaseDeadlines(self, department, kind, category, priority)


class CaseDeadlines:
    """The SLA policy bound to one case's department, kind, category and priority.

    The matching rule of every stage is found once, on construction: the intake asks for a
    deadline on nearly every event, so the lookup must not scan the table each time.
    """

    __slots__ = ("category", "department", "kind", "limits", "policy", "priority", "rules")

    def __init__(self, policy: SlaPolicy, department: str, kind: str, category: str, priority: str) -> None:
        self.policy = policy
        self.department, self.kind, self.category, self.priority = department, kind, category, priority
        self.rules: dict[str, SlaRule | None] = {
            stage: policy.rule_for(
                stage, department=department, kind=kind, category=category, priority=priority
            )
            for stage in CLOCKED_STAGES
        }
        self.limits: dict[str, tuple[bool, timedelta, int]] = {}
        """Stage → (calendar clock?, limit, limit in µs): converted once, not per event."""
        for stage, rule in self.rules.items():
            if rule is not None:
                limit = timedelta(hours=rule.hours[stage])
                self.limits[stage] = (rule.clock == "calendar", limit, limit // timedelta(microseconds=1))

    def due(self, stage: str, start: datetime) -> datetime | None:
        limit = self.limits.get(stage)
        if limit is None:
            return None
        calendar_clock, duration, micros = limit
        if calendar_clock:
            return start + duration
        return self.policy.calendar.add_micros(start, micros)

    def resume(self, stage: str, due: datetime, suspended_at: datetime, resumed_at: datetime) -> datetime:
        if due <= suspended_at:  # already overdue when suspended: the breach stands
            return due
        rule = self.rules.get(stage)
        if rule is not None and rule.clock == "calendar":
            return resumed_at + (due - suspended_at)
        calendar = self.policy.calendar
        return calendar.add(resumed_at, calendar.between(suspended_at, due))


def breach_event_id(case_id: UUID, stage: str, due: datetime) -> str:
    """The id of the escalation (督办) for one breached deadline.

    Deterministic, so the deadline watcher can run any number of times, in any process, before or
    after a restart: the case's idempotent receiver records each breach once.
    """
    return f"sla:{case_id}:{stage}:{due.isoformat()}"
