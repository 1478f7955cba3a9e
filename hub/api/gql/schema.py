# mypy: disable-error-code="untyped-decorator, misc"
"""The GraphQL schema of the command centre (指挥中心): queries, operator mutations, subscriptions.

The names here are the public contract (``graphql/schema.graphql`` is exported from this module
and a test fails when they drift). Resolvers are thin: permissions from the caller's role, the
scope a department is confined to, then one call to the read-model port (``hub.views``) in a
worker thread. Overview answers are cached per (scope, window, asOf, position): the position in
the key means a cached answer can never be stale.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.types import Info

from hub.api.gql import auth, commands, live
from hub.api.gql.auth import Principal
from hub.api.gql.commands import error, forbidden, require
from hub.api.gql.context import ApiContext, Limits, api, caller, run
from hub.api.gql.limits import CostLimiter, DocumentSizeLimiter, IntrospectionNeedsToken
from hub.api.gql.types import (
    Case,
    CaseChange,
    CaseConnection,
    CaseEdge,
    CaseId,
    Count,
    Department,
    Grid,
    GridTotals,
    Hotspot,
    Indicator,
    Overview,
    PageInfo,
    Priority,
    Relation,
    Stage,
    case_of,
    counts_of,
    cursor_of,
    event_of,
    record_access,
    timeline_fields,
    to_uuid,
    totals_of,
)
from hub.views import CaseFilter as ViewCaseFilter
from hub.views import CaseRow, ReadModels, Scope, Window


@strawberry.input(description="A half-open time window [since, until); open ends when omitted")
class WindowInput:
    since: datetime | None = None
    until: datetime | None = None


@strawberry.input(description="Which part of the city: a grid node (any level) and/or a department")
class ScopeInput:
    grid: str | None = strawberry.field(default=None, description="网格编码 of any level")
    department: str | None = strawberry.field(default=None, description="上报或责任部门")


@strawberry.input(description="案件筛选: every given condition must hold")
class CaseFilterInput:
    department: str | None = None
    stage: Stage | None = None
    category: str | None = None
    grid: str | None = strawberry.field(default=None, description="matches the whole subtree")
    overdue: bool | None = None
    escalated: bool | None = None
    open_only: bool = False
    since: datetime | None = strawberry.field(default=None, description="reported at or after")
    until: datetime | None = strawberry.field(default=None, description="reported before")
    text: str | None = strawberry.field(default=None, description="in title, caseref or address")


@strawberry.type(description="Drill-down indicators of one grid node")
class GridIndicators:
    grid: str | None
    name: str | None
    indicators: list[Indicator]


def _window(w: WindowInput | None) -> Window:
    return Window(w.since, w.until) if w is not None else Window()


def _scope(who: Principal, grid: str | None, department: str | None) -> Scope:
    """A department role is confined to its own cases: its scope is forced to its department."""
    if who.department is not None:
        if department not in (None, who.department):
            raise forbidden(who, auth.ALL_CASES, f"reading {department}'s cases")
        department = who.department
    return Scope(grid=grid, department=department)


async def _views(info: Info, who: Principal, as_of: datetime | None, as_of_position: int | None, *,
                 cases: bool) -> ReadModels:  # fmt: skip
    """The live read models, or a rewind (时间回溯) the caller may have.

    Roles without ``history:read`` (screen, operator) may rewind the overview only, at most
    ``limits.rewinds_per_minute`` times per token; case rows and timelines of the past need
    ``history:read`` (auditor, analyst, a department on its own cases). The snapshot is shared per
    position and built by the read side's low-priority builder, awaited (``ApiContext.rewound``),
    never on the event loop.
    """
    ctx = api(info)
    if as_of is None and as_of_position is None:
        return ctx.views
    if cases:
        require(who, auth.HISTORY, "asOf on cases")
    if not who.can(auth.HISTORY):
        wait = ctx.rewinds.take((who.role, who.actor))
        if wait is not None:
            per = ctx.limits.rewinds_per_minute
            _too_many(info, math.ceil(wait))
            raise error(
                "RATE_LIMITED",
                f"role {who.role} may rewind (asOf) {per} times a minute; retry in {math.ceil(wait)} s "
                f"(history:read roles are not limited)",
                retry_after_s=math.ceil(wait), limit_per_minute=per,
            )  # fmt: skip
    return await ctx.rewound(as_of, as_of_position)


def _too_many(info: Info, retry_after_s: int) -> None:
    """HTTP 429 with Retry-After for a refused rewind (WebSocket answers carry the error alone)."""
    response = info.context.get("response")
    if response is not None and hasattr(response, "status_code") and hasattr(response, "headers"):
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after_s)


def _indicators(rows: object) -> list[Indicator]:
    return [
        Indicator(key=i.key, name=i.name, version=i.version, value=i.value, numerator=i.numerator,
                  denominator=i.denominator, unit=i.unit)
        for i in rows  # type: ignore[attr-defined]
    ]  # fmt: skip


async def _overview(ctx: ApiContext, views: ReadModels, scope: Scope, window: Window) -> Overview:
    def compute() -> Overview:
        o = views.overview(scope, window)
        inds = views.indicators(scope, window, o.now)
        grids = ctx.grids
        children = []
        for c in o.children:
            cell = grids.cells.get(c.grid) if grids is not None else None
            name, level = (cell.name, cell.level.value) if cell else (None, None)
            children.append(GridTotals(grid=c.grid, name=name, level=level, totals=totals_of(c.totals)))
        return Overview(
            scope_grid=scope.grid, scope_department=scope.department, now=o.now, position=o.position,
            totals=totals_of(o.totals), by_department=counts_of(o.by_department),
            by_stage=counts_of(o.by_stage), by_category=counts_of(o.by_category),
            indicators=_indicators(inds), children=children,
        )  # fmt: skip

    # per (position, scope): a rewind's answer is shared by every caller at that position (and
    # minute of its asOf, which sets "now" for overdue counts), never stale
    when = getattr(views, "fixed_now", None)
    past = views is not ctx.views
    key = ("overview", past, views.position(), when.replace(second=0, microsecond=0) if when else None,
           scope, window)  # fmt: skip
    return await run(ctx.cached, key, compute)


def _visible(who: Principal, row: CaseRow) -> bool:
    return who.can_see_case(row.origin_department, row.responsible_departments)


@strawberry.type(description="查询")
class Query:
    @strawberry.field(description="一屏统管: totals, breakdowns, indicators and drill-down of a grid node")
    async def overview(
        self, info: Info, scope: ScopeInput | None = None, window: WindowInput | None = None,
        as_of: datetime | None = None, as_of_position: int | None = None,
    ) -> Overview:  # fmt: skip
        who = caller(info)
        require(who, auth.AGGREGATES, "overview")
        s = _scope(who, scope.grid if scope else None, scope.department if scope else None)
        views = await _views(info, who, as_of, as_of_position, cases=False)
        return await _overview(api(info), views, s, _window(window))

    @strawberry.field(description="案件列表: newest first, cursor pagination (first ≤ 200)")
    async def cases(
        self, info: Info, filter: CaseFilterInput | None = None, first: int = 20, after: str | None = None,
        as_of: datetime | None = None, as_of_position: int | None = None,
    ) -> CaseConnection:  # fmt: skip
        who = caller(info)
        require(who, auth.CASES, "cases")
        max_page = api(info).limits.max_page
        if not 0 < first <= max_page:
            raise error("PAGE_TOO_LARGE", f"first must be between 1 and {max_page}", max=max_page)
        f = filter or CaseFilterInput()
        scope = _scope(who, f.grid, f.department)
        views = await _views(info, who, as_of, as_of_position, cases=True)
        where = ViewCaseFilter(category=f.category, overdue=f.overdue, escalated=f.escalated,
                               since=f.since, until=f.until, text=f.text)  # fmt: skip

        def fetch() -> tuple[object, int]:
            return views.cases(scope, f.stage.value if f.stage else None, f.open_only, first, after,
                               None, where), views.position()  # fmt: skip

        page, position = await run(fetch)
        rows = page.rows  # type: ignore[attr-defined]
        snap = as_of_position if as_of_position is not None else (position if as_of is not None else None)
        edges = [CaseEdge(cursor=cursor_of(r), node=case_of(r, snap)) for r in rows]
        return CaseConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.next_cursor is not None,  # type: ignore[attr-defined]
                               end_cursor=edges[-1].cursor if edges else None),
            position=position,
        )  # fmt: skip

    @strawberry.field(description="案件详情: current state (or at asOf), timeline and linked cases")
    async def case(
        self, info: Info, id: CaseId, as_of: datetime | None = None, as_of_position: int | None = None
    ) -> Case | None:
        who = caller(info)
        require(who, auth.CASES, "case")
        views = await _views(info, who, as_of, as_of_position, cases=True)
        row = await run(views.case, to_uuid(id))
        if row is None:
            return None
        if not _visible(who, row):
            raise forbidden(who, auth.ALL_CASES, f"reading case {row.caseref!r} of {row.origin_department}")
        snap = None if views is api(info).views else views.position()
        return case_of(row, snap)

    @strawberry.field(description="治理指标 per grid node of a level (districts by default)")
    async def indicators(
        self, info: Info, level: str | None = None, window: WindowInput | None = None,
        department: str | None = None,
    ) -> list[GridIndicators]:  # fmt: skip
        who = caller(info)
        require(who, auth.AGGREGATES, "indicators")
        ctx, w = api(info), _window(window)
        cells: list[tuple[str | None, str | None]] = [(None, "全市")]
        if level is not None:
            if ctx.grids is None:
                raise error("BAD_USER_INPUT", "no grid tree is configured")
            cells = sorted((c.code, c.name) for c in ctx.grids.cells.values() if c.level.value == level)
            if not cells:
                raise error("BAD_USER_INPUT", f"no grid cells at level {level!r}", field="level")
        out = []
        for code, name in cells:
            scope = _scope(who, code, department)
            rows = await run(ctx.views.indicators, scope, w)
            out.append(GridIndicators(grid=code, name=name, indicators=_indicators(rows)))
        return out

    @strawberry.field(description="热点: grid × category with the most cases in the window")
    async def hotspots(
        self, info: Info, scope: ScopeInput | None = None, window: WindowInput | None = None, limit: int = 20
    ) -> list[Hotspot]:
        who = caller(info)
        require(who, auth.AGGREGATES, "hotspots")
        s = _scope(who, scope.grid if scope else None, scope.department if scope else None)
        rows = await run(api(info).views.hotspots, _window(window), s, None, min(max(limit, 1), 200))
        return [Hotspot(grid=r.grid, category=r.category, cases=r.cases) for r in rows]

    @strawberry.field(description="网格: the children of a grid node (the districts without parent)")
    async def grids(self, info: Info, parent: str | None = None) -> list[Grid]:
        require(caller(info), auth.AGGREGATES, "grids")
        tree = api(info).grids
        if tree is None:
            return []
        cells = [tree.cells[c] for c in tree.children(parent)]
        return [Grid(code=c.code, name=c.name, level=c.level.value, parent=c.parent) for c in cells]

    @strawberry.field(description="部门: the configured departments")
    async def departments(self, info: Info) -> list[Department]:
        require(caller(info), auth.AGGREGATES, "departments")
        return [
            Department(code=d.code, name=d.name, name_en=d.name_en, kinds=list(d.kinds))
            for d in api(info).departments.values()
        ]


async def _act(info: Info, command: str, id: str, data: Mapping[str, object], expected: int | None) -> Case:
    ctx, who = api(info), caller(info)
    clean = {k: v for k, v in data.items() if v is not None}
    row = await commands.perform(ctx, who, command, to_uuid(id), clean, expected)
    return case_of(row)


Version = Annotated[
    int | None, strawberry.argument(description="refuse with STALE unless the case is at this version")
]


@strawberry.type(description="操作 (operator actions): answered once the projection reflects them")
class Mutation:
    @strawberry.mutation(description="立案")
    async def register(
        self, info: Info, id: CaseId, note: str | None = None, category: str | None = None,
        priority: Priority | None = None, expected_version: Version = None,
    ) -> Case:  # fmt: skip
        data = {"note": note, "category": category, "priority": priority.value if priority else None}
        return await _act(info, "register", id, data, expected_version)

    @strawberry.mutation(description="不予立案")
    async def reject(self, info: Info, id: CaseId, reason: str, expected_version: Version = None) -> Case:
        return await _act(info, "reject", id, {"reason": reason}, expected_version)

    @strawberry.mutation(description="派遣 to one or more responsible departments")
    async def dispatch(
        self, info: Info, id: CaseId, departments: list[str], note: str | None = None,
        expected_version: Version = None,
    ) -> Case:  # fmt: skip
        return await _act(info, "dispatch", id, {"departments": departments, "note": note}, expected_version)

    @strawberry.mutation(name="return", description="退回 on behalf of a responsible department")
    async def return_(
        self, info: Info, id: CaseId, department: str, reason: str, expected_version: Version = None
    ) -> Case:
        return await _act(info, "return", id, {"department": department, "reason": reason}, expected_version)

    @strawberry.mutation(description="核查: passed=false sends the case back (返工)")
    async def verify(
        self, info: Info, id: CaseId, passed: bool, note: str | None = None, expected_version: Version = None
    ) -> Case:
        return await _act(info, "verify", id, {"passed": passed, "note": note}, expected_version)

    @strawberry.mutation(description="结案")
    async def close(
        self, info: Info, id: CaseId, note: str | None = None, expected_version: Version = None
    ) -> Case:
        return await _act(info, "close", id, {"note": note}, expected_version)

    @strawberry.mutation(description="督办")
    async def escalate(
        self, info: Info, id: CaseId, reason: str, level: int = 1, expected_version: Version = None
    ) -> Case:
        return await _act(info, "escalate", id, {"reason": reason, "level": level}, expected_version)

    @strawberry.mutation(description="延期: a new deadline for the current stage")
    async def extend(
        self, info: Info, id: CaseId, until: datetime, reason: str, expected_version: Version = None
    ) -> Case:
        data = {"until": until.isoformat(), "reason": reason}
        return await _act(info, "extend", id, data, expected_version)

    @strawberry.mutation(description="评价 by an operator (1–5)")
    async def evaluate(
        self, info: Info, id: CaseId, score: int, note: str | None = None, expected_version: Version = None
    ) -> Case:
        data = {"score": score, "note": note, "by": "operator"}
        return await _act(info, "evaluate", id, data, expected_version)

    @strawberry.mutation(description="关联 to a case in another department (opened by the hub if needed)")
    async def link(
        self, info: Info, id: CaseId, relation: Relation, target_id: strawberry.ID | None = None,
        target_source: str | None = None, target_caseref: str | None = None,
        target_department: str | None = None, note: str | None = None, expected_version: Version = None,
    ) -> Case:  # fmt: skip
        target = {"caseid": str(to_uuid(target_id)) if target_id else None, "source": target_source,
                  "caseref": target_caseref}  # fmt: skip
        data = {
            "relation": relation.value, "target": {k: v for k, v in target.items() if v is not None},
            "target_department": target_department, "note": note,
        }  # fmt: skip
        return await _act(info, "link", id, data, expected_version)


def _matches(row: CaseRow | None, f: CaseFilterInput | None, scope: Scope) -> bool:
    if row is None:
        return False
    if (
        scope.department
        and scope.department != row.origin_department
        and (scope.department not in row.responsible_departments)
    ):
        return False
    if scope.grid and scope.grid not in row.grid_path:
        return False
    if f is None:
        return True
    return not (
        (f.stage is not None and row.stage != f.stage.value)
        or (f.category is not None and row.category != f.category)
        or (f.overdue is not None and row.overdue != f.overdue)
        or (f.escalated is not None and (row.escalations > 0) != f.escalated)
        or (f.text is not None and f.text.lower() not in f"{row.title} {row.caseref} {row.address}".lower())
    )


@strawberry.type(description="订阅 over graphql-transport-ws, fed by NATS after each projection commit")
class Subscription:
    @strawberry.subscription(description="案件变化: one message per event; resume with afterPosition")
    async def case_changed(
        self, info: Info, filter: CaseFilterInput | None = None, after_position: int | None = None
    ) -> AsyncGenerator[CaseChange, None]:
        who = caller(info)
        require(who, auth.CASES, "caseChanged")
        ctx = api(info)
        scope = _scope(who, filter.grid if filter else None, filter.department if filter else None)
        feed = live.notices(ctx)
        try:
            last = after_position if after_position is not None else ctx.views.position()
            upto = None
            while True:
                async for ev in live.events_since(ctx, last, upto):
                    last = ev.position
                    row = await run(ctx.views.case, ev.case_id)
                    if row is not None and _visible(who, row) and _matches(row, filter, scope):
                        if who.can(auth.PERSONAL):
                            record_access(info, who, ev.case_id, timeline_fields(info, [ev], "event"))
                        yield CaseChange(position=ev.position, event=event_of(ev, who), case=case_of(row))
                upto = await feed.__anext__()
        finally:
            await feed.aclose()

    @strawberry.subscription(description="一屏统管 changes: a new overview when the counts change")
    async def overview_changed(
        self, info: Info, scope: ScopeInput | None = None, window: WindowInput | None = None
    ) -> AsyncGenerator[Overview, None]:
        who = caller(info)
        require(who, auth.AGGREGATES, "overviewChanged")
        ctx = api(info)
        s = _scope(who, scope.grid if scope else None, scope.department if scope else None)
        feed = live.notices(ctx)
        previous = None
        try:
            while True:
                current = await _overview(ctx, ctx.views, s, _window(window))
                signature = (current.totals, [(c.key, c.cases) for c in current.by_stage])
                if signature != previous:
                    previous = signature
                    yield current
                await feed.__anext__()
        finally:
            await feed.aclose()


def build_schema(limits: Limits | None = None) -> strawberry.Schema:
    """The schema with its limits; extensions are factories (instances are deprecated in 0.341)."""
    lim = limits or Limits()
    cost = type("HubCostLimiter", (CostLimiter,), {"limits": lim})
    size = type("HubDocumentSizeLimiter", (DocumentSizeLimiter,), {"limits": lim})
    return strawberry.Schema(
        query=Query, mutation=Mutation, subscription=Subscription,
        extensions=[
            size,  # first: a document over the size limit is never parsed
            IntrospectionNeedsToken,
            lambda: QueryDepthLimiter(max_depth=lim.max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=lim.max_aliases),
            lambda: MaxTokensLimiter(max_token_count=lim.max_tokens),
            cost,
        ],
    )  # fmt: skip


schema = build_schema()
"""The default schema (the one exported to graphql/schema.graphql)."""

__all__ = ["Count", "GraphQLError", "Query", "build_schema", "schema", "uuid"]
