"""Projection figures, each beside its baseline measured in the same run.

* rebuild events/s vs the raw notification-log read rate (select_notifications alone), on a
  SQLite store written through the domain (random valid histories);
* board query p50/p99 with 1,000,000 cases (synthetic rows generated inside DuckDB);
* as-of board time with 10,000,000 events (synthetic event log generated inside DuckDB).

Sizes are overridable for quick runs: BENCH_PROJ_EVENTS_CASES, BENCH_PROJ_BOARD_CASES,
BENCH_PROJ_ASOF_EVENTS, BENCH_PROJ_PAIRS (raw-read/rebuild pairs, medians reported) and
BENCH_PROJ_LOG_COPIES (comma-separated, ascending: the rebuild figure again on logs of that many
copies of the histories, fresh case ids; the last is the headline, ``1`` = the written log only;
default ``10,44``, i.e. ~227k and ~1M events): the domain writes ~700 events/s here, so a long log
is copied, not written.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hub.views import Window  # noqa: E402
from hub.vocabulary import APPLICATION_NAME, OPEN_STAGE_NAMES, Stage  # noqa: E402
from ops.bootstrap import build_ledger  # noqa: E402
from projections import DuckDBReadModels, ReadModelStore, rebuild  # noqa: E402
from projections.projector import reader_for, section_sizes  # noqa: E402

T0 = datetime(2026, 3, 2, tzinfo=UTC)

_STAGES = [*OPEN_STAGE_NAMES, Stage.CLOSED.value, Stage.EVALUATED.value]
_STAGE_LIST = "[" + ", ".join(f"'{s}'" for s in _STAGES) + "]"


def _rebuild_vs_read(tmp: Path, n_cases: int) -> dict[str, Any]:
    """The headline pair on the longest log (``BENCH_PROJ_LOG_COPIES``, last), the others beside it.

    Why the headline is a long log: a replay pays fixed costs (creating the file, planning the
    fold's statements, DuckDB's per-column commit) that a 23k-event log cannot amortise, while
    a city's log holds millions of events; the small log's pair is kept to show those costs.
    """
    from tests.projection_history import random_city

    db = tmp / "events.sqlite"
    ledger = build_ledger(f"sqlite:///{db}")
    random_city(ledger, seed=1, n_cases=n_cases, n_steps=n_cases * 8, saves=50)
    pairs = int(os.environ.get("BENCH_PROJ_PAIRS", "3"))
    logs = {"small_log": _pairs(tmp, ledger, pairs)}
    have = 1
    for copies in (int(c) for c in os.environ.get("BENCH_PROJ_LOG_COPIES", "10,44").split(",")):
        if copies <= have:
            continue
        # the same histories again under fresh case ids: a log of realistic length
        _copy_histories(db, copies, have)
        have = copies
        logs[f"log_x{copies}"] = _pairs(tmp, build_ledger(f"sqlite:///{db}"), pairs)
    headline = logs.pop(f"log_x{have}") if have > 1 else logs.pop("small_log")
    return {**headline, **logs}


def _pairs(tmp: Path, ledger: Any, pairs_wanted: int) -> dict[str, Any]:
    """Raw notification-log reads and rebuilds of the same log, alternating (a noisy VM)."""
    total = ledger.recorder.max_notification_id() or 0
    read = reader_for(ledger.recorder)
    pairs, cpu = [], []
    for _ in range(pairs_wanted):
        t, c = time.perf_counter(), time.process_time()
        after, n = 0, 0
        for size in section_sizes():  # the same reader and section sizes as the rebuild's
            section = read(after, size)
            if not section:
                break
            n += len(section)
            after = section[-1].id
            if len(section) < size:
                break
        raw, raw_cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        applied = rebuild(tmp / "views.duckdb", ledger.recorder)
        spent, spent_cpu = time.perf_counter() - t, time.process_time() - c
        assert applied == n == total
        pairs.append((n / raw, applied / spent))
        cpu.append(raw_cpu / spent_cpu)
    ratios = [b / a for a, b in pairs]
    return {
        "events": total,
        "raw_read_events_per_s": round(statistics.median(a for a, _ in pairs)),
        "rebuild_events_per_s": round(statistics.median(b for _, b in pairs)),
        "rebuild_vs_raw": round(statistics.median(ratios), 2),
        "pairs_raw_rebuild_ratio": [(round(a), round(b), round(b / a, 2)) for a, b in pairs],
        # CPU seconds of the process (all threads) for the raw read / for the rebuild: what the
        # wall ratio tends to when other processes leave no idle core for the overlap
        "cpu_rebuild_vs_raw": round(statistics.median(cpu), 2),
    }


def _copy_histories(db: Path, copies: int, have: int = 1) -> None:
    """Grow a log of ``have`` copies of the written histories to ``copies``: every event of the first
    copy appended again with its case id changed (digits 13-16), in log order; more independent
    cases with the domain's own event JSON (links still point at the first copy's cases)."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        last = con.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] // have
        for k in range(have, copies):
            con.execute(
                "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
                "SELECT substr(originator_id, 1, 12) || printf('%04x', 65535 - ?)"
                " || substr(originator_id, 17), originator_version, topic, state"
                " FROM stored_events WHERE rowid <= ? ORDER BY rowid",
                [k, last],
            )
        con.commit()
    finally:
        con.close()


