"""One follower of the notification log (日志跟随) with the PostgreSQL gap rule.

Why one: the projector, the audit chain and the deadline watcher (督办) all follow the event
store's notification log "from position P onwards". Written by hand each time, only the projector
knew that on PostgreSQL a lower id can become visible *after* a higher one, so the others could
step past it for good (a false tamper alarm in the chain, a missed escalation). Every follower of
the log reads through :class:`LogFollower`, whose :meth:`LogFollower.read` never returns a
position past an id that may still appear.

The gap rule. Ids come from a sequence when a row is inserted; rows become visible when their
transaction commits. Unless every writer takes the library's table lock (its default path; not its
``enable_db_functions`` path, nor a foreign writer), a lower id can commit after a higher one, and
a follower that read past the higher id would never see it. So when a read is not contiguous
after the last settled id, a write barrier waits for every transaction then inserting and notes
the highest id present: everything up to that id is final (what is missing is gone for good:
rolled back, or of another topic), so nothing is skipped and no time-based lag is needed. The read
is repeated and cut at that id (ids above it may have new in-flight gaps; the next call reads
them). SQLite serialises writers, so its ids are in commit order and it needs no barrier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast, overload

from eventsourcing.persistence import ApplicationRecorder, Notification

BARRIER_TIMEOUT_S = 10.0
"""Longest wait of the write barrier for one writer's open transaction: a writer stuck longer makes
:meth:`LogFollower.read` raise :class:`LogGapTimeout` (the caller reads again later) instead of
blocking every follower, and every new writer queued behind the barrier, for good."""

DEFAULT_LIMIT = 5000


class Positioned(Protocol):
    """A row of the log as a follower reads it: anything with its notification id."""

    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=Positioned)


class LogGapTimeout(TimeoutError):
    """The barrier gave up waiting for a writer's open transaction: nothing was read or skipped."""


Barrier = Callable[[], int]
"""Waits until no transaction is inserting into the log; returns the highest id then present."""


class LogFollower(Generic[R]):
    """Reads the notification log after a position without ever skipping an id that may yet appear.

    ``LogFollower(recorder, topics=…)`` reads the library's ``Notification`` rows (only those
    topics; all when empty). A follower with its own query (the audit chain reads the columns it
    hashes, without building ``Notification`` objects) passes ``select(after, limit)``, which must
    return rows with ids greater than ``after``, ascending, at most ``limit``. Callable as
    ``follower(after, limit)``, the projector's ``NotificationReader``.
    """

    @overload
    def __init__(
        self: LogFollower[Notification],
        recorder: ApplicationRecorder,
        topics: Sequence[str] = (),
        *,
        barrier_timeout: float = BARRIER_TIMEOUT_S,
    ) -> None: ...

    @overload
    def __init__(
        self: LogFollower[R],
        recorder: Any,
        topics: Sequence[str] = (),
        *,
        select: Callable[[int, int], Sequence[R]],
        barrier_timeout: float = BARRIER_TIMEOUT_S,
    ) -> None: ...

    def __init__(
        self,
        recorder: Any,
        topics: Sequence[str] = (),
        *,
        select: Callable[[int, int], Sequence[Any]] | None = None,
        barrier_timeout: float = BARRIER_TIMEOUT_S,
    ) -> None:
        self.recorder = recorder
        self.topics = list(topics)
        if select is not None and self.topics:
            raise ValueError("give either topics or a select of your own (which filters itself), not both")
        self._select = cast("Callable[[int, int], Sequence[R]]", select or self._select_notifications)
        self._barrier = write_barrier(recorder, timeout=barrier_timeout)
        self._settled = 0
        """Every id up to here that will ever be visible is visible (the last barrier's high mark)."""
        self._lock = threading.Lock()

    def _select_notifications(self, after: int, limit: int) -> Sequence[Notification]:
        return self.recorder.select_notifications(  # type: ignore[no-any-return]
            start=after, limit=limit, topics=self.topics, inclusive_of_start=False
        )

    def read(self, after: int, limit: int = DEFAULT_LIMIT) -> Sequence[R]:
        """Up to ``limit`` rows with ids greater than ``after``, ascending; none past a possible gap.

        Raises :class:`LogGapTimeout` when a writer keeps a transaction open longer than the
        barrier timeout (call again later: the position has not moved).
        """
        rows = self._select(after, limit)
        if self._barrier is None or _settled_through(max(after, self._settled), rows):
            return rows
        settled = self._barrier()
        with self._lock:
            self._settled = max(self._settled, settled)
            settled = self._settled
        return [r for r in self._select(after, limit) if r.id <= settled]

    def __call__(self, after: int, limit: int) -> Sequence[R]:
        return self.read(after, limit)

    def batches(self, after: int = 0, limit: int = DEFAULT_LIMIT) -> Iterator[Sequence[R]]:
        """Successive reads from ``after`` until nothing more is readable now (one pass).

        A live follower keeps the last row's id as its position and calls again later.
        """
        position = after
        while True:
            rows = self.read(position, limit)
            if not rows:
                return
            yield rows
            position = rows[-1].id


def _settled_through(start: int, rows: Sequence[Positioned]) -> bool:
    """True when the ids above ``start`` are exactly ``start + 1, start + 2, …`` (none can appear between)."""
    above = [r for r in rows if r.id > start] if rows and rows[0].id <= start else rows
    return not above or above[-1].id - start == len(above)


def write_barrier(recorder: Any, timeout: float = BARRIER_TIMEOUT_S) -> Barrier | None:
    """PostgreSQL: a callable that returns once every transaction inserting into the log has ended.

    ``SHARE`` mode conflicts with the ``ROW EXCLUSIVE`` lock every ``INSERT`` holds until its
    transaction ends (and with the library's ``EXCLUSIVE`` insert lock), so it is granted only
    after the writers that took ids before it; it is released at once (writers wait for it for
    that instant only). Readers are never blocked by it. While it is held no id can be taken, so
    the highest id present then bounds everything settled. ``None`` for other stores.
    """
    try:
        from eventsourcing.postgres import PostgresApplicationRecorder
        from psycopg import errors, sql
    except ImportError:  # PostgreSQL support not installed: no such recorder either
        return None
    if not isinstance(recorder, PostgresApplicationRecorder):
        return None
    datastore = recorder.datastore
    table = sql.Identifier(datastore.schema, recorder.events_table_name)
    lock = sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table)
    high = sql.SQL("SELECT max(notification_id) AS high FROM {}").format(table)
    limit = sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{max(1, round(timeout * 1000))}ms"))

    def barrier() -> int:
        try:
            with datastore.transaction(commit=True) as curs:
                curs.execute(limit)
                curs.execute(lock)
                curs.execute(high)
                row = curs.fetchone()
        except Exception as exc:
            if isinstance(exc, errors.LockNotAvailable) or isinstance(exc.__cause__, errors.LockNotAvailable):
                raise LogGapTimeout(
                    f"a transaction writing to {recorder.events_table_name} has been open longer than"
                    f" {timeout:g}s, so ids below it may still appear; nothing was read past it: read again"
                    " later (a stuck writer: see pg_stat_activity)"
                ) from exc
            raise
        return int(row["high"] or 0) if row is not None else 0

    return barrier
