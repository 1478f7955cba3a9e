"""The closed loop's policies (闭环策略, issue 3): applied here, never inside the aggregate.

The case receives computed deadlines (SLA policy in working time), the grid a report's location
falls in (网格定位, through the :class:`~hub.application.ports.GridResolver` port), the departments
the responsibility list (权责清单) names, and cross-department links (关联: referrals, children)
open or link the other case in the same transaction; a concluded referral releases the cases that
wait for it. The case aggregate enforces its own rules; these decide what else follows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from hub import messages as m
from hub.application.cases import CaseStore
from hub.domain import CONCLUDED_STAGES, INVERSE, Case, Stage, Unroutable
from hub.domain.sla import CaseDeadlines

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:hub"

CONCLUDED = frozenset(s for s in Stage if s.value in CONCLUDED_STAGES)
"""``Case.is_concluded`` as a set of stages (the property reads the enum's value on every call)."""


def common_args(valid: m.Valid) -> dict[str, Any]:
    """A command's first arguments: the envelope's event id, time, actor and department."""
    env = valid.envelope
    return {"event_id": env.id, "at": env.time, "actor": env.actor, "department": env.department}


class ClosedLoopPolicies(CaseStore):
    """Deadlines, grids, routing, links and conclusion propagation, on top of the case store."""

    _deadlines: dict[tuple[str, str, str, str], CaseDeadlines]

    # ------------------------------------------------------------------ deadlines (时限)
    def deadlines_for(self, department: str, kind: str, category: str, priority: str) -> CaseDeadlines:
        """The SLA policy bound to one kind of case (memoised: the intake asks on most events)."""
        key = (department, kind, category, priority)
        deadlines = self._deadlines.get(key)
        if deadlines is None:
            deadlines = self.domain.sla.for_case(
                department=department, kind=kind, category=category, priority=priority
            )
            if len(self._deadlines) > 10_000:
                self._deadlines.clear()
            self._deadlines[key] = deadlines
        return deadlines

    def _case_deadlines(self, case: Case) -> CaseDeadlines:
        return self.deadlines_for(case.origin_department, case.kind, case.category, case.priority)

    # ------------------------------------------------------------------ grids and routing
    def _resolve_grids(self, items: Sequence[m.Valid]) -> dict[int, str | None]:
        """网格定位 for every report of the batch that has a location but no grid, in one query."""
        wanted = [
            (i, v.payload.location)
            for i, v in enumerate(items)
            if isinstance(v.payload, m.Reported)  # first: the cheapest test, false for 6 events in 7
            and v.envelope.grid is None
            and v.payload.location is not None
        ]
        if not wanted:
            return {}
        codes = self.domain.grids.resolve_many(
            [loc.lon for _, loc in wanted if loc], [loc.lat for _, loc in wanted if loc]
        )
        return {i: code for (i, _), code in zip(wanted, codes, strict=True)}

    def route(self, case: Case, category: str | None = None) -> tuple[str, ...]:
        """权责清单: the responsible departments of a case (raises Unroutable when none)."""
        code = category or case.category
        info = self.domain.taxonomies.lookup(case.origin_department, code)
        path = self.domain.grids.path(case.grid) if case.grid else ()
        return self.domain.routing.route(code, info, path).departments

    def _auto_dispatch(self, case: Case, env: m.Envelope) -> None:
        """Dispatch a just-registered case by the responsibility list (configured per origin department)."""
        try:
            departments = self.route(case)
        except Unroutable:
            if self.domain.routing.on_unroutable == "manual":
                log.info("case %s: no responsibility-list rule, waits for manual dispatch", case.id)
                return
            raise
        case.dispatch(
            event_id=f"{env.id}:route",
            at=env.time,
            actor=SYSTEM_ACTOR,
            department=m.COMMAND_DEPARTMENT,
            departments=departments,
            note="派遣 by the responsibility list (权责清单)",
            sla=self._case_deadlines(case),
        )

    # ------------------------------------------------------------------ links (关联) and referrals
    def _link(self, case: Case, valid: m.Valid, touched: dict[UUID, Case], trust_cache: bool) -> None:
        """关联: link this case, and open the target case (or link back to it) in the same batch."""
        env, p = valid.envelope, valid.payload
        assert isinstance(p, m.Linked)
        target_id = p.target.resolve()
        target = self._case_for(target_id, touched, trust_cache) if target_id != case.id else None
        if target is not None:
            self.authority.check_link_target(target, env.department)  # before this case changes
        if target is None and target_id != case.id:
            # Check everything needed to open it before changing this case.
            if not (p.target.source and p.target.caseref):
                raise ValueError(
                    f"target case {target_id} does not exist; name it by source and caseref to open it"
                )
            dept = self.domain.departments.get(p.target_department or "")
            if dept is None:
                raise ValueError(
                    f"target case {p.target.source}/{p.target.caseref} does not exist; "
                    f"target_department must name a configured department to open it "
                    f"(got {p.target_department!r})"
                )
            if env.department != m.COMMAND_DEPARTMENT:  # rule 6: not under another's source
                self.authority.check_source(p.target.source, dept.code, "data.target")
            kind = p.target_kind or dept.kinds[0]
            if kind not in dept.kinds:
                raise ValueError(
                    f"{dept.code} has no record kind {kind!r}; configured: {', '.join(dept.kinds)}"
                )
        case.link(
            **common_args(valid),
            relation=p.relation,
            target_id=target_id,
            target_department=p.target_department,
            note=p.note,
        )
        if target is None:
            assert p.target.source and p.target.caseref and p.target_department
            category = p.target_category or case.category
            kind = p.target_kind or self.domain.departments[p.target_department].kinds[0]
            target = Case.report(
                target_id,
                event_id=f"{env.id}:open",
                at=env.time,
                actor=env.actor,
                department=p.target_department,
                source=p.target.source,
                caseref=p.target.caseref,
                kind=kind,
                category=category,
                title=f"{case.title}（{p.relation} from {case.origin_department} {case.caseref}）",
                description=p.note,
                priority=case.priority,
                channel="referral",
                grid=case.grid,
                location=case.location,
                reporter=case.reporter,
                sla=self.deadlines_for(p.target_department, kind, category, case.priority),
            )
            touched[target_id] = target
        inverse = INVERSE[p.relation]
        if not target.is_linked(inverse, case.id) and "link" in target.allowed_commands():
            target.link(
                event_id=f"{env.id}:back",
                at=env.time,
                actor=env.actor,
                department=env.department,
                relation=inverse,
                target_id=case.id,
                target_department=case.origin_department,
                note=p.note,
            )
        if target.is_concluded and target_id in case.awaiting:
            case.conclude_link(
                event_id=f"link:{case.id}:{target_id}:concluded",
                at=env.time,
                actor=SYSTEM_ACTOR,
                department=m.COMMAND_DEPARTMENT,
                target_id=target_id,
                outcome=target.stage.value,
            )

    def _propagate_conclusion(
        self, case: Case, env: m.Envelope, touched: dict[UUID, Case], trust_cache: bool
    ) -> None:
        """A referral or child case concluded: release every case that waits for it (same transaction)."""
        for relation, other_id, _ in case.links:
            if relation not in ("referred_from", "child_of"):
                continue
            other = self._case_for(other_id, touched, trust_cache)
            event_id = f"link:{other_id}:{case.id}:concluded"
            if other is None or case.id not in other.awaiting or other.has_applied(event_id):
                continue
            other.conclude_link(
                event_id=event_id,
                at=env.time,
                actor=SYSTEM_ACTOR,
                department=m.COMMAND_DEPARTMENT,
                target_id=case.id,
                outcome=case.stage.value,
            )
