"""Random but valid city histories for projection tests, and the domain's own fold as the oracle.

Why drive ``hub.domain.Case`` directly: every history is then valid by construction (the case
refuses what its stage does not allow) and the aggregate's state after the commands is an
independent pure-Python fold to compare the SQL read models with. Events are stored through the
ledger's own mapper and recorder, so the projector reads exactly what production stores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID, uuid5

from eventsourcing.application import Application

from hub.domain import Case, CaseRefused, DepartmentProgress

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NS = UUID("5f0e0e2a-8d4b-4d55-9d0e-6c8c2f7b1a11")
DEPTS = ("water", "power", "police", "citymgmt")
GRIDS = ("320105001001", "320105001002", "320105002001", "320106001001", None)
KINDS = ("case", "mediation", "fraud_warning")


class HoursSla:
    """A small calendar-hours SLA: each open stage is due a fixed number of hours after entry."""

    HOURS: ClassVar[dict[str, int]] = {
        "reported": 2,
        "registered": 4,
        "dispatched": 6,
        "accepted": 24,
        "handled": 8,
        "verified": 8,
    }

    def due(self, stage: str, start: datetime) -> datetime | None:
        hours = self.HOURS.get(stage)
        return start + timedelta(hours=hours) if hours else None

    def resume(self, stage: str, due: datetime, suspended_at: datetime, resumed_at: datetime) -> datetime:
        return due + (resumed_at - suspended_at)


@dataclass
class City:
    """A city's cases, the clock, and what the domain said after each stored event."""

    app: Application[UUID]
    rnd: random.Random
    cases: list[Case] = field(default_factory=list)
    now: datetime = T0
    n: int = 0
    stage_after: dict[int, str] = field(default_factory=dict)  # position → stage (the oracle)
    sla: HoursSla = field(default_factory=HoursSla)

    def kw(self, department: str = "command") -> dict[str, Any]:
        self.n += 1
        self.now += timedelta(minutes=self.rnd.choice((5, 30, 90, 240, 600)))
        return {"event_id": f"e{self.n}", "at": self.now, "actor": "op:1", "department": department}

    def report(self) -> Case:
        i = len(self.cases)
        case = Case.report(
            uuid5(NS, f"case-{i}"), **self.kw("citymgmt"), source="dcm", caseref=f"C{i}",
            kind=self.rnd.choice(KINDS), category=self.rnd.choice(("01001", "01002", "02001")),
            title="井盖破损", priority=self.rnd.choice(("urgent", "high", "normal", "low")),
            grid=self.rnd.choice(GRIDS), location={"lon": 118.7, "lat": 32.0, "address": "x"},
            reporter={"name": "张三", "phone": "13800000000", "id_number": None}, sla=self.sla,
        )  # fmt: skip
        self.cases.append(case)
        return case

    def step(self, case: Case) -> bool:
        """Apply one random allowed command to ``case``; False when nothing applied."""
        r = self.rnd
        allowed = list(case.allowed_commands())
        if not allowed:
            return False
        command = r.choice(allowed)
        parts = case.parts
        try:
            if command == "register":
                category, priority = r.choice((None, "01009")), r.choice((None, "high"))
                case.register(**self.kw(), category=category, priority=priority,
                              sla=self.sla)  # fmt: skip
            elif command == "reject":
                case.reject(**self.kw(), reason="不予立案")
            elif command == "merge":
                others = [c for c in self.cases if c.id != case.id]
                if not others or r.random() < 0.7:
                    return False
                case.merge(**self.kw(), primary_id=r.choice(others).id)
            elif command == "dispatch":
                new = [d for d in DEPTS if d not in parts]
                if not new:
                    return False
                case.dispatch(
                    **self.kw(), departments=r.sample(new, r.randint(1, min(2, len(new)))), sla=self.sla
                )
            elif command == "accept":
                ready = [d for d, p in parts.items() if p is DepartmentProgress.DISPATCHED]
                if not ready:
                    return False
                case.accept(**self.kw(r.choice(ready)), sla=self.sla)
            elif command == "return":
                ready = [
                    d
                    for d, p in parts.items()
                    if p in (DepartmentProgress.DISPATCHED, DepartmentProgress.ACCEPTED)
                ]
                if not ready or r.random() < 0.6:
                    return False
                case.return_(**self.kw(r.choice(ready)), reason="非本部门职责", sla=self.sla)
            elif command == "handle":
                ready = [d for d, p in parts.items() if p is DepartmentProgress.ACCEPTED]
                if not ready:
                    return False
                case.handle(**self.kw(r.choice(ready)), note="已处置", sla=self.sla)
            elif command == "verify":
                case.verify(**self.kw(), passed=r.random() < 0.7, sla=self.sla)
            elif command == "close":
                case.close(**self.kw())
            elif command == "evaluate":
                by = r.choice(("citizen", "operator"))
                case.evaluate(**self.kw(), score=r.randint(1, 5), by=by)
            elif command == "escalate":
                if r.random() < 0.5:
                    return False
                case.escalate(**self.kw(), reason="督办", level=r.randint(1, 3))
            elif command == "extend":
                if r.random() < 0.5:
                    return False
                kw = self.kw()
                case.extend(**kw, until=kw["at"] + timedelta(hours=r.choice((1, 48))), reason="延期")
            elif command == "suspend":
                if r.random() < 0.6:
                    return False
                case.suspend(**self.kw(), reason="挂起")
            elif command == "resume":
                case.resume(**self.kw(), sla=self.sla)
            elif command == "link":
                others = [
                    c for c in self.cases if c.id != case.id and not case.is_linked("duplicate_of", c.id)
                ]
                if not others or r.random() < 0.7:
                    return False
                case.link(
                    **self.kw(),
                    relation="duplicate_of",
                    target_id=r.choice(others).id,
                    target_department=None,
                )
            else:
                return False
        except CaseRefused:
            return False
        return True

    def save(self) -> list[int]:
        """Store every pending event (one transaction), remembering the stage after each one."""
        stored, stages = [], []
        for case in self.cases:
            pending = case.collect_events()
            if not pending:
                continue
            # The stage after each event: replay this case's events so far on a fresh copy.
            for event in pending:
                stored.append(self.app.mapper.to_stored_event(event))
                stages.append(_stage_after(self.app, case.id, event))
        ids = self.app.recorder.insert_events(stored) or []
        for position, stage in zip(ids, stages, strict=True):
            self.stage_after[position] = stage
        return list(ids)


