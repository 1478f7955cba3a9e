"""``hub.views.ReadModels`` on DuckDB: the queries the screen, the API and auditors run.

Why plain SQL over the tables rather than stored views for the API: "overdue" depends on the
moment (``now``), which the live screen, time travel and tests each choose, so every query takes
``$now`` as a parameter. The same SQL runs against the live tables or against an as-of snapshot,
whose TEMP tables shadow ``events``/``cases``/``case_links`` on its own cursor (temp objects are
resolved first), so time travel reuses every query and never writes to the live file.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import duckdb
import pyarrow as pa

from hub.views import (
    Board,
    CaseFilter,
    CasePage,
    CaseRow,
    EventRow,
    HotspotRow,
    IndicatorValue,
    KeyCount,
    LinkRow,
    Overview,
    OverviewChild,
    OverviewTotals,
    ReadModels,
    Reporter,
    RollupRow,
    Scope,
    StageCount,
    Window,
)
from hub.vocabulary import OPEN_STAGE_NAMES
from projections.derive import PART_TYPES, case_rows_statement, derive_statements
from projections.indicators import INDICATORS

_PART_INPUT = ", ".join(f"'{t}'" for t in (*PART_TYPES, "verified"))
"""Event types the part stream reads (``derive_statements``: part events and failed verifications)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_END = datetime(9999, 12, 31, tzinfo=UTC)
_OPEN = ", ".join(f"'{s}'" for s in OPEN_STAGE_NAMES)

SCOPED_CASES = f"""
WITH c AS (
  SELECT *, stage IN ({_OPEN}) AS is_open,
         (stage IN ({_OPEN}) AND suspended_since IS NULL AND due IS NOT NULL AND due < $now) AS overdue_now,
         (overruns > 0 OR (stage IN ({_OPEN}) AND suspended_since IS NULL AND due IS NOT NULL AND due < $now))
           AS overdue_ever
    FROM cases
   WHERE ($grid::VARCHAR IS NULL OR list_contains(grid_path, $grid::VARCHAR))
     AND ($dept::VARCHAR IS NULL OR origin_department = $dept::VARCHAR
          OR list_contains(responsible_departments, $dept::VARCHAR))
)
"""
"""The scoped cases with the query-time flags; every query below starts from it."""

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_CASE_FIELDS = tuple(f.name for f in fields(CaseRow))
_EVENT_FIELDS = tuple(f.name for f in fields(EventRow))


