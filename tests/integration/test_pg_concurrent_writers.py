"""Issue 9: concurrent writers on PostgreSQL never make the live projector skip (or double) an event.

Why this can go wrong: PostgreSQL hands out ``notification_id`` from a sequence when a row is
inserted, but readers see the row only when its transaction commits. If two writers interleave, a
lower id can become visible *after* a higher one; a follower that has already advanced past the
higher id and reads ``id > position`` never sees the lower one. eventsourcing's default insert
path takes ``LOCK TABLE … IN EXCLUSIVE MODE`` so ids are handed out in commit order; its
``enable_db_functions`` path (reachable via ``HUB_STORE_URL=…?enable_db_functions=y``) does not.

The test runs both paths: four writer threads, each with its own ``CaseLedger`` and its own cases,
apply validated batches while a "slow writer" keeps inserts open for a while before committing
(the late lower id), failing transactions roll back after consuming ids (permanent gaps), and a
``ProjectionService`` follows the log live with a 10 ms poll. At the end the projector's event
positions are exactly the store's (same set: none skipped, none doubled) and the case counts agree.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg import sql

from hub import messages as m
from hub.application import CaseLedger, Verdict
from ops.bootstrap import build_ledger, projector_decoder
from projections import ProjectionService
from projections.schema import TOPICS
from tests.factories import LIFECYCLE, case_history

WRITERS = 4
CASES_PER_WRITER = 60  # × 7 events
BATCH = 35  # events per apply_batch (spans 5 cases: several cases per transaction)
SLOW_COPIES = 12  # late-committing transactions of the slow writer
HOLD_S = 0.25  # how long each of them stays open after taking its ids
PACE_S = 0.25  # pause between one writer's batches


def _validated(ledger: CaseLedger, writer: int) -> list[m.Valid]:
    events = [e for i in range(CASES_PER_WRITER) for e in case_history(f"W{writer}-{i:03d}")]
    out: list[m.Valid] = []
    for ev in events:
        valid = m.validate(orjson.dumps(ev), ledger.catalogue)
        assert isinstance(valid, m.Valid), valid
        out.append(valid)
    return out


def _write(ledger: CaseLedger, writer: int, errors: list[BaseException], gaps: list[int]) -> None:
    """One writer: its own ledger, its own cases, batches in order, a rolled-back insert every 3rd."""
    try:
        items = _validated(ledger, writer)
        for k in range(0, len(items), BATCH):
            outcomes = ledger.apply_batch(items[k : k + BATCH])
            assert all(o.verdict is Verdict.APPLIED for o in outcomes), outcomes
            if (k // BATCH) % 3 == 1:
                gaps.append(_rolled_back_insert(ledger))
            time.sleep(PACE_S)  # spread the writes over the slow writer's run
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def _rolled_back_insert(ledger: CaseLedger) -> int:
    """Insert five new events and one conflicting one: the transaction fails after taking ids."""
    taken = ledger.recorder.select_notifications(start=None, limit=1)[0]
    fresh = [StoredEvent(uuid.uuid4(), 1, taken.topic, taken.state) for _ in range(5)] + [
        StoredEvent(taken.originator_id, taken.originator_version, taken.topic, taken.state)
    ]
    with pytest.raises(IntegrityError):
        ledger.recorder.insert_events(fresh)
    return 6


def _slow_writer(
    dsn: str, table: str, lock: bool, stop: threading.Event, errors: list[BaseException]
) -> None:
    """Copy a whole stored case under a new id, holding the transaction open after the insert.

    This is what a slow intake transaction looks like to readers: its ids are taken early, its rows
    become visible late, after other writers' higher ids. ``lock`` mimics the library's default
    path (``LOCK TABLE … IN EXCLUSIVE MODE`` first), otherwise its database-function path.
    """
    try:
        with psycopg.connect(dsn) as conn:
            for _ in range(SLOW_COPIES):
                if stop.is_set():
                    return
                with conn.transaction():
                    if lock:
                        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
                    source = conn.execute(  # a complete case (all its events in one batch)
                        sql.SQL("SELECT originator_id FROM {} WHERE originator_version = %s LIMIT 1").format(
                            sql.Identifier(table)
                        ),
                        (len(LIFECYCLE),),
                    ).fetchone()
                    assert source is not None
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {t} (originator_id, originator_version, topic, state) "
                            "SELECT %s, originator_version, topic, state FROM {t} "
                            "WHERE originator_id = %s ORDER BY originator_version"
                        ).format(t=sql.Identifier(table)),
                        (uuid.uuid4(), source[0]),
                    )
                    time.sleep(HOLD_S)
                time.sleep(0.05)
    except BaseException as exc:
        errors.append(exc)


def _store_positions(dsn: str, table: str, topics: tuple[str, ...]) -> tuple[set[int], int]:
    with psycopg.connect(dsn) as conn:
        ids = {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT notification_id FROM {} WHERE topic = ANY(%s)").format(sql.Identifier(table)),
                (list(topics),),
            )
        }
        row = conn.execute(
            sql.SQL("SELECT count(DISTINCT originator_id) FROM {}").format(sql.Identifier(table))
        ).fetchone()
    assert row is not None
    return ids, int(row[0])


@pytest.mark.parametrize("mode", ["table-lock", "db-functions"])
def test_concurrent_writers_projector_counts_equal_store(pg_database: str, tmp_path: Path, mode: str) -> None:
    url = pg_database + ("?enable_db_functions=y" if mode == "db-functions" else "")
    dsn = pg_database  # psycopg takes the URL as a conninfo
    reader = build_ledger(url)  # creates the table (and, in db-functions mode, the function)
    recorder: Any = reader.recorder
    table = recorder.events_table_name
    assert recorder.datastore.enable_db_functions is (mode == "db-functions")
    seed = [m.validate(orjson.dumps(e), reader.catalogue) for e in case_history("SEED")]
    reader.apply_batch([v for v in seed if isinstance(v, m.Valid)])  # the case the slow writer copies
    service = ProjectionService(
        tmp_path / "views.duckdb",
        reader.recorder,
        application_name=reader.name,
        poll_interval=0.01,
        state_decoder=projector_decoder(reader),
    )
    service.start()
    errors: list[BaseException] = []
    gaps: list[int] = []
    stop = threading.Event()
    # Built one after another: constructing ledgers concurrently races on the start-up DDL
    # ("tuple concurrently updated"); the writes are what must run concurrently.
    ledgers = [build_ledger(url) for _ in range(WRITERS)]
    threads = [
        threading.Thread(target=_write, args=(ledgers[w], w, errors, gaps), name=f"writer-{w}")
        for w in range(WRITERS)
    ]
    slow = threading.Thread(
        target=_slow_writer, args=(dsn, table, mode == "table-lock", stop, errors), name="slow"
    )
    slow.start()
    for t in threads:
        t.start()
    try:
        for t in threads:  # generous: a loaded 2-core machine
            t.join(300)
        slow.join(120)
        assert not errors, errors
        assert not any(t.is_alive() for t in [*threads, slow])
        store_ids, store_cases = _store_positions(dsn, table, TOPICS)
        expected_events = (WRITERS * CASES_PER_WRITER + 1 + SLOW_COPIES) * len(LIFECYCLE)
        assert len(store_ids) == expected_events
        assert sum(gaps) > 0 and max(store_ids) > len(store_ids), "no gaps in the ids were made"
        deadline = time.monotonic() + 120
        while service.projector.position < max(store_ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a few more polls: anything still missing now was skipped for good
        assert service.projector.error is None, service.projector.error
        cur = service.store.reader()
        try:
            projected = [r[0] for r in cur.execute("SELECT seq FROM events").fetchall()]
        finally:
            cur.close()
        counts = service.store.counts()
    finally:
        stop.set()
        slow.join(10)
        service.close()
        for ledger in [*ledgers, reader]:
            ledger.close()
    assert len(projected) == len(set(projected)), "an event was projected twice"
    missing = sorted(store_ids - set(projected))
    assert not missing, f"the projector skipped {len(missing)} events, e.g. positions {missing[:10]}"
    assert set(projected) == store_ids
    assert counts["events"] == len(store_ids)
    assert counts["cases"] == store_cases == WRITERS * CASES_PER_WRITER + 1 + SLOW_COPIES