def _synthetic_events(store: ReadModelStore, n_events: int) -> int:
    """An 8-event closed loop per case, case histories interleaved across the log (seq = k*N + i)."""
    n = n_events // len(_STAGES)
    stages = "[" + ", ".join(f"'{s}'" for s in _STAGES) + "]"
    grid = (
        "'3201' || lpad((i % 9)::VARCHAR, 2, '0') || lpad((i % 13)::VARCHAR, 3, '0')"
        " || lpad((i % 17)::VARCHAR, 3, '0')"
    )
    depts = "['water', 'power', 'police'][i % 3 + 1]"
    sql = f"""
INSERT INTO events (seq, case_id, version, topic, type, recorded_at, event_id, "at", actor, department,
                    source, caseref, kind, category, priority, channel, departments, passed, score, "by",
                    grid, grid_path, stage_after)
SELECT k * {n} + i + 1, ('00000000-0000-4000-8000-' || lpad(i::VARCHAR, 12, '0'))::UUID, k + 1,
       'citybrain.case.' || type || '.v1', type,
       TIMESTAMPTZ '2026-03-02 00:00:00+00' + to_milliseconds((k * {n} + i) * 500),
       'e' || (k * {n} + i),
       TIMESTAMPTZ '2026-03-02 00:00:00+00' + to_milliseconds((k * {n} + i) * 500),
       'op', CASE WHEN type IN ('accepted', 'handled') THEN {depts} ELSE 'command' END,
       'dcm', 'C' || i, 'case', '0100' || (i % 7)::VARCHAR, 'normal', 'app',
       CASE WHEN type = 'dispatched' THEN [{depts}] END,
       CASE WHEN type = 'verified' THEN true END,
       CASE WHEN type = 'evaluated' THEN (1 + i % 5)::INTEGER END,
       CASE WHEN type = 'evaluated' THEN 'citizen' END,
       g, [left(g, 6), left(g, 9), g], type
FROM (SELECT i, k, {stages}[k + 1] AS type, {grid} AS g
        FROM range({n}) a(i), range({len(_STAGES)}) b(k))
"""
    with store.transaction() as con:
        con.execute(sql)
        con.execute("INSERT INTO tracking VALUES (?, ?)", [APPLICATION_NAME, n * len(_STAGES)])
    return n * len(_STAGES)


