"""Builders of canonical events for tests (the same shape connectors produce)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hub import messages as m

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def event(
    caseref: str,
    action: m.Action | str,
    *,
    n: int = 0,
    department: str = "citymgmt",
    kind: str = "case",
    source: str = "citymgmt-dcm",
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    action = m.Action(action)
    return m.make_event(
        id=event_id or f"{source}:{caseref}:{action.value}:{n}",
        source=source,
        department=department,
        kind=kind,
        action=action,
        caseref=caseref,
        actor="supervisor:GW-0001",
        time=at or (T0 + timedelta(minutes=n)),
        data=data if data is not None else default_data(action),
        **extra,
    )


def default_data(action: m.Action) -> dict[str, Any]:
    return {
        m.Action.REPORTED: {
            "category": "01001",
            "title": "供水井盖破损",
            "priority": "normal",
            "channel": "grid_worker",
            "location": {"lon": 118.73, "lat": 32.0},
            "reporter": {"name": "张三", "phone": "13800000000"},
        },
        m.Action.DISPATCHED: {"departments": ["water"]},
        m.Action.ACCEPTED: {"department": "water"},
        m.Action.HANDLED: {"department": "water", "note": "已更换井盖"},
        m.Action.VERIFIED: {"passed": True},
        m.Action.CLOSED: {},
        m.Action.REGISTERED: {},
        m.Action.EVALUATED: {"score": 5},
    }.get(action, {})


LIFECYCLE = [
    m.Action.REPORTED,
    m.Action.REGISTERED,
    m.Action.DISPATCHED,
    m.Action.ACCEPTED,
    m.Action.HANDLED,
    m.Action.VERIFIED,
    m.Action.CLOSED,
]


def case_history(caseref: str, steps: int = len(LIFECYCLE), **kw: Any) -> list[dict[str, Any]]:
    """The first ``steps`` closed-loop events of one city-management case, in order."""
    return [event(caseref, action, n=i, **kw) for i, action in enumerate(LIFECYCLE[:steps])]
