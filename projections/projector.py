"""The projector (投影器): follows the event store's notification log into the DuckDB read models.

Why batches and Arrow: a notification log row is (id, case id, version, topic, JSON state). A batch
of thousands becomes five Arrow columns with list comprehensions over attributes (no per-event
logic); DuckDB decodes the JSON and folds the cases with set-based SQL, in one transaction that
also records the position. Reading the next batch overlaps with applying the current one.

Why polling as well as notification: SQLite has no ``subscribe()``, so the projector polls the log
through the one log follower (``hub.adapters.store.follower``, which keeps PostgreSQL's gap rule); a
process that also runs the
intake calls ``notify()`` after each saved batch, which wakes the projector at once. Polling is the
safety net for writes made by other processes (other intake workers, PostgreSQL replicas).

It never imports the application: ops hands over the ledger's ``ApplicationRecorder`` (and, when
the store is encrypted or compressed, a ``state_decoder`` that turns stored bytes into JSON).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Protocol, cast
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc
from eventsourcing.persistence import ApplicationRecorder, Notification

from hub.adapters.store.follower import LogFollower
from hub.vocabulary import APPLICATION_NAME
from projections.schema import FOLLOWED_TOPICS
from projections.store import BATCH_SCHEMA, ReadModelStore

log = logging.getLogger(__name__)

DEFAULT_APPLICATION = APPLICATION_NAME


class NotificationReader(Protocol):
    """Reads up to ``limit`` case notifications with ids greater than ``after`` (ascending)."""

    def __call__(self, after: int, limit: int) -> Sequence[Notification]: ...


def reader_for(recorder: ApplicationRecorder, topics: Sequence[str] = FOLLOWED_TOPICS) -> NotificationReader:
    """The notification log of an eventsourcing recorder, filtered to case topics (and erasure
    records, see ``ReadModelStore.fold_batch``) in the database.

    It is the hub's one log follower (``hub.adapters.store.follower.LogFollower``): on PostgreSQL
    a lower id may become visible after a higher one, and the follower's gap rule (a write barrier,
    no time-based lag) makes sure the projector never steps past such an id.
    """
    return LogFollower(recorder, topics)


def to_arrow(
    notifications: Sequence[Notification],
    state_decoder: Callable[[bytes], bytes] | None = None,
    *,
    compact_ids: bool = False,
) -> pa.Table:
    """Notifications → an Arrow table of ``BATCH_SCHEMA`` (the state is decoded later, in DuckDB).

    The state bytes are *viewed* as UTF-8 text rather than cast (a cast validates every byte and
    its first call alone costs ~0.2 s): they are the store's JSON, and DuckDB's JSON reader
    rejects malformed input anyway. ``compact_ids``: case ids as 32 hex digits (``UUID.hex``, a
    third of ``str()``'s cost on the reading thread; DuckDB casts either form) — for replays,
    whose batches never reach ``on_commit`` listeners that expect the canonical form.
    """
    states = [n.state for n in notifications]
    if state_decoder is not None:  # encrypted/compressed stores: unavoidable per-row library call
        states = [state_decoder(s) for s in states]
    originators = [n.originator_id for n in notifications]
    if compact_ids and all(isinstance(o, UUID) for o in originators[:1]):  # text ids stay as they are
        ids = [o.hex for o in cast(list[UUID], originators)]
    else:
        ids = [str(o) for o in originators]
    return pa.Table.from_arrays(
        [
            pa.array([n.id for n in notifications], pa.int64()),
            pa.array(ids, pa.string()),
            pa.array([n.originator_version for n in notifications], pa.int64()),
            pa.array([n.topic for n in notifications], pa.string()),
            pa.array(states, pa.binary()).view(pa.string()),
        ],
        schema=BATCH_SCHEMA,
    )


def fetch_batch(
    read: NotificationReader,
    after: int,
    limit: int,
    until: int | None = None,
    state_decoder: Callable[[bytes], bytes] | None = None,
    *,
    compact_ids: bool = False,
) -> pa.Table | None:
    """Read up to ``limit`` notifications after ``after`` (none beyond ``until``) as Arrow, or ``None``."""
    notifications = read(after, limit)
    if until is not None:
        notifications = [n for n in notifications if n.id <= until]
    if not notifications:
        return None
    return to_arrow(notifications, state_decoder, compact_ids=compact_ids)


REPLAY_SECTION = 8192
"""Notifications in a replay's first read: small, so that decoding starts early and overlaps the
next read. Later reads double up to ``REPLAY_SECTION_MAX`` (``section_sizes``)."""
REPLAY_SECTION_MAX = 65_536
"""The largest read of a replay: staging a section costs ~6 ms of planning whatever its size, so
long logs are read in large sections (28 sections of 8,192 spent ~0.17 s of 0.78 s staging
227k events)."""
REPLAY_FOLD = 1_000_000
"""Events per fold of a replay (``ReadModelStore.fold_staged``): one fold for most logs; bounds the
decoded events held in DuckDB's temp storage for very large ones."""


def section_sizes(first: int = REPLAY_SECTION, largest: int = REPLAY_SECTION_MAX) -> Iterator[int]:
    """Sizes of a replay's successive reads: ``first``, doubling up to ``largest``."""
    size = max(1, first)
    while True:
        yield size
        size = max(size, min(largest, size * 2))


@contextmanager
def read_ahead(
    read: NotificationReader,
    after: int,
    *,
    size: int = REPLAY_SECTION,
    largest: int = REPLAY_SECTION_MAX,
    until: int | None = None,
    state_decoder: Callable[[bytes], bytes] | None = None,
    depth: int = 8,
) -> Iterator[Iterator[pa.Table]]:
    """Read the log after ``after`` in a background thread as Arrow sections (``section_sizes``).

    Why a thread running ahead (up to ``depth`` sections, ~0.5M events): reading the log is Python work (the
    store's driver and its Notification objects), while everything done with a section in DuckDB
    releases the GIL, so the two overlap on two cores; and reading keeps going while a fold runs.
    Errors of the reading thread are raised by the iterator; leaving the block stops the thread.
    """
    sections: queue.Queue[pa.Table | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: pa.Table | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                sections.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        position = after
        try:
            for limit in section_sizes(size, largest):
                if stop.is_set():
                    return
                batch = fetch_batch(read, position, limit, until, state_decoder, compact_ids=True)
                if batch is None:
                    break
                if not put(batch):
                    return
                position = int(batch.column("seq")[-1].as_py())
                if batch.num_rows < limit or (until is not None and position >= until):
                    break
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)
            return
        put(None)

    thread = threading.Thread(target=reader, name="log-read-ahead", daemon=True)
    thread.start()

    def consume() -> Iterator[pa.Table]:
        while True:
            item = sections.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


def replay(
    store: ReadModelStore,
    sections: Iterator[pa.Table],
    application_name: str = DEFAULT_APPLICATION,
    progress: Callable[[int, int], None] | None = None,
    fold_size: int = REPLAY_FOLD,
    fold_threads: int | None = None,
) -> int:
    """Apply ``sections`` (ascending, after the store's position) inside ``store.bulk_load()``.

    Each section is decoded as it arrives (``stage``), and every ``fold_size`` events, and at the
    end, the staged events are folded set-based (``fold_staged``). Returns the events applied.
    The last fold runs on every core (``fold_threads``, default all): nothing is read meanwhile.
    ``progress(applied_so_far, position)`` is called after each section.
    """
    total = 0
    for batch in sections:
        store.stage(batch)
        total += batch.num_rows
        if store.staged >= fold_size:
            store.fold_staged(application_name)
        if progress is not None:
            progress(total, int(batch.column("seq")[-1].as_py()))
    store.fold_staged(application_name, threads=fold_threads or os.cpu_count() or 1)
    return total


class Projector:
    """Applies the notification log to a ``ReadModelStore``, batch by batch, exactly once."""

    def __init__(
        self,
        store: ReadModelStore,
        read: NotificationReader,
        *,
        application_name: str = DEFAULT_APPLICATION,
        batch_size: int = 5000,
        poll_interval: float = 0.5,
        state_decoder: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.store = store
        self.read = read
        self.application_name = application_name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.state_decoder = state_decoder
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.restarts = 0
        """Threads started again by :meth:`restart` (``hub_child_restarts_total``)."""
        self.on_commit: Callable[[int, Sequence[str]], None] | None = None
        """Called after each committed batch with its last position and the case ids it touched
        (ops publishes them on NATS so every API process can feed its subscriptions)."""

    @property
    def position(self) -> int:
        return self.store.position(self.application_name)

    def run_once(self, until: int | None = None) -> int:
        """Apply the next batch (if any); returns the number of events applied."""
        return self._apply(self._fetch(self.position, until))

    def _fetch(self, after: int, until: int | None) -> pa.Table | None:
        """Read the next batch after ``after`` and convert it to Arrow (``None`` when none).

        Conversion happens here, on the reading thread, so that in ``catch_up`` it overlaps the
        previous batch's DuckDB work instead of adding to it.
        """
        return fetch_batch(self.read, after, self.batch_size, until, self.state_decoder)

    def _apply(self, batch: pa.Table | None) -> int:
        if batch is None or batch.num_rows == 0:
            return 0
        applied = self.store.fold_batch(batch, self.application_name)
        if self.on_commit is not None:
            try:
                last = int(batch.column("seq")[-1].as_py())
                self.on_commit(last, sorted(pc.unique(batch.column("case_id")).to_pylist()))
            except Exception:  # a failed notice must never fail the committed batch
                log.exception("projector on_commit hook failed")
        return applied

    def catch_up(
        self,
        until: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        first: Future[pa.Table | None] | None = None,
    ) -> int:
        """Apply everything up to ``until`` (default: the end of the log); returns events applied.

        The read (and Arrow conversion) of batch k+1 runs in a helper thread while batch k is
        applied (DuckDB releases the GIL), so a rebuild approaches the raw read rate of the log.
        ``progress(applied_so_far, position)`` is called after each batch. ``first``: the first
        batch already being read (``fetch_batch`` in a pool), so a replay reads while its file is created.
        """
        total = 0
        with ThreadPoolExecutor(1, thread_name_prefix="log-read") as pool:
            pending: Future[pa.Table | None] = (
                first if first is not None else pool.submit(self._fetch, self.position, until)
            )
            while True:
                batch = pending.result()
                if batch is None:
                    return total
                last = int(batch.column("seq")[-1].as_py())
                short = batch.num_rows < self.batch_size
                if not short and (until is None or last < until):
                    pending = pool.submit(self._fetch, last, until)
                total += self._apply(batch)
                if progress is not None:
                    progress(total, last)
                if short or (until is not None and last >= until) or self._stop.is_set():
                    return total

    # ------------------------------------------------------------------ running in the background
    def notify(self) -> None:
        """New events were recorded (called by an in-process intake): wake the projector now."""
        self._wake.set()

    def run(self) -> None:
        """Follow the log until ``stop()``; transient errors are logged and retried.

        Anything that still ends the thread (an error that is not an ``Exception``, a bug in the
        loop itself) is recorded in :attr:`error`, and :attr:`running` turns false: ``hub up``'s
        supervisor then :meth:`restart`s it (the position is in DuckDB, so nothing is skipped)."""
        try:
            self._follow()
        except BaseException as exc:
            self.error = exc
            log.exception("the projector thread ended; it must be restarted")

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                applied = self.catch_up()
                self.error = None  # recovered: readiness reports the projector healthy again
            except Exception as exc:  # keep following: the failed batch was rolled back
                log.exception("projector batch failed; retrying")
                self.error = exc
                applied = 0
                self._stop.wait(min(5.0, self.poll_interval * 4))
            if applied == 0:
                self._wake.wait(self.poll_interval)

    def start(self) -> threading.Thread:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="projector", daemon=True)
        self._thread.start()
        return self._thread

    @property
    def running(self) -> bool:
        """True while the following thread is alive (after :meth:`start`, before :meth:`stop`)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def dead(self) -> bool:
        """True when it was started, not stopped, and its thread has ended."""
        return self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()

    def restart(self) -> None:
        """Start a fresh following thread after the last one ended (or stop and replace it)."""
        self.stop()
        self.error = None
        self.restarts += 1
        self.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