_replays: dict[UUID, Any] = {}


def _stage_after(app: Application[UUID], case_id: UUID, event: Any) -> str:
    agg = _replays.get(case_id)
    agg = event.mutate(agg)
    _replays[case_id] = agg
    return str(agg.stage.value)


def random_city(app: Application[UUID], seed: int, n_cases: int, n_steps: int, saves: int = 5) -> City:
    """Report ``n_cases`` cases and take ``n_steps`` random steps, storing in ``saves`` transactions."""
    _replays.clear()
    city = City(app, random.Random(seed))
    every = max(1, (n_cases + n_steps) // max(1, saves))
    actions = 0
    for _ in range(n_cases):
        city.report()
        actions += 1
        if actions % every == 0:
            city.save()
    for _ in range(n_steps):
        if city.step(city.rnd.choice(city.cases)):
            actions += 1
            if actions % every == 0:
                city.save()
    city.save()
    return city


def oracle_case(case: Case) -> dict[str, Any]:
    """The columns of a ``cases`` row, as the domain's own fold has them."""
    return {
        "stage": case.stage.value,
        "responsible_departments": sorted(case.parts),
        "handled_departments": sorted(d for d, p in case.parts.items() if p is DepartmentProgress.HANDLED),
        "category": case.category,
        "priority": case.priority,
        "grid": case.grid,
        "reported_at": case.reported_at,
        "registered_at": case.registered_at,
        "dispatched_at": case.dispatched_at,
        "accepted_at": case.accepted_at,
        "handled_at": case.handled_at,
        "verified_at": case.verified_at,
        "closed_at": case.closed_at,
        "updated_at": case.updated_at,
        "returns": case.returns,
        "reworks": case.reworks,
        "escalations": case.escalations,
        "escalation_level": case.escalation_level,
        "extended_until": case.extended_until,
        "suspended_since": case.suspended_since,
        "satisfaction": case.scores.get("citizen"),
        "operator_score": case.scores.get("operator"),
        "merged_into": str(case.merged_into) if case.merged_into else None,
        "due": case.due,
        "breaches": case.breaches,
        "version": case.version,
    }