def synthetic_cases(store: ReadModelStore, n: int) -> None:
    """``n`` case rows generated inside DuckDB (9 districts × 13 streets × 17 grids), stages spread
    over the loop: the large read models the query benchmarks run against (also bench_graphql)."""
    cur = store.reader()
    cur.execute(
        f"""
INSERT INTO cases (case_id, source, caseref, kind, origin_department, category, priority, channel, title,
                   grid, grid_path, stage, responsible_departments, reported_at, registered_at, closed_at,
                   updated_at, due, overruns, breaches, handles, returns, reworks, escalations,
                   escalation_level, satisfaction, last_position, version)
SELECT ('00000000-0000-4000-9000-' || lpad(i::VARCHAR, 12, '0'))::UUID, 'dcm', 'X' || i, 'case',
       ['citymgmt', 'police', 'health'][i % 3 + 1], '0100' || (i % 7), 'normal', 'app', 't',
       g, [left(g, 6), left(g, 9), g],
       {_STAGE_LIST}[i % 8 + 1],
       [['water', 'power', 'police'][i % 3 + 1]],
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_minutes(i % 100000),
       TIMESTAMPTZ '2026-01-01 01:00:00+00' + to_minutes(i % 100000),
       CASE WHEN i % 8 >= 6 THEN TIMESTAMPTZ '2026-01-02 00:00:00+00' + to_minutes(i % 100000) END,
       TIMESTAMPTZ '2026-01-02 00:00:00+00', TIMESTAMPTZ '2026-01-01 12:00:00+00' + to_minutes(i % 200000),
       (i % 11 = 0)::INTEGER, 0, 1, 0, (i % 9 = 0)::INTEGER, (i % 5 = 0)::INTEGER, (i % 5 = 0)::INTEGER,
       CASE WHEN i % 8 = 7 THEN 1 + i % 5 END, i, 8
FROM (SELECT i, '3201' || lpad((i % 9)::VARCHAR, 2, '0') || lpad((i % 13)::VARCHAR, 3, '0')
             || lpad((i % 17)::VARCHAR, 3, '0') AS g FROM range({n}) t(i))"""
    )
    cur.close()


def _board_latency(tmp: Path, n_cases: int) -> dict[str, Any]:
    store = ReadModelStore(tmp / "board.duckdb")
    events = _synthetic_events(store, n_cases * len(_STAGES) // 4)  # a quarter of the cases' histories
    synthetic_cases(store, n_cases)  # 1,000,000 case rows straight from SQL, stages spread over the loop
    views = DuckDBReadModels(store.reader, lambda: events)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    for _ in range(3):
        views.board(now=now)
    timings = []
    for _ in range(40):
        t = time.perf_counter()
        board = views.board(now=now)
        timings.append((time.perf_counter() - t) * 1000)
    ind = []
    for _ in range(10):
        t = time.perf_counter()
        views.indicators(window=Window(T0 - timedelta(days=90), T0), now=now)
        ind.append((time.perf_counter() - t) * 1000)
    store.close()
    timings.sort()
    return {
        "cases": board.total_cases,
        "board_p50_ms": round(statistics.median(timings), 1),
        "board_p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 1),
        "indicators_p50_ms": round(statistics.median(ind), 1),
    }


def _as_of(tmp: Path, n_events: int) -> dict[str, Any]:
    store = ReadModelStore(tmp / "asof.duckdb")
    t = time.perf_counter()
    events = _synthetic_events(store, n_events)
    generate = time.perf_counter() - t
    views = DuckDBReadModels(store.reader, lambda: events)
    t = time.perf_counter()
    with views.as_of(position=events // 2) as snap:
        built = time.perf_counter() - t
        board = snap.board(now=datetime(2026, 6, 1, tzinfo=UTC))
        total = time.perf_counter() - t
    store.close()
    return {
        "events": events,
        "generate_s": round(generate, 1),
        "as_of_build_s": round(built, 2),
        "as_of_board_s": round(total, 2),
        "as_of_cases": board.total_cases,
    }


def run() -> dict[str, Any]:
    env = os.environ.get
    with tempfile.TemporaryDirectory(prefix="bench-proj-") as d:
        tmp = Path(d)
        out: dict[str, Any] = {}
        out["rebuild"] = _rebuild_vs_read(tmp, int(env("BENCH_PROJ_EVENTS_CASES", "6000")))
        out["board"] = _board_latency(tmp, int(env("BENCH_PROJ_BOARD_CASES", "1000000")))
        out["as_of"] = _as_of(tmp, int(env("BENCH_PROJ_ASOF_EVENTS", "10000000")))
        return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
