# mypy: disable-error-code="untyped-decorator, misc"
"""GraphQL object types (the public contract's shapes) and their construction from view rows.

Why masking lives here: every path that turns a ``CaseRow``/``EventRow`` into a GraphQL object
(queries, as-of views, subscriptions) goes through :func:`case_of` / :func:`event_of` with the
caller, so a role without ``cases:read_personal`` can never receive reporter data or free-text
notes, whichever operation it uses.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from itertools import count
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.types import Info
from strawberry.types.nodes import SelectedField

from hub import vocabulary as v
from hub.api.gql import auth
from hub.api.gql.auth import Principal
from hub.api.gql.context import api, caller, run
from hub.views import CaseRow, EventRow, KeyCount, LinkRow, OverviewTotals, ReadModels

MASK = "***"

_requests = count(1)


def request_key() -> int:
    """A fresh key per request: the access log merges one request's records."""
    return next(_requests)


@strawberry.enum(description="案件阶段: where a case stands in the closed loop")
class Stage(Enum):
    REPORTED = "reported"
    REGISTERED = "registered"
    REJECTED = "rejected"
    MERGED = "merged"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    HANDLED = "handled"
    VERIFIED = "verified"
    CLOSED = "closed"
    EVALUATED = "evaluated"


@strawberry.enum(description="优先级")
class Priority(Enum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


@strawberry.enum(description="关联关系")
class Relation(Enum):
    REFERRED_TO = "referred_to"
    DUPLICATE_OF = "duplicate_of"
    PARENT_OF = "parent_of"
    CHILD_OF = "child_of"


@strawberry.type(description="报告人 (个人信息): masked unless the role holds cases:read_personal")
class Reporter:
    name: str | None
    phone: str | None
    masked: bool = strawberry.field(description="true when the values were withheld for this role")


@strawberry.type(description="A case's timeline entry (时间线)")
class TimelineEvent:
    position: int = strawberry.field(description="global position in the event log (notification id)")
    version: int
    type: str = strawberry.field(description="reported 上报, registered 立案, dispatched 派遣 …")
    at: datetime = strawberry.field(description="event time given by the source")
    recorded_at: datetime = strawberry.field(description="when the hub stored it")
    actor: str
    department: str
    stage_after: Stage
    note: str | None = strawberry.field(description="free text (masked without cases:read_personal)")


@strawberry.type(description="案件: one case as it stands (now, or at asOf)")
class Case:
    id: strawberry.ID
    source: str
    caseref: str = strawberry.field(description="the department's own case number (部门案件编号)")
    kind: str
    origin_department: str = strawberry.field(description="上报部门")
    responsible_departments: list[str] = strawberry.field(description="责任部门")
    category: str
    priority: Priority
    channel: str
    title: str
    grid: str | None = strawberry.field(description="网格编码")
    grid_path: list[str]
    lon: float | None
    lat: float | None
    address: str | None
    stage: Stage
    reported_at: datetime
    registered_at: datetime | None
    dispatched_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    due: datetime | None = strawberry.field(description="办理时限 of the current stage")
    overdue: bool = strawberry.field(description="超期")
    escalations: int = strawberry.field(description="督办次数")
    escalation_level: int
    returns: int
    reworks: int = strawberry.field(description="返工次数")
    satisfaction: int | None = strawberry.field(description="满意度 1–5")
    version: int = strawberry.field(description="pass as expectedVersion to a mutation")
    last_position: int
    allowed_actions: list[str] = strawberry.field(description="commands the stage allows next")
    _as_of: strawberry.Private[int | None]

    @strawberry.field(description="报告人 (masked unless the role holds cases:read_personal)")
    async def reporter(self, info: Info) -> Reporter | None:
        who = caller(info)
        if not who.can(auth.PERSONAL):
            return Reporter(name=None, phone=None, masked=True)  # nothing shown, nothing recorded
        found = await run(api(info).views.reporter, to_uuid(self.id))
        if found is None:
            return None
        shown = [f"reporter.{f}" for f in ("name", "phone") if f in selected(info) and getattr(found, f)]
        record_access(info, who, self.id, shown)
        return Reporter(name=found.name, phone=found.phone, masked=False)

    @strawberry.field(description="完整时间线: every event of the case, oldest first")
    async def timeline(self, info: Info) -> list[TimelineEvent]:
        who = caller(info)
        views = await _views(info, self._as_of)
        rows = await run(views.timeline, to_uuid(self.id))
        if who.can(auth.PERSONAL) and rows:
            record_access(info, who, self.id, timeline_fields(info, rows))
        return [event_of(r, who) for r in rows]

    @strawberry.field(description="关联案件 in other departments (both directions)")
    async def links(self, info: Info) -> list[CaseLink]:
        views = await _views(info, self._as_of)
        rows = await run(views.links, to_uuid(self.id))
        return [link_of(r, self._as_of) for r in rows]


@strawberry.type(description="A link to another case (警调对接, 诉调对接, 精神卫生 …)")
class CaseLink:
    relation: str
    target_id: strawberry.ID
    target_department: str | None
    at: datetime
    _as_of: strawberry.Private[int | None]

    @strawberry.field(description="the linked case, null when this role may not see it")
    async def target(self, info: Info) -> Case | None:
        who = caller(info)
        views = await _views(info, self._as_of)
        row = await run(views.case, to_uuid(self.target_id))
        if row is None or not who.can_see_case(row.origin_department, row.responsible_departments):
            return None
        return case_of(row, self._as_of)


@strawberry.type
class CaseEdge:
    cursor: str
    node: Case


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A page of cases, newest first (Relay connection)")
class CaseConnection:
    edges: list[CaseEdge]
    page_info: PageInfo
    position: int = strawberry.field(description="the projection position the page reflects")


@strawberry.type(description="Counts of the overview (window counts and current state)")
class Totals:
    reported: int = strawberry.field(description="上报数 in the window")
    registered: int = strawberry.field(description="立案数 in the window")
    open: int = strawberry.field(description="在办 (open now)")
    overdue: int = strawberry.field(description="超期 (open and past the deadline now)")
    escalated: int = strawberry.field(description="督办中 (open and escalated)")
    closed: int = strawberry.field(description="结案数 in the window")
    closed_on_time: int = strawberry.field(description="按期结案数 in the window")


@strawberry.type
class Count:
    key: str
    cases: int


@strawberry.type(description="A child node of the scope with its own totals (drill-down)")
class GridTotals:
    grid: str
    name: str | None
    level: str | None
    totals: Totals


@strawberry.type(description="治理指标 (versioned definitions: docs/indicators.md)")
class Indicator:
    key: str
    name: str
    version: int
    value: float | None
    numerator: float | None
    denominator: float | None
    unit: str


@strawberry.type(description="一屏统管: the overview of a grid node in a time window")
class Overview:
    scope_grid: str | None
    scope_department: str | None
    now: datetime
    position: int
    totals: Totals
    by_department: list[Count]
    by_stage: list[Count]
    by_category: list[Count]
    indicators: list[Indicator]
    children: list[GridTotals]


@strawberry.type(description="热点: grid × category with the most cases in the window")
class Hotspot:
    grid: str
    category: str
    cases: int


@strawberry.type(description="网格: a node of the grid tree")
class Grid:
    code: str
    name: str
    level: str
    parent: str | None


@strawberry.type(description="部门")
class Department:
    code: str
    name: str
    name_en: str
    kinds: list[str]


@strawberry.type(description="A change of a case, as delivered to subscribers")
class CaseChange:
    position: int = strawberry.field(description="pass as afterPosition when reconnecting")
    event: TimelineEvent
    case: Case | None


# ---------------------------------------------------------------------------------------- conversion
def to_uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        message = f"{value!r} is not a case id (UUID)"
        raise GraphQLError(message, extensions={"code": "BAD_USER_INPUT"}) from exc


async def _views(info: Info, as_of: int | None) -> ReadModels:
    return await api(info).rewound(None, as_of)


def case_of(row: CaseRow, as_of: int | None = None) -> Case:
    return Case(
        id=strawberry.ID(str(row.case_id)), source=row.source, caseref=row.caseref, kind=row.kind,
        origin_department=row.origin_department, responsible_departments=list(row.responsible_departments),
        category=row.category, priority=Priority(row.priority), channel=row.channel, title=row.title,
        grid=row.grid, grid_path=list(row.grid_path), lon=row.lon, lat=row.lat, address=row.address,
        stage=Stage(row.stage), reported_at=row.reported_at, registered_at=row.registered_at,
        dispatched_at=row.dispatched_at, closed_at=row.closed_at, updated_at=row.updated_at, due=row.due,
        overdue=row.overdue, escalations=row.escalations, escalation_level=row.escalation_level,
        returns=row.returns, reworks=row.reworks, satisfaction=row.satisfaction, version=row.version,
        last_position=row.last_position, allowed_actions=list(v.ALLOWED[v.Stage(row.stage)]),
        _as_of=as_of,
    )  # fmt: skip


def selected(info: Info, *path: str) -> set[str]:
    """The names of the sub-fields this field's selection asks for (through fragments too), or
    those under ``path`` (e.g. ``"event"`` for a subscription's ``event { … }``)."""
    names: set[str] = set()

    def walk(selections: list[Any], rest: tuple[str, ...]) -> None:
        for s in selections:
            if not isinstance(s, SelectedField):  # FragmentSpread, InlineFragment
                walk(s.selections, rest)
            elif not rest:
                names.add(s.name)
            elif s.name == rest[0]:
                walk(s.selections, rest[1:])

    for f in info.selected_fields:
        walk(f.selections, path)
    return names


def timeline_fields(info: Info, rows: Sequence[EventRow], *path: str) -> list[str]:
    """The personal fields of timeline entries that this selection shows (a note only when one exists)."""
    names = selected(info, *path)
    shown = ["timeline.actor"] if "actor" in names else []
    if "note" in names and any(r.note for r in rows):
        shown.append("timeline.note")
    return shown


def record_access(info: Info, who: Principal, case_id: object, fields: list[str]) -> None:
    """Put a read that revealed personal data on the access log (issue 15: only what was shown).

    The request's key makes every case of one request with the same fields one record.
    """
    record = api(info).record_access
    if record is None or not fields:
        return
    context = info.context
    request = context.get("access_request")
    if request is None:
        request = context["access_request"] = request_key()
    operation = info.operation.name.value if info.operation.name else ""
    record(who.role, to_uuid(case_id), fields, who.actor, operation, request)


def event_of(row: EventRow, who: Principal) -> TimelineEvent:
    personal = who.can(auth.PERSONAL)
    return TimelineEvent(
        position=row.position, version=row.version, type=row.type, at=row.at, recorded_at=row.recorded_at,
        actor=row.actor if personal else MASK, department=row.department,
        stage_after=Stage(row.stage_after), note=row.note if personal or row.note is None else MASK,
    )  # fmt: skip


def link_of(row: LinkRow, as_of: int | None) -> CaseLink:
    return CaseLink(
        relation=row.relation, target_id=strawberry.ID(str(row.target_id)),
        target_department=row.target_department, at=row.at, _as_of=as_of,
    )  # fmt: skip


def totals_of(t: OverviewTotals) -> Totals:
    return Totals(
        reported=t.reported, registered=t.registered, open=t.open, overdue=t.overdue,
        escalated=t.escalated, closed=t.closed, closed_on_time=t.closed_on_time,
    )  # fmt: skip


def counts_of(rows: tuple[KeyCount, ...]) -> list[Count]:
    return [Count(key=r.key, cases=r.cases) for r in rows]


def cursor_of(row: CaseRow) -> str:
    """The read model's keyset cursor for this row (reported_at, case id), opaque to clients."""
    return base64.urlsafe_b64encode(f"{row.reported_at.isoformat()}|{row.case_id}".encode()).decode()


CaseId = Annotated[strawberry.ID, strawberry.argument(description="the hub case id (UUID)")]