def _rows(table: pa.Table, cls: type[T], renames: dict[str, str] | None = None) -> list[T]:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    out: list[T] = []
    for rec in table.to_pylist():
        if renames:
            for src, dst in renames.items():
                rec[dst] = rec.pop(src)
        for key in ("case_id", "target_id", "merged_into"):
            if key in rec and isinstance(rec[key], str):
                rec[key] = UUID(rec[key])
        for key, value in rec.items():
            if isinstance(value, list):
                rec[key] = tuple(value)
        out.append(cls(**{k: v for k, v in rec.items() if k in names}))
    return out


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _consistent(method: F) -> F:
    """Run a multi-query answer inside one read snapshot (see ``DuckDBReadModels._snapshot``)."""

    @functools.wraps(method)
    def wrapper(self: DuckDBReadModels, *args: Any, **kwargs: Any) -> Any:
        with self._snapshot():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class DuckDBReadModels(ReadModels):
    """Queries over a DuckDB database; thread-safe (a cursor per thread, or one locked snapshot)."""

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        position: Callable[[], int],
        *,
        shared_cursor: bool = False,
        fixed_now: datetime | None = None,
        generation: Callable[[], int] | None = None,
        reading: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._cursor_factory = cursor
        self._position = position
        self._generation = generation or (lambda: 0)
        """The store's connection generation: a thread's cursor of an older one is replaced
        (the file was compacted and reopened after an erasure, ``ReadModelStore.compact``)."""
        self._reading = reading or nullcontext
        self._shared = shared_cursor
        self._lock = threading.Lock()
        self._local = threading.local()
        self.fixed_now = fixed_now  # a snapshot's own moment: the default ``now`` of its queries
        self.rewinds: RewindCache | None = None  # the shared as-of snapshots (``rewind``), once asked for

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _cur(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._shared:
            with self._lock:
                yield self._cursor_factory()
            return
        with self._reading():  # the file is not rewritten while this cursor is in use
            yield self._thread_cursor()

    def _thread_cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        generation = self._generation()
        if (
            cur is not None
            and getattr(self._local, "generation", generation) != generation
            and not getattr(self._local, "in_snapshot", False)  # never swap inside a transaction
        ):
            with suppress(duckdb.Error):
                cur.close()
            cur = None
        if cur is None:
            cur = self._local.cur = self._cursor_factory()
            self._local.generation = generation
        return cur

    def arrow(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> pa.Table:
        """Run SQL on this snapshot and return Arrow (the documented entry for data teams)."""
        with self._cur() as cur:
            return cur.sql(sql, params=params).to_arrow_table()

    def _scoped(self, sql: str, scope: Scope, now: datetime | None, **extra: Any) -> pa.Table:
        params = {"grid": scope.grid, "dept": scope.department, "now": self._when(now), **extra}
        used = {k: v for k, v in params.items() if f"${k}" in SCOPED_CASES + sql}
        with self._cur() as cur:
            return cur.sql(SCOPED_CASES + sql, params=used).to_arrow_table()

    def _when(self, now: datetime | None) -> datetime:
        return now if now is not None else (self.fixed_now or datetime.now(UTC))

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One MVCC snapshot for several queries of one answer, position included (nested: no-op).

        Without it an answer's queries each see the writer's latest commit, so an overview could
        report position 40 with the cases of position 35 (found by the API-replicas test).
        """
        if self._shared or getattr(self._local, "in_snapshot", False):
            yield
            return
        with self._cur() as cur:
            cur.execute("BEGIN TRANSACTION")
            self._local.in_snapshot = True
            try:
                yield
            finally:
                self._local.in_snapshot = False
                cur.execute("ROLLBACK")  # read-only: nothing to keep

    # ------------------------------------------------------------------ ReadModels
    def position(self) -> int:
        if getattr(self._local, "in_snapshot", False):  # the position this snapshot reflects
            with self._cur() as cur:
                row = cur.execute("SELECT coalesce(max(notification_id), 0) FROM tracking").fetchone()
            return int(row[0]) if row else 0
        return self._position()

    def wait(self, position: int, timeout: float = 5.0) -> bool:
        deadline = _time.monotonic() + timeout
        delay = 0.01
        while self.position() < position:
            if _time.monotonic() >= deadline:
                return False
            _time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return True

    def case(self, case_id: UUID, now: datetime | None = None) -> CaseRow | None:
        rows = _rows(
            self._scoped("SELECT *, overdue_ever AS overdue FROM c WHERE case_id = $id", Scope(), now,
                         id=str(case_id)),
            CaseRow,
        )  # fmt: skip
        return rows[0] if rows else None

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
        w = where or CaseFilter()
        after_t, after_id = _END, "ffffffff-ffff-ffff-ffff-ffffffffffff"
        if cursor:
            t, _, cid = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
            after_t, after_id = datetime.fromisoformat(t), cid
        table = self._scoped(
            "SELECT *, overdue_ever AS overdue FROM c "
            "WHERE ($stage::VARCHAR IS NULL OR stage = $stage::VARCHAR) AND (NOT $open OR is_open) "
            "AND (reported_at, case_id) < ($after_t::TIMESTAMPTZ, $after_id::UUID) "
            "AND ($cat::VARCHAR IS NULL OR category = $cat::VARCHAR) "
            "AND ($overdue::BOOLEAN IS NULL OR overdue_ever = $overdue::BOOLEAN) "
            "AND ($esc::BOOLEAN IS NULL OR (is_open AND escalations > 0) = $esc::BOOLEAN) "
            "AND ($since::TIMESTAMPTZ IS NULL OR reported_at >= $since::TIMESTAMPTZ) "
            "AND ($until::TIMESTAMPTZ IS NULL OR reported_at < $until::TIMESTAMPTZ) "
            "AND ($text::VARCHAR IS NULL OR contains(lower(concat_ws(' ', title, caseref, address)),"
            " lower($text::VARCHAR))) "
            "AND ($ids::UUID[] IS NULL OR case_id IN (SELECT unnest($ids::UUID[]))) "
            "ORDER BY reported_at DESC, case_id DESC LIMIT $limit",
            scope, now, stage=stage, open=open_only, after_t=after_t, after_id=after_id, limit=limit + 1,
            cat=w.category, overdue=w.overdue, esc=w.escalated, since=w.since, until=w.until, text=w.text,
            ids=None if w.case_ids is None else [str(i) for i in w.case_ids],
        )  # fmt: skip
        rows = _rows(table, CaseRow)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = base64.urlsafe_b64encode(
                f"{last.reported_at.isoformat()}|{last.case_id}".encode()
            ).decode()
        return CasePage(tuple(rows), next_cursor)

    def timeline(self, case_id: UUID) -> Sequence[EventRow]:
        with self._cur() as cur:
            table = cur.sql(
                'SELECT seq AS position, case_id, version, type, "at", recorded_at, actor, department, grid,'
                " category, stage_after, coalesce(note, reason) AS note FROM events"
                " WHERE case_id = ? ORDER BY seq",
                params=[str(case_id)],
            ).to_arrow_table()
        return _rows(table, EventRow)

    @_consistent
    def overview(
        self, scope: Scope = Scope(), window: Window = Window(), now: datetime | None = None
    ) -> Overview:
        """Two scans of the scoped cases: totals + children + stage + category in one GROUPING SETS
        query, departments (responsible, else origin) in a second."""
        when = self._when(now)
        win = {"since": window.since or _EPOCH, "until": min(window.until or _END, _END)}
        in_win = "reported_at >= $since AND reported_at < $until"
        totals = (
            f"count(*) FILTER (WHERE {in_win}) AS reported, "
            "count(*) FILTER (WHERE registered_at >= $since AND registered_at < $until) AS registered, "
            "count(*) FILTER (WHERE is_open) AS open, count(*) FILTER (WHERE overdue_now) AS overdue, "
            "count(*) FILTER (WHERE is_open AND escalations > 0) AS escalated, "
            "count(*) FILTER (WHERE closed_at >= $since AND closed_at < $until) AS closed, "
            "count(*) FILTER (WHERE closed_at >= $since AND closed_at < $until AND overruns = 0)"
            " AS closed_on_time"
        )
        child = (
            "CASE WHEN $grid::VARCHAR IS NULL THEN grid_path[1] "
            "ELSE grid_path[list_position(grid_path, $grid::VARCHAR) + 1] END"
        )
        table = self._scoped(
            f"SELECT {child} AS child, stage, category, GROUPING(child, stage, category) AS g, "
            f"count(*) FILTER (WHERE {in_win}) AS n, {totals} FROM c "
            "GROUP BY GROUPING SETS ((), (child), (stage), (category))",
            scope, when, **win,
        )  # fmt: skip
        names = ("reported", "registered", "open", "overdue", "escalated", "closed", "closed_on_time")
        total = OverviewTotals(0, 0, 0, 0, 0, 0, 0)
        children: list[OverviewChild] = []
        stages: list[KeyCount] = []
        categories: list[KeyCount] = []
        for row in table.to_pylist():
            t = OverviewTotals(*(int(row[k] or 0) for k in names))
            g = row["g"]
            if g == 7:
                total = t
            elif g == 3 and row["child"] is not None:  # child set: stage and category aggregated
                children.append(OverviewChild(row["child"], t))
            elif g == 5 and row["n"]:
                stages.append(KeyCount(row["stage"], int(row["n"])))
            elif g == 6 and row["n"] and row["category"] is not None:
                categories.append(KeyCount(row["category"], int(row["n"])))
        depts = self._scoped(
            "SELECT unnest(CASE WHEN len(responsible_departments) > 0 THEN responsible_departments"
            f" ELSE [origin_department] END) AS key, count(*) AS n FROM c WHERE {in_win} GROUP BY key",
            scope, when, **win,
        ).to_pylist()  # fmt: skip

        def desc(xs: Iterable[KeyCount]) -> tuple[KeyCount, ...]:
            return tuple(sorted(xs, key=lambda k: (-k.cases, k.key)))

        return Overview(
            scope=scope, window=window, now=when, position=self.position(), totals=total,
            by_department=desc(KeyCount(r["key"], int(r["n"])) for r in depts),
            by_stage=desc(stages), by_category=desc(categories),
            children=tuple(sorted(children, key=lambda c: c.grid)),
        )  # fmt: skip

    def reporter(self, case_id: UUID) -> Reporter | None:
        with self._cur() as cur:
            rows = cur.execute(
                "SELECT reporter_name, reporter_phone, reporter_id_number FROM case_reporters"
                " WHERE case_id = ?",
                [str(case_id)],
            ).fetchall()  # fetch to the end: an unfinished result blocks the thread's cursor
        return Reporter(*rows[0]) if rows else None

    def event_position(self, case_id: UUID, event_id: str) -> int | None:
        with self._cur() as cur:
            rows = cur.execute(
                "SELECT seq FROM events WHERE case_id = ? AND event_id = ?", [str(case_id), event_id]
            ).fetchall()
        return int(rows[0][0]) if rows else None

    def events_after(self, position: int, limit: int = 1000) -> Sequence[EventRow]:
        with self._cur() as cur:
            table = cur.sql(
                'SELECT seq AS position, case_id, version, type, "at", recorded_at, actor, department, grid,'
                " category, stage_after, coalesce(note, reason) AS note FROM events"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                params=[position, limit],
            ).to_arrow_table()
        return _rows(table, EventRow)

    def links(self, case_id: UUID) -> Sequence[LinkRow]:
        with self._cur() as cur:
            table = cur.sql(
                'SELECT case_id, relation, target_id, target_department, "at" FROM case_links '
                "WHERE case_id = $id ORDER BY seq",
                params={"id": str(case_id)},
            ).to_arrow_table()
        return _rows(table, LinkRow)

    @_consistent
    def board(
        self, scope: Scope = Scope(), now: datetime | None = None, window: Window | None = None
    ) -> Board:
        when = self._when(now)
        table = self._scoped(
            "SELECT count(*) AS total, count(*) FILTER (WHERE is_open) AS open, "
            "count(*) FILTER (WHERE overdue_now) AS overdue_open, "
            "count(*) FILTER (WHERE is_open AND escalations > 0) AS escalated_open, "
            "count(*) FILTER (WHERE is_open AND suspended_since IS NOT NULL) AS suspended_open, "
            "(SELECT list({'stage': stage, 'cases': n} ORDER BY stage) FROM "
            "  (SELECT stage, count(*) AS n FROM c GROUP BY stage)) AS by_stage FROM c",
            scope, when,
        )  # fmt: skip
        row = table.to_pylist()[0]
        stages = tuple(StageCount(s["stage"], int(s["cases"])) for s in row["by_stage"] or [])
        indicators = tuple(self.indicators(scope, window, when)) if window is not None else ()
        return Board(
            scope=scope, now=when, position=self.position(), total_cases=int(row["total"]),
            open_cases=int(row["open"]), overdue_open=int(row["overdue_open"]),
            escalated_open=int(row["escalated_open"]), suspended_open=int(row["suspended_open"]),
            by_stage=stages, indicators=indicators,
        )  # fmt: skip

    def rollup(
        self, by: str = "grid", level: int | None = None, scope: Scope = Scope(), now: datetime | None = None
    ) -> Sequence[RollupRow]:
        flags = "is_open, overdue_now, escalations, closed_at"
        if by == "grid":
            source = (
                f"SELECT unnest(grid_path) AS key, unnest(range(len(grid_path))) AS level, {flags} FROM c"
            )
        elif by == "department":
            source = f"SELECT unnest(responsible_departments) AS key, 0 AS level, {flags} FROM c"
        elif by == "origin":
            source = f"SELECT origin_department AS key, 0 AS level, {flags} FROM c"
        else:
            raise ValueError(f"rollup by {by!r}: use grid, department or origin")
        table = self._scoped(
            f"SELECT key, level::INTEGER AS level, count(*) AS total, "
            f"count(*) FILTER (WHERE is_open) AS open, "
            f"count(*) FILTER (WHERE overdue_now) AS overdue_open, "
            f"count(*) FILTER (WHERE is_open AND escalations > 0) AS escalated_open, "
            f"count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed "
            f"FROM ({source}) WHERE ($level::INTEGER IS NULL OR level = $level::INTEGER) "
            f"GROUP BY key, level ORDER BY level, key",
            scope, now, level=level,
        )  # fmt: skip
        return _rows(table, RollupRow)

    def overdue(
        self, scope: Scope = Scope(), now: datetime | None = None, limit: int = 100
    ) -> Sequence[CaseRow]:
        table = self._scoped(
            "SELECT *, true AS overdue FROM c WHERE overdue_now ORDER BY due, case_id LIMIT $limit",
            scope, now, limit=limit,
        )  # fmt: skip
        return _rows(table, CaseRow)

    def escalated(
        self, scope: Scope = Scope(), now: datetime | None = None, limit: int = 100
    ) -> Sequence[CaseRow]:
        table = self._scoped(
            "SELECT *, overdue_ever AS overdue FROM c WHERE is_open AND escalations > 0 "
            "ORDER BY escalation_level DESC, updated_at, case_id LIMIT $limit",
            scope, now, limit=limit,
        )  # fmt: skip
        return _rows(table, CaseRow)

    def hotspots(
        self, window: Window, scope: Scope = Scope(), level: int | None = None, limit: int = 20
    ) -> Sequence[HotspotRow]:
        table = self._scoped(
            "SELECT CASE WHEN $level::INTEGER IS NULL THEN grid"
            " ELSE grid_path[$level::INTEGER + 1] END AS grid,"
            " category, count(*) AS cases FROM c "
            "WHERE reported_at >= $since AND reported_at < $until AND grid IS NOT NULL "
            "GROUP BY ALL HAVING grid IS NOT NULL ORDER BY cases DESC, grid, category LIMIT $limit",
            scope, None, level=level, since=window.since or _EPOCH, until=window.until or _END, limit=limit,
        )  # fmt: skip
        return _rows(table, HotspotRow)

    def indicators(
        self, scope: Scope = Scope(), window: Window = Window(), now: datetime | None = None
    ) -> Sequence[IndicatorValue]:
        when = self._when(now)
        parts = []
        for ind in INDICATORS:
            parts.append(f'({ind.numerator}) AS "{ind.key}__n"')
            parts.append(f'({ind.denominator or "NULL"}) AS "{ind.key}__d"')
        table = self._scoped(
            "SELECT " + ", ".join(parts) + " FROM c", scope, when,
            since=window.since or _EPOCH, until=min(window.until or _END, _END),
        )  # fmt: skip
        row = table.to_pylist()[0]
        out = []
        for ind in INDICATORS:
            num, den = row[f"{ind.key}__n"], row[f"{ind.key}__d"]
            if ind.denominator is None:
                value = None if num is None else float(num)
                out.append(IndicatorValue(ind.key, ind.name, ind.version, value, value, None, ind.unit))
            else:
                value = float(num) / float(den) if den else None
                out.append(
                    IndicatorValue(ind.key, ind.name, ind.version, value, float(num), float(den), ind.unit)
                )
        return out

    def as_of(self, *, position: int | None = None, time: datetime | None = None) -> Snapshot:
        """The read models as they stood after ``position`` or at recorded ``time`` (never writes)."""
        return Snapshot.build(self._cursor_factory, position=position, time=time)

    def position_at(self, time: datetime) -> int:
        """The position of the log as it stood at recorded ``time`` (the longest prefix recorded by then)."""
        with self._cur() as cur:
            row = cur.execute(_POSITION_AT, {"t": time}).fetchone()
        return int(row[0]) if row else 0

    def rewind(self, *, position: int | None = None, time: datetime | None = None) -> DuckDBReadModels:
        """A shared, cached as-of view (the API's ``asOf``): do not close it. Blocks while it is built;
        the API awaits :meth:`rewind_future` instead."""
        return self.rewind_future(position=position, time=time).result()

    def rewind_future(
        self, *, position: int | None = None, time: datetime | None = None
    ) -> Future[DuckDBReadModels]:
        """The shared as-of view, done at once when cached, else when the rewind builder has built it.

        Why shared: building a snapshot re-derives every case up to the position (seconds on a
        large city); screens rewinding to the same moment land on one position, so snapshots are
        kept per position (a few, least recently used out) and built once (single flight).
        Why one builder thread at low priority: a rewind must not take the machine from the live
        screen (issue 15: eight rewinding clients took the live overview from 0.1 s to 3.9 s). The
        builder runs one build at a time on a thread of its own with the lowest CPU priority
        (``nice`` 19), so live queries keep their cores and builds use what is left (measured in
        benchmarks/bench_rewind.py; pinning DuckDB to one thread while building was tried and
        slowed the live queries more than it spared them). A ``time`` is resolved to its position
        first (one quick query on the caller's thread); the view then answers with ``now`` = that
        time.
        """
        with self._lock:
            if self.rewinds is None:
                self.rewinds = RewindCache(self)
        return self.rewinds.get(position=position, time=time)


_POSITION_AT = (
    "SELECT coalesce((SELECT min(seq) - 1 FROM events WHERE recorded_at > $t),"
    " (SELECT max(seq) FROM events), 0)"
)
BUILDER_NICE = 19
"""Niceness of the rewind builder thread (Linux: per thread; raising it needs no privilege)."""


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BUILDER_NICE)


class RewindBusy(RuntimeError):
    """Too many rewinds wait to be built: a new position is refused (cached ones are still served)."""


class RewindCache:
    """Snapshots per position, shared by every caller, LRU, built one at a time (single flight) by
    a low-priority builder thread."""

    def __init__(self, live: DuckDBReadModels, size: int = 4, max_waiting: int = 8) -> None:
        self.live = live
        self.size = size
        self.max_waiting = max_waiting
        """Builds queued at most; beyond, a new position is refused (``RewindBusy``)."""
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._building: dict[int, Future[Snapshot]] = {}
        self._lock = threading.Lock()
        self._builder = ThreadPoolExecutor(
            1, thread_name_prefix="rewind-builder", initializer=_lower_priority
        )
        self.built = 0
        """Snapshots built so far (the rest were served from the cache)."""
        self._generation = live._generation()
        """The live store's generation the kept snapshots belong to: an erasure compacts and reopens
        the file (``ReadModelStore.compact``), and a snapshot built before it would still serve the
        erased values from its TEMP tables, over a connection that is closed anyway."""

    def get(self, *, position: int | None = None, time: datetime | None = None) -> Future[DuckDBReadModels]:
        if (position is None) == (time is None):
            raise ValueError("rewind needs exactly one of position= or time=")
        n = int(position) if position is not None else self.live.position_at(time)  # type: ignore[arg-type]
        self._forget_older_generation()
        with self._lock:
            snap = self._snapshots.get(n)
            if snap is not None:
                self._snapshots.move_to_end(n)
                done: Future[Snapshot] = Future()
                done.set_result(snap)
                building = done
            else:
                building = self._building.get(n)  # type: ignore[assignment]
                if building is None:
                    if len(self._building) >= self.max_waiting:
                        raise RewindBusy(
                            f"{len(self._building)} rewinds are waiting to be built (one at a time, after "
                            f"the live screen); ask again later or for a moment already asked for"
                        )
                    building = self._builder.submit(self._build, n)
                    self._building[n] = building
        out: Future[DuckDBReadModels] = Future()

        def finish(f: Future[Snapshot]) -> None:
            error = f.exception()
            if error is not None:
                out.set_exception(error)
            else:
                out.set_result(self._moment(f.result(), n, time))

        building.add_done_callback(finish)
        return out

    @staticmethod
    def _moment(snap: Snapshot, n: int, time: datetime | None) -> DuckDBReadModels:
        if time is None:
            return snap
        moment = DuckDBReadModels(lambda: snap._snapshot_cur, lambda: n, shared_cursor=True, fixed_now=time)
        moment._lock = snap._lock  # the same cursor: the same lock
        return moment

    def _forget_older_generation(self) -> None:
        generation = self.live._generation()
        with self._lock:
            if generation == self._generation:
                return
            self._generation = generation
            snaps, self._snapshots = list(self._snapshots.values()), OrderedDict()
        for old in snaps:
            with old._lock:  # after a query still running on it
                old.close()

    def _build(self, n: int) -> Snapshot:
        try:
            for _ in range(3):
                generation = self.live._generation()
                snap = Snapshot.build(self.live._cursor_factory, position=n)
                self.built += 1
                if generation == self.live._generation():
                    self._keep(n, snap)
                    return snap
                # built across an erasure (the file was compacted meanwhile): its TEMP tables may
                # hold what was just erased, so it is never served; built again
                with suppress(Exception):
                    snap.close()
            raise RewindBusy(
                "the read models were rewritten by erasures three times while this rewind was built; "
                "ask again"
            )
        finally:
            with self._lock:
                self._building.pop(n, None)

    def _keep(self, n: int, snap: Snapshot) -> None:
        with self._lock:
            self._snapshots[n] = snap
            evicted = []
            while len(self._snapshots) > self.size:
                evicted.append(self._snapshots.popitem(last=False)[1])
        for old in evicted:
            with old._lock:  # after a query still running on it
                old.close()

    def close(self) -> None:
        self._builder.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            snaps, self._snapshots = list(self._snapshots.values()), OrderedDict()
        for snap in snaps:
            snap.close()


class Snapshot(DuckDBReadModels):
    """Read models as of a past position, in TEMP tables of one private cursor over the live file.

    Why it is exact: ``events`` rows never change once projected, and every case row is a pure
    function of its events, so re-deriving cases from ``events WHERE seq <= N`` reproduces what a
    replay of the first N notifications would give.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection, position: int, at: datetime | None) -> None:
        super().__init__(lambda: cur, lambda: position, shared_cursor=True, fixed_now=at)
        self._snapshot_cur = cur

    @classmethod
    def build(
        cls,
        cursor_factory: Callable[[], duckdb.DuckDBPyConnection],
        *,
        position: int | None = None,
        time: datetime | None = None,
    ) -> Snapshot:
        if (position is None) == (time is None):
            raise ValueError("as_of needs exactly one of position= or time=")
        cur = cursor_factory()
        cur.execute("BEGIN TRANSACTION")  # one consistent MVCC snapshot while building
        try:
            db_row = cur.execute("SELECT current_database()").fetchone()
            live = f'"{db_row[0] if db_row else "memory"}".main'  # temp tables shadow unqualified names
            if position is None:
                # what had been recorded by T: the longest prefix of the log recorded at or before T
                row = cur.execute(
                    f"SELECT coalesce((SELECT min(seq) - 1 FROM {live}.events WHERE recorded_at > $t),"
                    f" (SELECT max(seq) FROM {live}.events), 0)",
                    {"t": time},
                ).fetchone()
                position = int(row[0]) if row else 0
            n = int(position)
            # only what the part stream reads (derive_statements[:2]): its event types and columns;
            # copying every column of every event up to N was most of an as-of's time
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE _hist AS SELECT case_id, seq, type, departments, department,"
                f" passed FROM {live}.events WHERE seq <= {n} AND type IN ({_PART_INPUT})"
            )
            for statement in derive_statements("_hist")[:2]:  # parts only: the rest is stored per event
                cur.execute(statement)
            cur.execute(f"CREATE OR REPLACE TEMP VIEW events AS SELECT * FROM {live}.events WHERE seq <= {n}")
            cur.execute(case_rows_statement("temp.events", "_parts"))
            cur.execute("DROP TABLE IF EXISTS temp.cases")
            cur.execute("ALTER TABLE temp._case_rows RENAME TO cases")  # no copy of every case row
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE case_links AS SELECT l.* EXCLUDE (concluded), "
                f"(SELECT arg_max(e.outcome, e.seq) FROM {live}.events e WHERE e.seq <= "
                f"{n} AND e.type = 'link_concluded' AND e.case_id = l.case_id AND e.target_id = l.target_id)"
                f" AS concluded FROM {live}.case_links l WHERE l.seq <= {n}"
            )
            for temp in ("_hist", "_part_events", "_parts"):
                cur.execute(f"DROP TABLE IF EXISTS {temp}")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            cur.close()
            raise
        return cls(cur, n, time)

    def close(self) -> None:
        self._snapshot_cur.close()

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
