"""The read-model port (读模型端口): what the API and the screen may ask of the read side.

Why a port: the GraphQL API must answer from projections in milliseconds without knowing that
they live in DuckDB (or, tomorrow, somewhere else). It depends on this Protocol and these row
types only; ``projections`` implements them and ``ops`` hands the implementation to the API. This
module therefore imports nothing from ``projections`` (import-linter enforces it) and nothing
heavier than the standard library (and ``hub.vocabulary``, itself standard library only), so the
API and its tests stay light.

Every method answers from one consistent snapshot of the read models. Times are timezone-aware
UTC. ``now`` parameters exist because "overdue" depends on the moment you look: the live screen
passes nothing (the current time), time travel passes the moment it reconstructs, tests pass a
fixed instant. Scopes select a node of the grid tree (any level: district, street, community,
grid) and/or a department (the department of origin or a responsible one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from hub.vocabulary import Level


@dataclass(frozen=True, slots=True)
class Scope:
    """Which part of the city a question is about; empty means the whole city."""

    grid: str | None = None  # a node of the grid tree (any level); matches every case below it
    department: str | None = None  # the department of origin or a responsible department


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window [since, until); ``None`` ends are open."""

    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One case as it stands now (or at the snapshot's moment); reporter PII is never here."""

    case_id: UUID
    source: str
    caseref: str
    kind: str
    origin_department: str
    category: str
    priority: str
    channel: str
    title: str
    grid: str | None
    grid_path: tuple[str, ...]
    lon: float | None
    lat: float | None
    address: str | None
    stage: str
    responsible_departments: tuple[str, ...]
    reported_at: datetime
    registered_at: datetime | None
    dispatched_at: datetime | None
    accepted_at: datetime | None
    handled_at: datetime | None
    verified_at: datetime | None
    closed_at: datetime | None
    finished_at: datetime | None  # closed, rejected or merged
    updated_at: datetime
    due: datetime | None  # deadline of the current stage (SLA, after extensions and suspensions)
    overdue: bool  # overran a stage deadline, or open and past ``due`` at the query's ``now`` (超期)
    overruns: int  # stage deadlines overrun on the way (finished stages only)
    breaches: int  # SLA-breach escalations raised by the deadline watcher
    returns: int
    reworks: int
    escalations: int
    escalation_level: int
    extended_until: datetime | None
    suspended_since: datetime | None
    satisfaction: int | None  # the citizen's score 1–5
    operator_score: int | None
    merged_into: UUID | None
    outcome: str | None
    last_position: int
    version: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """One domain event on a case's timeline, with the stage it left the case in."""

    position: int  # the event store's notification id (global order)
    case_id: UUID
    version: int
    type: str  # reported, registered, dispatched, …
    at: datetime  # event time given by the source
    recorded_at: datetime  # when the hub stored it
    actor: str
    department: str
    grid: str | None
    category: str | None
    stage_after: str
    note: str | None


@dataclass(frozen=True, slots=True)
class LinkRow:
    case_id: UUID
    relation: str  # referred_to, duplicate_of, parent_of, child_of
    target_id: UUID
    target_department: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class StageCount:
    stage: str
    cases: int


@dataclass(frozen=True, slots=True)
class IndicatorValue:
    """One governance indicator; ``version`` names the written definition that computed it."""

    key: str  # e.g. "closure_rate"
    name: str  # e.g. "结案率"
    version: int
    value: float | None  # None when the denominator is zero
    numerator: float | None
    denominator: float | None
    unit: str  # "cases", "ratio", "hours", "score"


@dataclass(frozen=True, slots=True)
class Board:
    """The one-screen overview (一屏统管) of a scope at a moment."""

    scope: Scope
    now: datetime
    position: int  # the last event reflected
    total_cases: int
    open_cases: int
    overdue_open: int
    escalated_open: int
    suspended_open: int
    by_stage: tuple[StageCount, ...]
    indicators: tuple[IndicatorValue, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class RollupRow:
    """Counts for one node of the grid tree, or one department."""

    key: str  # grid code or department name
    level: int  # grid tree depth (0 = district); 0 for departments
    total: int
    open: int
    overdue_open: int
    escalated_open: int
    closed: int


@dataclass(frozen=True, slots=True)
class HotspotRow:
    grid: str
    category: str
    cases: int


@dataclass(frozen=True, slots=True)
class Reporter:
    """个人信息 of a case's reporter: read only for roles allowed personal data (never exported)."""

    name: str | None
    phone: str | None
    id_number: str | None


@dataclass(frozen=True, slots=True)
class KeyCount:
    key: str
    cases: int


@dataclass(frozen=True, slots=True)
class OverviewTotals:
    """Window counts (reported/registered/closed by their event time in the window) and the
    current state of the scope's cases at ``now`` (open, overdue, escalated)."""

    reported: int
    registered: int
    open: int
    overdue: int
    escalated: int
    closed: int
    closed_on_time: int


@dataclass(frozen=True, slots=True)
class OverviewChild:
    grid: str
    totals: OverviewTotals


@dataclass(frozen=True, slots=True)
class Overview:
    """One screen (一屏统管) for a grid node and a window: totals, breakdowns and drill-down.

    Breakdowns count the scope's cases reported in the window (all cases without one); children
    are the scope node's direct sub-nodes in the grid tree (districts for the whole city)."""

    scope: Scope
    window: Window
    now: datetime
    position: int
    totals: OverviewTotals
    by_department: tuple[KeyCount, ...]
    by_stage: tuple[KeyCount, ...]
    by_category: tuple[KeyCount, ...]
    children: tuple[OverviewChild, ...]


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Extra filters of a case search (all optional, combined with AND)."""

    category: str | None = None
    overdue: bool | None = None
    escalated: bool | None = None
    since: datetime | None = None  # reported at or after
    until: datetime | None = None  # reported before
    text: str | None = None  # substring of title, caseref or address (case-insensitive)
    case_ids: tuple[UUID, ...] | None = None  # only these cases (one set-based lookup of many ids)


@dataclass(frozen=True, slots=True)
class CasePage:
    rows: tuple[CaseRow, ...]
    next_cursor: str | None  # pass back to get the next page; None at the end


class GridCellView(Protocol):
    """One node of the grid tree (网格) as the API names it: code, name, level and parent."""

    @property
    def code(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def level(self) -> Level: ...

    @property
    def parent(self) -> str | None: ...


class GridTreeView(Protocol):
    """The grid tree as the API reads it (the ``grids`` query, names of drill-down children).

    Why a Protocol: the API may not import the domain (design §3); the configured tree
    (``hub.domain.grid.GridTree``), which ``ops`` hands over, satisfies this without knowing it.
    """

    @property
    def cells(self) -> Mapping[str, GridCellView]: ...

    def children(self, code: str | None) -> list[str]:
        """Codes of the direct children; ``None`` gives the roots."""
        ...


@runtime_checkable
class ReadModels(Protocol):
    """The read side as the API sees it. Implementations must be safe to call from many threads."""

    def position(self) -> int:
        """The notification id of the last event reflected (0 when empty)."""
        ...

    def wait(self, position: int, timeout: float = 5.0) -> bool:
        """Block until ``position`` is reflected (read-your-writes after a mutation); False on timeout."""
        ...

    def case(self, case_id: UUID, now: datetime | None = None) -> CaseRow | None: ...

    def cases(
        self,
        scope: Scope = Scope(),
        stage: str | None = None,
        open_only: bool = False,
        limit: int = 50,
        cursor: str | None = None,
        now: datetime | None = None,
        where: CaseFilter | None = None,
    ) -> CasePage:
        """Cases newest first, with cursor pagination stable under concurrent inserts."""
        ...

    def overview(
        self, scope: Scope = Scope(), window: Window = Window(), now: datetime | None = None
    ) -> Overview:
        """The one-screen overview of a grid node (and optionally a department) in a window."""
        ...

    def reporter(self, case_id: UUID) -> Reporter | None:
        """The reporter's personal data; callers must check the reader may see it."""
        ...

    def event_position(self, case_id: UUID, event_id: str) -> int | None:
        """The position of the event with this source id on the case, once it is reflected."""
        ...

    def events_after(self, position: int, limit: int = 1000) -> Sequence[EventRow]:
        """Events after ``position`` in log order (a reconnecting subscriber's catch-up)."""
        ...

    def timeline(self, case_id: UUID) -> Sequence[EventRow]: ...

    def links(self, case_id: UUID) -> Sequence[LinkRow]:
        """Links in both directions (the case's own, and other cases that point at it)."""
        ...

    def board(
        self, scope: Scope = Scope(), now: datetime | None = None, window: Window | None = None
    ) -> Board: ...

    def rollup(
        self, by: str = "grid", level: int | None = None, scope: Scope = Scope(), now: datetime | None = None
    ) -> Sequence[RollupRow]:
        """Counts per grid-tree node (``by="grid"``, optionally one ``level``) or per department."""
        ...

    def overdue(
        self, scope: Scope = Scope(), now: datetime | None = None, limit: int = 100
    ) -> Sequence[CaseRow]:
        """Open cases past their deadline, most overdue first."""
        ...

    def escalated(
        self, scope: Scope = Scope(), now: datetime | None = None, limit: int = 100
    ) -> Sequence[CaseRow]:
        """Open cases under 督办, highest level first."""
        ...

    def hotspots(
        self, window: Window, scope: Scope = Scope(), level: int | None = None, limit: int = 20
    ) -> Sequence[HotspotRow]:
        """Grid × category with the most cases reported in the window (optionally at one grid level)."""
        ...

    def indicators(
        self, scope: Scope = Scope(), window: Window = Window(), now: datetime | None = None
    ) -> Sequence[IndicatorValue]: ...

    def as_of(self, *, position: int | None = None, time: datetime | None = None) -> ReadModels:
        """The same read models as they stood after ``position``, or at recorded ``time``."""
        ...


# ------------------------------------------------------------------ erasure (个人信息删除)
ERASED = "[erased]"
"""What a personal field reads as once its person's key was erased (crypto-shredding, privacy sealing)."""
ERASURE_TOPIC = "citybrain.privacy.erased.v1"
"""The stored event recording an erasure (``hub privacy erase``): the key ids, the cases they seal
and the sealed field paths. The projector follows it in log order and masks those cases' sealed
columns at once (no rebuild); it holds no personal data."""
