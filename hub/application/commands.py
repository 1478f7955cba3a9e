"""One handler per closed-loop step (闭环环节): how a canonical event becomes a command on its case.

Why a table: thirteen of the fifteen actions are a method of ``Case`` taking the envelope's event
id, time, actor and department plus the payload's fields as they are; only a report (受理: a new
case, with its grid and deadlines), a merge and a link (which name another case) need more. The
policies an action implies (deadlines of a new stage, auto-dispatch by the 权责清单, a link's other
case, a concluded referral) come from :mod:`hub.application.policies`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from hub import messages as m
from hub.application.policies import CONCLUDED, ClosedLoopPolicies, common_args
from hub.domain import AUTO, Case, Stage


def _plain(method: Callable[..., None]) -> Callable[[Case, m.Valid, dict[str, Any]], None]:
    """A command whose arguments are the envelope's (event id, time, actor, department) and the
    payload's fields as they are; a payload field of the same name wins (accept/return/handle name
    the acting department in ``data``; the command centre may act for one). One dict is built per
    event: the decide path runs ≈ 40,000 times a second."""

    def command(case: Case, valid: m.Valid, kwargs: dict[str, Any]) -> None:
        kwargs.update(m.payload_dict(valid.payload))
        method(case, **kwargs)

    return command


# How each closed-loop action becomes a command on an existing case.
_COMMANDS: dict[m.Action, Callable[[Case, m.Valid, dict[str, Any]], None]] = {
    m.Action.REGISTERED: _plain(Case.register),
    m.Action.REJECTED: _plain(Case.reject),
    m.Action.MERGED: lambda c, v, k: c.merge(
        **k,
        primary_id=v.payload.primary.resolve(),  # type: ignore[attr-defined]
        note=v.payload.note,  # type: ignore[attr-defined]
    ),
    m.Action.DISPATCHED: _plain(Case.dispatch),
    m.Action.ACCEPTED: _plain(Case.accept),
    m.Action.RETURNED: _plain(Case.return_),
    m.Action.HANDLED: _plain(Case.handle),
    m.Action.VERIFIED: _plain(Case.verify),
    m.Action.CLOSED: _plain(Case.close),
    m.Action.EVALUATED: _plain(Case.evaluate),
    m.Action.ESCALATED: _plain(Case.escalate),
    m.Action.EXTENDED: _plain(Case.extend),
    m.Action.SUSPENDED: _plain(Case.suspend),
    m.Action.RESUMED: _plain(Case.resume),
    m.Action.LINKED: lambda c, v, k: c.link(
        **k,
        relation=v.payload.relation,  # type: ignore[attr-defined]
        target_id=v.payload.target.resolve(),  # type: ignore[attr-defined]
        target_department=v.payload.target_department,  # type: ignore[attr-defined]
        note=v.payload.note,  # type: ignore[attr-defined]
    ),
}
"""Departments act in their own name: accept/return/handle carry the acting department in ``data``
(the command centre may act for one); the envelope's department is who sent the event."""


_CLOCKED_ACTIONS = frozenset(
    {
        m.Action.REGISTERED,
        m.Action.DISPATCHED,
        m.Action.ACCEPTED,
        m.Action.RETURNED,
        m.Action.HANDLED,
        m.Action.VERIFIED,
        m.Action.RESUMED,
    }
)
"""Actions that may move a case into a new open stage, so the case needs its SLA deadlines."""


class CommandHandlers(ClosedLoopPolicies):
    """受理 (a report opens a case) and every later step as a command on its case."""

    def _report(self, valid: m.Valid, resolved_grid: str | None) -> Case:
        env, p = valid.envelope, valid.payload
        assert isinstance(p, m.Reported)
        self.domain.taxonomies.lookup(env.department, p.category)  # strict taxonomies refuse here
        return Case.report(
            env.case_id,
            **common_args(valid),
            source=env.source,
            caseref=env.caseref,
            kind=env.kind,
            category=p.category,
            title=p.title,
            description=p.description,
            priority=p.priority,
            channel=p.channel,
            grid=env.grid or resolved_grid,
            location=m.payload_dict(p.location) if p.location else None,
            reporter=m.payload_dict(p.reporter) if p.reporter else None,
            attachments=p.attachments,
            sla=self.deadlines_for(env.department, env.kind, p.category, p.priority),
        )

    def _authorise(self, case: Case, valid: m.Valid) -> None:
        """A department's event on an existing case: its identity, its right to this case, and the
        department it acts as (``data.department`` of 签收, 退回, 处置反馈). Raises NotPermitted."""
        env = valid.envelope
        self.authority.check_identity(env.department, env.actor, env.actorrole)
        acting_for = getattr(valid.payload, "department", None)
        self.authority.check_case(case, env.department, acting_for)

    def _command(
        self, case: Case, valid: m.Valid, action: m.Action, touched: dict[UUID, Case], trust_cache: bool
    ) -> None:
        """One closed-loop command on an existing case, with the policies and links it implies."""
        env, payload = valid.envelope, valid.payload
        kwargs: dict[str, Any] = {
            "event_id": env.id,
            "at": env.time,
            "actor": env.actor,
            "department": env.department,
        }
        before = case.stage
        if action in _CLOCKED_ACTIONS:
            category, priority = case.category, case.priority
            if action is m.Action.REGISTERED:
                assert isinstance(payload, m.Registered)
                if payload.category:
                    self.domain.taxonomies.lookup(case.origin_department, payload.category)
                category = payload.category or category
                priority = payload.priority or priority
            kwargs["sla"] = self.deadlines_for(case.origin_department, case.kind, category, priority)
        if action is m.Action.DISPATCHED and AUTO in payload.departments:  # type: ignore[attr-defined]
            assert isinstance(payload, m.Dispatched)
            named = [d for d in payload.departments if d != AUTO]
            routed = self.route(case)
            case.dispatch(**kwargs, departments=[*named, *routed], note=payload.note)
        elif action is m.Action.LINKED:
            self._link(case, valid, touched, trust_cache)
        else:
            _COMMANDS[action](case, valid, kwargs)
        after = case.stage
        if after is before:
            return
        if (
            action is m.Action.REGISTERED
            and after is Stage.REGISTERED
            and case.origin_department in self.domain.routing.auto_dispatch
        ):
            self._auto_dispatch(case, env)
        if after in CONCLUDED and before not in CONCLUDED:
            self._propagate_conclusion(case, env, touched, trust_cache)
