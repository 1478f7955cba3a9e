"""The closed-loop case (案件闭环): one aggregate for every department's case.

Stages follow the national digital urban-management workflow, generalised across departments::

    reported ─► registered ─► dispatched ─► accepted ─► handled ─► verified ─► closed ─► evaluated
     上报          立案           派遣          签收         处置反馈      核查          结案       评价
       │             │              ▲  │                     │
       └► rejected   └► merged      │  └ returned 退回        └► rework 返工 (核查不通过 → accepted again)
          不予立案       合并         └── (all departments returned → registered, awaiting re-dispatch)
    any open stage: escalated 督办 · extended 延期 · suspended 挂起 / resumed 恢复 · linked 关联

Deadlines (办理时限): a command that moves the case into a new open stage asks the SLA policy it is
given (:class:`hub.domain.sla.Deadlines`) when that stage is due, and records the answer in the
event (``due``), so replay never consults the policy. Suspension pauses the clock (the deadline is
moved on resume), an extension (延期) replaces the deadline, and the deadline watcher turns a
breach into an ``Escalated`` event carrying the breached stage and deadline.

Links (关联): a case may wait for the cases it referred work to (``referred_to``, e.g. 警调对接 to
court mediation) or split work into (``parent_of``, e.g. a 心理危机 report opening 综治 and 精神卫生
cases). It cannot close until each of them has concluded (``LinkConcluded``).

Why one aggregate per case: every command is decided against the case's own history, so a case is
the consistency boundary; cross-department work (联合处置, 警调对接) is several responsible
departments on one case, or links between cases, never a transaction spanning cases.

The vocabulary around the aggregate has modules of its own: each department's progress and the
stage it derives (:mod:`hub.domain.progress`), the stage table (:mod:`hub.domain.stages`) and the
refusals (:mod:`hub.domain.refusals`). Here stay the case, its events and how they are built.

Events are past-tense classes nested in the aggregate with explicit, versioned topics, so the
stored history survives renames of this module. Every event carries the source's ``event_id``
(idempotent receiver: an id already applied is skipped), the event time ``at`` given by the
source (never arrival time, so history can be imported) and the ``actor``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, CanMutateAggregate

from hub.domain.progress import DepartmentProgress, stage_of
from hub.domain.refusals import AlreadyDone, CaseRefused
from hub.domain.sla import Deadlines
from hub.domain.stages import ALLOWED, ALLOWED_WHILE_SUSPENDED, OPEN_STAGES
from hub.vocabulary import CONCLUDED_STAGES as CONCLUDED_STAGES
from hub.vocabulary import INVERSE as INVERSE
from hub.vocabulary import PRIORITIES as PRIORITIES
from hub.vocabulary import RELATIONS as RELATIONS
from hub.vocabulary import WAITING_RELATIONS as WAITING_RELATIONS
from hub.vocabulary import Stage as Stage


class Case(Aggregate):
    """案件: a department's case moving through the hub's closed loop."""

    TOPIC = "citybrain.case"

    class Event(Aggregate.Event):
        """Common to every case event: who did it, when (source time) and under which event id."""

        TOPIC = "citybrain.case.event"
        event_id: str
        at: datetime
        actor: str
        department: str

        def apply(self, aggregate: Any) -> None:
            case: Case = aggregate
            case.applied.add(self.event_id)
            case.updated_at = self.at
            self.update(case)

        def update(self, case: Case) -> None:
            """The event's effect on state; runs both when triggered and when replayed."""

    # ------------------------------------------------------------------ events (past tense)
    class Reported(Aggregate.Created, Event):
        TOPIC = "citybrain.case.reported.v1"
        source: str
        caseref: str
        kind: str
        category: str
        title: str
        description: str
        priority: str
        channel: str
        grid: str | None
        location: dict[str, Any] | None
        reporter: dict[str, Any] | None
        attachments: list[str]
        due: datetime | None

    class Registered(Event):
        TOPIC = "citybrain.case.registered.v1"
        category: str | None
        priority: str | None
        note: str
        due: datetime | None

        def update(self, case: Case) -> None:
            case.due = self.due
            case.stage = Stage.REGISTERED
            case.registered_at = self.at
            if self.category:
                case.category = self.category
            if self.priority:
                case.priority = self.priority

    class Rejected(Event):
        TOPIC = "citybrain.case.rejected.v1"
        reason: str

        def update(self, case: Case) -> None:
            case.due = None
            case.stage = Stage.REJECTED
            case.finished_reason = self.reason

    class Merged(Event):
        TOPIC = "citybrain.case.merged.v1"
        primary_id: UUID
        note: str

        def update(self, case: Case) -> None:
            case.due = None
            case.stage = Stage.MERGED
            case.merged_into = self.primary_id

    class Dispatched(Event):
        TOPIC = "citybrain.case.dispatched.v1"
        departments: list[str]
        note: str
        due: datetime | None

        def update(self, case: Case) -> None:
            case.due = self.due
            for dept in self.departments:
                case.parts.setdefault(dept, DepartmentProgress.DISPATCHED)
            case.involved.update(self.departments)
            case.dispatched_at = case.dispatched_at or self.at
            case._derive_stage()

    class Accepted(Event):
        TOPIC = "citybrain.case.accepted.v1"
        note: str
        due: datetime | None

        def update(self, case: Case) -> None:
            case.due = self.due
            case.parts[self.department] = DepartmentProgress.ACCEPTED
            case.accepted_at = case.accepted_at or self.at
            case._derive_stage()

    class Returned(Event):
        TOPIC = "citybrain.case.returned.v1"
        reason: str
        due: datetime | None

        def update(self, case: Case) -> None:
            case.due = self.due
            del case.parts[self.department]
            case.returns += 1
            case._derive_stage()

    class Handled(Event):
        TOPIC = "citybrain.case.handled.v1"
        note: str
        attachments: list[str]
        due: datetime | None

        def update(self, case: Case) -> None:
            case.due = self.due
            case.parts[self.department] = DepartmentProgress.HANDLED
            case._derive_stage()
            if case.stage is Stage.HANDLED:
                case.handled_at = self.at

    class Verified(Event):
        TOPIC = "citybrain.case.verified.v1"
        passed: bool
        note: str
        due: datetime | None

        def update(self, case: Case) -> None:
            case.due = self.due
            if self.passed:
                case.stage = Stage.VERIFIED
                case.verified_at = self.at
            else:  # 返工: every responsible department has to handle it again
                case.reworks += 1
                for dept in case.parts:
                    case.parts[dept] = DepartmentProgress.ACCEPTED
                case.stage = Stage.ACCEPTED

    class Closed(Event):
        TOPIC = "citybrain.case.closed.v1"
        note: str

        def update(self, case: Case) -> None:
            case.due = None
            case.stage = Stage.CLOSED
            case.closed_at = self.at

    class Evaluated(Event):
        TOPIC = "citybrain.case.evaluated.v1"
        score: int
        by: str
        note: str

        def update(self, case: Case) -> None:
            case.stage = Stage.EVALUATED
            case.scores[self.by] = self.score

    class Escalated(Event):
        TOPIC = "citybrain.case.escalated.v1"
        level: int
        reason: str
        stage: str | None
        """For an SLA breach: the stage whose deadline passed (None for an operator's 督办)."""
        deadline: datetime | None
        """For an SLA breach: the deadline that passed; the event time ``at`` is that moment."""

        def update(self, case: Case) -> None:
            case.escalation_level = max(case.escalation_level, self.level)
            case.escalations += 1
            if self.deadline is not None:
                case.breaches += 1
                case.last_breach = (self.stage, self.deadline)

    class Extended(Event):
        TOPIC = "citybrain.case.extended.v1"
        until: datetime
        reason: str

        def update(self, case: Case) -> None:
            case.extended_until = self.until
            case.due = self.until

    class Suspended(Event):
        TOPIC = "citybrain.case.suspended.v1"
        reason: str

        def update(self, case: Case) -> None:
            case.suspended_since = self.at

    class Resumed(Event):
        TOPIC = "citybrain.case.resumed.v1"
        note: str
        due: datetime | None

        def update(self, case: Case) -> None:
            case.suspended_since = None
            case.due = self.due

    class Linked(Event):
        TOPIC = "citybrain.case.linked.v1"
        relation: str
        target_id: UUID
        target_department: str | None
        note: str

        def update(self, case: Case) -> None:
            case.links.append((self.relation, self.target_id, self.target_department))
            if self.target_department:
                case.involved.add(self.target_department)
            if self.relation in WAITING_RELATIONS:
                case.awaiting[self.target_id] = self.relation

    class LinkConcluded(Event):
        """A case this one waits for (referral, child) has concluded: closed, rejected or merged."""

        TOPIC = "citybrain.case.link_concluded.v1"
        target_id: UUID
        outcome: str

        def update(self, case: Case) -> None:
            case.awaiting.pop(self.target_id, None)
            case.concluded_links[self.target_id] = self.outcome

    # ------------------------------------------------------------------ state
    def __init__(
        self,
        *,
        event_id: str,
        at: datetime,
        actor: str,
        department: str,
        source: str,
        caseref: str,
        kind: str,
        category: str,
        title: str,
        description: str,
        priority: str,
        channel: str,
        grid: str | None,
        location: dict[str, Any] | None,
        reporter: dict[str, Any] | None,
        attachments: list[str],
        due: datetime | None,
    ) -> None:
        self.applied: set[str] = {event_id}
        self.source, self.caseref, self.kind = source, caseref, kind
        self.origin_department = department
        self.category, self.priority, self.channel = category, priority, channel
        self.title, self.description = title, description
        self.grid, self.location, self.reporter = grid, location, reporter
        self.attachments = list(attachments)
        self.reported_by = actor
        self.stage = Stage.REPORTED
        self.reported_at: datetime = at
        self.updated_at: datetime = at
        self.registered_at: datetime | None = None
        self.dispatched_at: datetime | None = None
        self.accepted_at: datetime | None = None
        self.handled_at: datetime | None = None
        self.verified_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.parts: dict[str, DepartmentProgress] = {}
        """Each responsible department's progress (部门处置进度), in the order they were dispatched.
        Named ``parts`` because stored snapshots of the case may hold it: renamed, they would not load."""
        self.involved: set[str] = set()
        """Every department the case was ever dispatched (派遣), referred (转介) or linked (关联) to:
        besides its origin department, the ones that may act on it (:mod:`hub.domain.authority`).
        Kept when a department returns the case (退回): it was dispatched, its late records still
        concern this case. Derived from the events, so replay rebuilds it."""
        self.returns = 0
        self.reworks = 0
        self.escalations = 0
        self.escalation_level = 0
        self.extended_until: datetime | None = None
        self.suspended_since: datetime | None = None
        self.scores: dict[str, int] = {}
        self.links: list[tuple[str, UUID, str | None]] = []
        self.awaiting: dict[UUID, str] = {}
        """Linked cases that must conclude before this one may close (target id → relation)."""
        self.concluded_links: dict[UUID, str] = {}
        self.due: datetime | None = due
        """Deadline of the current stage (SLA); None when the stage has no limit or is finished."""
        self.breaches = 0
        self.last_breach: tuple[str | None, datetime] | None = None
        """The stage and deadline of the last SLA breach escalated (督办), so a repeat is a no-op."""
        self.merged_into: UUID | None = None
        self.finished_reason: str | None = None

    # ------------------------------------------------------------------ triggering
    @classmethod
    def _create(cls, event_class: type[Any], *, id: Any = None, **kwargs: Any) -> Case:
        """Open a case with its ``Reported`` event: what the library's ``_create`` does (and its
        ``Created.mutate`` on replay), for this class only, without its per-call signature
        filtering and dataclass construction (≈ 13 of the ≈ 20 µs a report cost the intake).

        The event is built by :func:`_new_event` and the case initialised with the event's own
        fields, so event and case equal the library's (tests/unit/test_case_trigger.py). Any other
        event class, or a missing id, takes the library's own path.
        """
        if event_class is not cls.Reported or not isinstance(id, UUID):
            return super()._create(event_class, id=id, **kwargs)
        event = _new_event(event_class, id, cls.INITIAL_VERSION, {**kwargs, "originator_topic": cls.TOPIC})
        state = event.__dict__
        case = cls.__new__(cls)
        case.__base_init__(id, cls.INITIAL_VERSION, state["timestamp"])
        case.__init__(**{name: state[name] for name in _FIELDS[event_class][1:]})  # type: ignore[misc]
        event.apply(case)
        case._pending_events.append(event)
        return case

    def trigger_event(self, event_class: type[CanMutateAggregate[UUID]], **kwargs: Any) -> None:
        """Build the next event, apply it and keep it pending: what ``Aggregate.trigger_event``
        does, for the events of this class only, at a third of the cost.

        Why: the intake decides tens of thousands of events a second on one core (ADR 0002), and
        the generic path checked the event's topic in the registry on every call, copied the
        arguments, and built the frozen dataclass one ``object.__setattr__`` per field (≈ 3.5 of
        the ≈ 17 µs a decided event cost). Here the event is built by :func:`_new_event`, and
        ``mutate``'s id and version checks are unnecessary because the event is made from them.
        """
        event = _new_event(event_class, self._id, self._version + 1, kwargs)
        state = event.__dict__
        event.apply(self)
        self._version = state["originator_version"]
        self._modified_on = state["timestamp"]
        self._pending_events.append(event)

    # ------------------------------------------------------------------ queries
    @property
    def is_open(self) -> bool:
        return self.stage in OPEN_STAGES

    @property
    def is_suspended(self) -> bool:
        return self.suspended_since is not None

    def has_applied(self, event_id: str) -> bool:
        return event_id in self.applied

    def concerns(self, department: str) -> bool:
        """Is ``department`` the case's origin (it reported or was opened for it) or one it was
        dispatched, referred or linked to? Only those may act on the case (数据权限)."""
        return department == self.origin_department or department in self.involved

    def allowed_commands(self) -> tuple[str, ...]:
        if self.is_suspended:
            return ALLOWED_WHILE_SUSPENDED
        return ALLOWED[self.stage]

    def _derive_stage(self) -> None:
        """Derive the case stage from its responsible departments' progress (联合处置): after every
        event that changes one department's progress (派遣, 签收, 退回, 处置反馈)."""
        self.stage = stage_of(self.parts)

    def _due(
        self, stage: Stage, at: datetime, sla: Deadlines | None, *, restart: bool = False
    ) -> datetime | None:
        """The deadline to record for ``stage`` entered at ``at``: kept when the stage is unchanged."""
        if stage not in OPEN_STAGES:
            return None
        if stage is self.stage and not restart:
            return self.due
        return sla.due(stage, at) if sla is not None else None  # a StrEnum is its value (no lookup)

    @property
    def is_concluded(self) -> bool:
        return self.stage in CONCLUDED_STAGES  # StrEnum members hash and compare as their values

    def is_overdue(self, now: datetime) -> bool:
        """Open, not suspended, with a deadline before ``now`` (event time of the watcher's run)."""
        return self.is_open and not self.is_suspended and self.due is not None and self.due < now

    # ------------------------------------------------------------------ commands
    @classmethod
    def report(
        cls,
        case_id: UUID,
        *,
        event_id: str,
        at: datetime,
        actor: str,
        department: str,
        source: str,
        caseref: str,
        kind: str,
        category: str,
        title: str,
        description: str = "",
        priority: str = "normal",
        channel: str = "system",
        grid: str | None = None,
        location: dict[str, Any] | None = None,
        reporter: dict[str, Any] | None = None,
        attachments: Iterable[str] = (),
        sla: Deadlines | None = None,
    ) -> Case:
        """上报: open a new case; ``sla`` gives the 立案 deadline."""
        if priority not in PRIORITIES:
            raise CaseRefused("report", None, f"priority {priority!r} is not one of {PRIORITIES}")
        return cls._create(
            cls.Reported,
            id=case_id,
            event_id=event_id,
            at=at,
            actor=actor,
            department=department,
            source=source,
            caseref=caseref,
            kind=kind,
            category=category,
            title=title,
            description=description,
            priority=priority,
            channel=channel,
            grid=grid,
            location=location,
            reporter=reporter,
            attachments=list(attachments),
            due=sla.due(Stage.REPORTED.value, at) if sla is not None else None,
        )

    def _done(self, command: str, why: str) -> AlreadyDone:
        """The refusal of a step the case has already taken (acknowledged as a duplicate)."""
        return AlreadyDone(command, self, why)

    def _guard(self, command: str) -> None:
        if command not in self.allowed_commands():
            why = "it is suspended (挂起)" if self.is_suspended else "not allowed now"
            raise CaseRefused(command, self, why)

    def register(
        self, *, event_id: str, at: datetime, actor: str, department: str,
        category: str | None = None, priority: str | None = None, note: str = "",
        sla: Deadlines | None = None,
    ) -> None:  # fmt: skip
        """立案 (``sla`` should reflect a corrected category or priority)."""
        if self.registered_at is not None:
            raise self._done("register", "it was already registered (立案)")
        self._guard("register")
        if priority is not None and priority not in PRIORITIES:
            raise CaseRefused("register", self, f"priority {priority!r} is not one of {PRIORITIES}")
        self.trigger_event(
            self.Registered, event_id=event_id, at=at, actor=actor, department=department,
            category=category, priority=priority, note=note, due=self._due(Stage.REGISTERED, at, sla),
        )  # fmt: skip

    def reject(self, *, event_id: str, at: datetime, actor: str, department: str, reason: str) -> None:
        """不予立案 (with the reason, which the reporter is told)."""
        if self.stage is Stage.REJECTED:
            raise self._done("reject", "it was already rejected (不予立案)")
        self._guard("reject")
        self.trigger_event(
            self.Rejected, event_id=event_id, at=at, actor=actor, department=department, reason=reason
        )

    def merge(
        self, *, event_id: str, at: datetime, actor: str, department: str, primary_id: UUID, note: str = ""
    ) -> None:
        """合并: this case is a duplicate of ``primary_id`` and ends here."""
        if self.stage is Stage.MERGED and self.merged_into == primary_id:
            raise self._done("merge", f"it was already merged into {primary_id}")
        self._guard("merge")
        if primary_id == self.id:
            raise CaseRefused("merge", self, "a case cannot be merged into itself")
        self.trigger_event(
            self.Merged, event_id=event_id, at=at, actor=actor, department=department,
            primary_id=primary_id, note=note,
        )  # fmt: skip

    def dispatch(
        self, *, event_id: str, at: datetime, actor: str, department: str,
        departments: Iterable[str], note: str = "", sla: Deadlines | None = None,
    ) -> None:  # fmt: skip
        """派遣 to one or more responsible departments (several = 联合处置).

        Naming only departments that are already responsible is the same step reported again (the
        operator dispatched, then the department's own system reports its dispatch): already done.
        """
        named = list(dict.fromkeys(departments))
        new = [d for d in named if d not in self.parts]
        if named and not new:
            raise self._done("dispatch", "every named department is already responsible")
        self._guard("dispatch")
        if not new:
            raise CaseRefused("dispatch", self, "no department named")
        after = stage_of({**self.parts, **dict.fromkeys(new, DepartmentProgress.DISPATCHED)})
        self.trigger_event(
            self.Dispatched, event_id=event_id, at=at, actor=actor, department=department,
            departments=new, note=note, due=self._due(after, at, sla),
        )  # fmt: skip

    def _guard_progress(
        self,
        command: str,
        department: str,
        allowed: tuple[DepartmentProgress, ...],
        done: tuple[DepartmentProgress, ...] = (),
    ) -> None:
        """The department's own progress allows ``command``; progress already in ``done`` means the
        step was taken already (reported again, e.g. by the operator and by the department)."""
        progress = self.parts.get(department)
        if progress is not None and progress in done:
            raise self._done(command, f"{department} has already {progress.value} it")
        self._guard(command)
        if progress is None:
            responsible = ", ".join(self.parts) or "none"
            raise CaseRefused(command, self, f"{department} is not responsible (responsible: {responsible})")
        if progress not in allowed:
            if progress is DepartmentProgress.DISPATCHED:
                raise CaseRefused(command, self, f"{department} has not accepted it (签收) yet")
            raise CaseRefused(command, self, f"{department} has already {progress.value} it")

    def accept(
        self, *, event_id: str, at: datetime, actor: str, department: str, note: str = "",
        sla: Deadlines | None = None,
    ) -> None:  # fmt: skip
        """签收 by a responsible department."""
        self._guard_progress(
            "accept",
            department,
            (DepartmentProgress.DISPATCHED,),
            done=(DepartmentProgress.ACCEPTED, DepartmentProgress.HANDLED),
        )
        after = stage_of({**self.parts, department: DepartmentProgress.ACCEPTED})
        self.trigger_event(
            self.Accepted, event_id=event_id, at=at, actor=actor, department=department, note=note,
            due=self._due(after, at, sla),
        )  # fmt: skip

    def return_(
        self, *, event_id: str, at: datetime, actor: str, department: str, reason: str,
        sla: Deadlines | None = None,
    ) -> None:  # fmt: skip
        """退回: the department says the case is not its responsibility; the centre re-dispatches."""
        self._guard_progress(
            "return", department, (DepartmentProgress.DISPATCHED, DepartmentProgress.ACCEPTED)
        )
        after = stage_of({d: p for d, p in self.parts.items() if d != department})
        self.trigger_event(
            self.Returned, event_id=event_id, at=at, actor=actor, department=department, reason=reason,
            due=self._due(after, at, sla),
        )  # fmt: skip

    def handle(
        self, *, event_id: str, at: datetime, actor: str, department: str,
        note: str = "", attachments: Iterable[str] = (), sla: Deadlines | None = None,
    ) -> None:  # fmt: skip
        """处置反馈 from a responsible department that has signed for the case."""
        self._guard_progress(
            "handle", department, (DepartmentProgress.ACCEPTED,), done=(DepartmentProgress.HANDLED,)
        )
        after = stage_of({**self.parts, department: DepartmentProgress.HANDLED})
        self.trigger_event(
            self.Handled, event_id=event_id, at=at, actor=actor, department=department,
            note=note, attachments=list(attachments), due=self._due(after, at, sla),
        )  # fmt: skip

    def verify(
        self, *, event_id: str, at: datetime, actor: str, department: str, passed: bool, note: str = "",
        sla: Deadlines | None = None,
    ) -> None:  # fmt: skip
        """核查: passed → closable; failed → 返工, back to the responsible departments (new 处置时限)."""
        if passed and self.stage in (Stage.VERIFIED, Stage.CLOSED, Stage.EVALUATED):
            raise self._done("verify", "it was already verified (核查通过)")
        self._guard("verify")
        after = Stage.VERIFIED if passed else Stage.ACCEPTED
        self.trigger_event(
            self.Verified, event_id=event_id, at=at, actor=actor, department=department,
            passed=passed, note=note, due=self._due(after, at, sla, restart=True),
        )  # fmt: skip

    def close(self, *, event_id: str, at: datetime, actor: str, department: str, note: str = "") -> None:
        """结案 after a passed verification, once every referral and child case has concluded."""
        if self.stage in (Stage.CLOSED, Stage.EVALUATED):
            raise self._done("close", "it is already closed (结案)")
        self._guard("close")
        if self.awaiting:
            waiting = ", ".join(f"{rel} {target}" for target, rel in self.awaiting.items())
            raise CaseRefused("close", self, f"it waits for linked cases to conclude ({waiting})")
        self.trigger_event(
            self.Closed, event_id=event_id, at=at, actor=actor, department=department, note=note
        )

    def evaluate(
        self, *, event_id: str, at: datetime, actor: str, department: str,
        score: int, by: str = "citizen", note: str = "",
    ) -> None:  # fmt: skip
        """评价: satisfaction 1–5, once by the citizen and once by an operator (the same score again
        is the same evaluation reported twice; another score contradicts the first and is refused)."""
        if self.scores.get(by) == score:
            raise self._done("evaluate", f"already evaluated by {by} with score {score}")
        self._guard("evaluate")
        if not 1 <= score <= 5:
            raise CaseRefused("evaluate", self, f"score {score} is outside 1–5")
        if by in self.scores:
            raise CaseRefused("evaluate", self, f"already evaluated by {by}")
        self.trigger_event(
            self.Evaluated, event_id=event_id, at=at, actor=actor, department=department,
            score=score, by=by, note=note,
        )  # fmt: skip

    def escalate(
        self, *, event_id: str, at: datetime, actor: str, department: str, reason: str, level: int = 1,
        stage: str | None = None, deadline: datetime | None = None,
    ) -> None:  # fmt: skip
        """督办: by an operator, or by the SLA watcher when a deadline is breached.

        A breach names the stage and deadline it is about. It is recorded once, while that deadline
        is the case's current one; a breach of a deadline the case has meanwhile left (it moved on,
        was closed, extended or suspended: typical when the watcher ran while the case's later
        steps were still on the way, during a catch-up or a back-fill) or one already escalated is
        :class:`AlreadyDone`, never a record needing attention.
        """
        if not 1 <= level <= 5:
            raise CaseRefused("escalate", self, f"level {level} is outside 1–5")
        if (stage is None) != (deadline is None):
            raise CaseRefused("escalate", self, "an SLA breach names both the stage and the deadline")
        if deadline is not None:
            self._check_breach(stage, deadline)
        self._guard("escalate")
        self.trigger_event(
            self.Escalated, event_id=event_id, at=at, actor=actor, department=department,
            level=level, reason=reason, stage=stage, deadline=deadline,
        )  # fmt: skip

    def _check_breach(self, stage: str | None, deadline: datetime) -> None:
        """Raise AlreadyDone unless the breach of ``stage`` at ``deadline`` is current and new."""
        if self.last_breach == (stage, deadline):
            raise self._done("escalate", f"the {stage} deadline {deadline.isoformat()} was already escalated")
        if self.is_suspended or not self.is_open or stage != self.stage.value or deadline != self.due:
            due = self.due.isoformat() if self.due else "none"
            raise self._done(
                "escalate",
                f"the {stage} deadline {deadline.isoformat()} is not current (current deadline: {due}): "
                f"the case has moved on since",
            )

    def extend(
        self, *, event_id: str, at: datetime, actor: str, department: str, until: datetime, reason: str
    ) -> None:
        """延期: a new deadline for the current stage."""
        self._guard("extend")
        if until <= at:
            raise CaseRefused(
                "extend", self, f"the new deadline {until.isoformat()} is not after {at.isoformat()}"
            )
        self.trigger_event(
            self.Extended, event_id=event_id, at=at, actor=actor, department=department,
            until=until, reason=reason,
        )  # fmt: skip

    def suspend(self, *, event_id: str, at: datetime, actor: str, department: str, reason: str) -> None:
        """挂起: the SLA clock pauses; no progress until resumed."""
        if self.is_suspended:
            raise self._done("suspend", "it is already suspended (挂起)")
        self._guard("suspend")
        self.trigger_event(
            self.Suspended, event_id=event_id, at=at, actor=actor, department=department, reason=reason
        )

    def resume(
        self, *, event_id: str, at: datetime, actor: str, department: str, note: str = "",
        sla: Deadlines | None = None,
    ) -> None:  # fmt: skip
        """恢复 a suspended case; the deadline moves on by the working time spent suspended."""
        if not self.is_suspended:
            raise CaseRefused("resume", self, "it is not suspended")
        assert self.suspended_since is not None
        if at < self.suspended_since:
            raise CaseRefused("resume", self, f"resumed at {at.isoformat()}, before it was suspended")
        due = self.due
        if due is not None and sla is not None and self.is_open:
            due = sla.resume(self.stage.value, due, self.suspended_since, at)
        self.trigger_event(
            self.Resumed, event_id=event_id, at=at, actor=actor, department=department, note=note, due=due
        )

    def link(
        self, *, event_id: str, at: datetime, actor: str, department: str, relation: str,
        target_id: UUID, target_department: str | None = None, note: str = "",
    ) -> None:  # fmt: skip
        """关联 to a case in another department (referral 转介, duplicate, parent/child)."""
        if self.is_linked(relation, target_id):
            raise self._done("link", f"already {relation} {target_id}")
        self._guard("link")
        if relation not in RELATIONS:
            raise CaseRefused("link", self, f"relation {relation!r} is not one of {RELATIONS}")
        if target_id == self.id:
            raise CaseRefused("link", self, "a case cannot be linked to itself")
        self.trigger_event(
            self.Linked, event_id=event_id, at=at, actor=actor, department=department,
            relation=relation, target_id=target_id, target_department=target_department, note=note,
        )  # fmt: skip

    def is_linked(self, relation: str, target_id: UUID) -> bool:
        return any(r == relation and t == target_id for r, t, _ in self.links)

    def conclude_link(
        self, *, event_id: str, at: datetime, actor: str, department: str, target_id: UUID, outcome: str
    ) -> None:
        """A referral or child case concluded; raised by the hub, not by a department."""
        if target_id not in self.awaiting:
            raise CaseRefused("conclude_link", self, f"it does not wait for case {target_id}")
        if outcome not in CONCLUDED_STAGES:
            raise CaseRefused("conclude_link", self, f"{outcome!r} is not a conclusion")
        self.trigger_event(
            self.LinkConcluded, event_id=event_id, at=at, actor=actor, department=department,
            target_id=target_id, outcome=outcome,
        )  # fmt: skip


