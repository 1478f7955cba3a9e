"""The log follower's contract (``hub.adapters.store.follower.LogFollower``), run against every store.

The same cases run on SQLite, on PostgreSQL, and on PostgreSQL while background writers keep
making ids visible out of order (a lower id's transaction held open while a higher one commits,
every third of them rolled back), with the store configured exactly as the hub configures it
(HUB_STORE_URL). The cases that need a writer that holds its transaction open (the gap rule
itself) run on both PostgreSQL variants: a lower id committed late is never skipped, a rolled-back
one never blocks the follower, and a writer open longer than the barrier's timeout makes the read
fail clearly (nothing skipped) instead of hanging.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    Notification,
    StoredEvent,
)
from eventsourcing.utils import Environment

from hub.adapters.store.follower import LogFollower, LogGapTimeout
from ops.settings import store_env
from projections.projector import reader_for
from tests.pg_log import Held, barrier_waiting, committed_insert, held_insert, out_of_order
from tests.support import wait_until

CASE = "tests.follower:Case.Event"
OTHER = "tests.follower:Other.Event"
NOISE = "tests.follower:Noise.Event"
"""The background writers' topic: the cases read ``CASE`` (and ``OTHER``), so noise only makes gaps."""


class Log:
    """One store under test: its recorder, and ways to write into it."""

    def __init__(self, kind: str, recorder: ApplicationRecorder, dsn: str | None = None) -> None:
        self.kind = kind
        self.recorder = recorder
        self.dsn = dsn
        self.table = str(getattr(recorder, "events_table_name", ""))

    def follower(self, *topics: str, **kw: Any) -> LogFollower[Notification]:
        return LogFollower(self.recorder, topics or (CASE,), **kw)

    def append(self, n: int = 1, topic: str = CASE) -> list[int]:
        """``n`` events through the library's own insert path (ids in commit order); their ids."""
        ids = self.recorder.insert_events([StoredEvent(uuid.uuid4(), 1, topic, b"{}") for _ in range(n)])
        assert ids is not None and len(ids) == n
        return list(ids)

    def rolled_back(self, n: int = 3) -> None:
        """A transaction that takes ids and fails (a conflict): on PostgreSQL the ids are gone for good."""
        taken = self.append(1, OTHER)[0]
        existing = self.recorder.select_notifications(start=taken, limit=1)[0]
        doomed = [StoredEvent(uuid.uuid4(), 1, CASE, b"{}") for _ in range(n)]
        doomed.append(StoredEvent(existing.originator_id, 1, OTHER, b"{}"))
        with pytest.raises(IntegrityError):
            self.recorder.insert_events(doomed)

    def pair_out_of_order(self, *, roll_back_lower: bool) -> list[int]:
        """Two ``CASE`` events whose ids become visible out of order (PostgreSQL: the lower one's
        transaction is held open while the higher one commits); the ids that end up committed.
        SQLite serialises writers, so there the two are simply appended."""
        if self.dsn is None:
            return self.append(1 if roll_back_lower else 2)
        with psycopg.connect(self.dsn) as lower, psycopg.connect(self.dsn) as higher:
            return out_of_order(lower, higher, self.table, CASE, hold=0.01, roll_back_lower=roll_back_lower)


def _noise(dsn: str, table: str, stop: threading.Event, errors: list[BaseException]) -> None:
    """Background writers: a lower ``NOISE`` id held open while a higher one commits; every third
    lower one rolled back. Short holds: the barrier waits for each only that long."""
    try:
        with psycopg.connect(dsn) as lower, psycopg.connect(dsn) as higher:
            for i in range(1_000_000):
                if stop.is_set():
                    return
                out_of_order(lower, higher, table, NOISE, hold=0.02, roll_back_lower=i % 3 == 2)
                stop.wait(0.005)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _recorder(url: str) -> ApplicationRecorder:
    env = Environment("CityHub", store_env(url))
    factory: InfrastructureFactory[Any] = InfrastructureFactory.construct(env)
    return factory.application_recorder()


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    if kind == "sqlite":
        recorder = _recorder(f"sqlite:///{tmp_path / 'events.sqlite'}")
        yield Log(kind, recorder)
        recorder.datastore.close()  # type: ignore[attr-defined]
        return
    url = str(request.getfixturevalue("pg_database"))
    recorder = _recorder(url)
    log = Log(kind, recorder, dsn=url)
    stop, errors = threading.Event(), []
    noise = threading.Thread(target=_noise, args=(url, log.table, stop, errors), name="noise")
    if kind == "postgres-concurrent":
        noise.start()
        wait_until(lambda: recorder.max_notification_id(), what="the first noise events")
    try:
        yield log
    finally:
        stop.set()
        if noise.is_alive():
            noise.join(30)
        recorder.datastore.close()  # type: ignore[attr-defined]
    assert not errors, errors