_FIELDS: dict[type, tuple[str, ...]] = {}
"""Per event class: its own fields in declaration order (after id, version and timestamp)."""
_COMMON = ("originator_id", "originator_version", "timestamp")


def _new_event(event_class: type[Any], originator_id: UUID, version: int, kwargs: dict[str, Any]) -> Any:
    """A case event as its dataclass constructor builds it, without the constructor's per-field
    ``object.__setattr__``: the ``__dict__`` filled in field order, so it equals, and transcodes
    exactly like, the constructor's (tests/unit/test_case_trigger.py). The topic is checked once per
    class (:func:`_fields_of`); a missing or unexpected argument is a TypeError, as it is there."""
    names = _FIELDS.get(event_class) or _fields_of(event_class)
    event = object.__new__(event_class)
    state = event.__dict__
    state["originator_id"] = originator_id
    state["originator_version"] = version
    state["timestamp"] = kwargs.get("timestamp") or event_class.create_timestamp()
    try:
        for name in names:
            state[name] = kwargs[name]
    except KeyError as missing:
        raise TypeError(f"Can't construct event {event_class}: missing argument {missing}") from None
    if len(kwargs) > len(names) + ("timestamp" in kwargs):
        unknown = sorted(set(kwargs) - set(names) - {"timestamp"})
        raise TypeError(f"Can't construct event {event_class}: unexpected arguments {unknown}")
    return event


def _fields_of(event_class: type) -> tuple[str, ...]:
    """The fields :func:`_new_event` fills, once per class, after the library's own check
    that the class is a concrete event with a registered topic (a ProgrammingError otherwise)."""
    from eventsourcing.domain import _check_explicit_topic_is_registered

    if event_class.__name__ == "Event" or not issubclass(event_class, Case.Event):
        raise TypeError(f"{event_class} is not a concrete event of a case")
    _check_explicit_topic_is_registered(event_class)
    names = tuple(f.name for f in dataclasses.fields(event_class) if f.name not in _COMMON)
    _FIELDS[event_class] = names
    return names