@pytest.fixture(params=["sqlite", "postgres", "postgres-concurrent"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    """Every store the hub runs on, and PostgreSQL under out-of-order concurrent writers."""
    yield from _open(request.param, request, tmp_path)


@pytest.fixture(params=["postgres", "postgres-concurrent"])
def pg_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    """The stores whose ids can become visible out of order."""
    yield from _open(request.param, request, tmp_path)


def _ids(rows: Any) -> list[int]:
    return [r.id for r in rows]


# ---------------------------------------------------------------------------------- every store
def test_an_empty_log_reads_nothing(log: Log) -> None:
    follower = log.follower()
    assert list(follower.read(0, 10)) == []
    assert list(follower.batches(0)) == []


def test_reads_ids_after_the_position_ascending_within_the_limit(log: Log) -> None:
    ids = log.append(10)
    follower = log.follower()
    assert _ids(follower.read(0, 4)) == ids[:4]
    assert _ids(follower.read(ids[3], 100)) == ids[4:]
    assert _ids(follower(ids[3], 2)) == ids[4:6]  # callable: the projector's NotificationReader
    assert list(follower.read(ids[-1], 100)) == []
    first = follower.read(0, 1)[0]
    assert (first.topic, first.originator_version, bytes(first.state)) == (CASE, 1, b"{}")


def test_only_the_topics_asked_for_and_other_topics_do_not_stop_it(log: Log) -> None:
    wanted = log.append(3) + log.append(2, OTHER)[:0] + log.append(3)
    other = log.recorder.select_notifications(start=None, limit=100, topics=[OTHER])
    assert _ids(r for rows in log.follower().batches(0, 2) for r in rows) == wanted
    both = [r for rows in log.follower(CASE, OTHER).batches(0, 3) for r in rows]
    assert _ids(both) == sorted(wanted + _ids(other))
    assert {r.topic for r in both} == {CASE, OTHER}


def test_batches_yield_every_event_once_and_resume_from_the_last_position(log: Log) -> None:
    first = log.append(25)
    follower = log.follower()
    batches = list(follower.batches(0, 10))
    assert all(0 < len(b) <= 10 for b in batches)
    assert _ids(r for b in batches for r in b) == first
    later = log.append(5)
    assert _ids(r for b in follower.batches(first[-1], 10) for r in b) == later


def test_rolled_back_ids_leave_a_gap_the_follower_steps_over(log: Log) -> None:
    before = log.append(3)
    log.rolled_back(4)
    after = log.append(3)
    if log.kind != "sqlite":
        assert after[0] > before[-1] + 5, "the failed transaction took no ids: no gap was made"
    assert _ids(r for rows in log.follower().batches(0, 4) for r in rows) == before + after


def test_the_projector_reads_through_the_follower(log: Log) -> None:
    assert isinstance(reader_for(log.recorder), LogFollower)


def test_a_live_follower_sees_every_committed_id_once_in_order(log: Log) -> None:
    """Writers make ids visible out of order (PostgreSQL) while a follower polls the log: at the end
    it has read exactly the committed ids, ascending, none skipped, none twice."""
    follower = log.follower()
    committed: list[int] = []
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(n: int) -> None:
        try:
            for i in range(n):
                committed.extend(log.pair_out_of_order(roll_back_lower=i % 4 == 3))
        except BaseException as exc:
            errors.append(exc)

    def follow() -> None:
        position = 0
        try:
            while True:
                last_pass = stop.is_set()
                for rows in follower.batches(position, 7):
                    seen.extend(_ids(rows))
                    position = rows[-1].id
                if last_pass:
                    return
                stop.wait(0.005)  # the poll interval of a live follower
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=follow, name="follower")
    reader.start()
    writers = [threading.Thread(target=write, args=(24,), name=f"writer-{w}") for w in range(3)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(120)
    stop.set()
    reader.join(120)
    assert not errors, errors
    assert not reader.is_alive() and not any(t.is_alive() for t in writers)
    assert len(seen) == len(set(seen)), "an id was read twice"
    assert seen == sorted(seen), "ids were read out of order"
    missing = sorted(set(committed) - set(seen))
    assert not missing, f"the follower skipped {len(missing)} committed ids, e.g. {missing[:10]}"
    assert sorted(seen) == sorted(committed)


# ------------------------------------------------------------- out-of-order visibility (PostgreSQL)
@contextmanager
def _blocked_read(
    pg_log: Log, follower: LogFollower[Any] | None = None
) -> Iterator[tuple[Held, list[int], list[Any]]]:
    """A lower ``CASE`` id held open, the next one committed, and a follower reading from just below
    them in a thread, waiting in its barrier: yields (the held transaction, the higher ids, the
    read's result once the thread has ended — the test ends the held transaction). The follower
    reads ``CASE`` by topic unless one is given."""
    assert pg_log.dsn is not None
    dsn = pg_log.dsn
    base = pg_log.append(1)[0]
    follower = follower or pg_log.follower()
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(_ids(follower.read(base, 100)))
        except BaseException as exc:
            result.append(exc)

    with held_insert(dsn, pg_log.table, CASE) as lower:
        higher = committed_insert(dsn, pg_log.table, CASE)
        assert lower.ids[0] < higher[0]
        visible = pg_log.recorder.select_notifications(start=base, limit=10, topics=[CASE])
        assert _ids(visible) == [base, *higher], "the higher id is not visible before the lower one"
        thread = threading.Thread(target=run, name="follower-read")
        thread.start()
        try:
            wait_until(lambda: barrier_waiting(dsn, pg_log.table), what="the barrier waiting")
            assert thread.is_alive() and not result, "the follower read past an id that may still appear"
            yield lower, higher, result
        finally:
            if not lower.ended:
                lower.rollback()
            thread.join(60)
    assert not thread.is_alive()


def test_a_lower_id_committed_late_is_not_skipped(pg_log: Log) -> None:
    with _blocked_read(pg_log) as (lower, higher, result):
        lower.commit()
    assert result == [lower.ids + higher]


def test_a_lower_id_rolled_back_does_not_block_the_follower(pg_log: Log) -> None:
    with _blocked_read(pg_log) as (lower, higher, result):
        lower.rollback()
    assert result == [higher]
    follower = pg_log.follower()
    assert list(follower.read(higher[0], 100)) == []  # the rolled-back id is not waited for again
    later = pg_log.append(2)
    assert _ids(follower.read(higher[0], 100)) == later


def test_a_writer_open_too_long_fails_the_read_clearly_and_skips_nothing(pg_log: Log) -> None:
    assert pg_log.dsn is not None
    base = pg_log.append(1)[0]
    follower = pg_log.follower(barrier_timeout=0.5)
    with held_insert(pg_log.dsn, pg_log.table, CASE) as lower:
        higher = committed_insert(pg_log.dsn, pg_log.table, CASE)
        with pytest.raises(LogGapTimeout, match=r"open longer than 0\.5s") as failure:
            follower.read(base, 100)
        assert "read again later" in str(failure.value)
        lower.commit()
    assert _ids(follower.read(base, 100)) == lower.ids + higher


# ------------------------------------------------------------- a follower with a query of its own
def _own_select(log: Log) -> LogFollower[Notification]:
    """A follower that runs a query of its own (as the audit chain runs its SQL) instead of naming
    topics: here the events of ``CASE`` and ``OTHER``, filtered in the query (a select must return
    up to ``limit`` rows after the position: filtering after the limit would end a pass early)."""

    def select(after: int, limit: int) -> Sequence[Notification]:
        return log.recorder.select_notifications(
            start=after, limit=limit, topics=[CASE, OTHER], inclusive_of_start=False
        )

    return LogFollower(log.recorder, select=select)


def test_a_follower_with_its_own_query_reads_every_id_once(log: Log) -> None:
    cases = log.append(3)
    log.append(2, OTHER)
    log.rolled_back(2)  # one more OTHER id, and CASE ids given back (a gap on PostgreSQL)
    cases += log.append(4)
    others = _ids(log.recorder.select_notifications(start=None, limit=100, topics=[OTHER]))
    follower = _own_select(log)
    read = _ids(r for rows in follower.batches(0, 3) for r in rows)
    assert read == sorted(cases + others) and len(others) == 3
    assert list(follower.read(read[-1], 10)) == []


def test_a_follower_with_its_own_query_does_not_skip_a_lower_id_committed_late(pg_log: Log) -> None:
    with _blocked_read(pg_log, _own_select(pg_log)) as (lower, higher, result):
        lower.commit()
    assert result == [lower.ids + higher]


def test_a_follower_with_its_own_query_is_not_blocked_by_a_rolled_back_id(pg_log: Log) -> None:
    with _blocked_read(pg_log, _own_select(pg_log)) as (lower, higher, result):
        lower.rollback()
    assert result == [higher]
