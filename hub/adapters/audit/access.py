"""The read access log (访问留痕): who saw which personal data of which cases, and every export.

What is recorded, and nothing more (issue 15): a read that *revealed* personal data — reporter
name / phone / id number, unsealed free text (timeline notes, actors) — to a role that holds
``cases:read_personal``, and every export of personal columns. A masked answer (the screen role's
``reporter { masked }``) reveals nothing and is not recorded: 1,000 screen list reads add no
record. One GraphQL request is one record per set of fields shown, naming every case it covered
(an auditor paging 200 reporters is one record with 200 cases, not 200 records).

Why a store of its own, not the case event store: the event store is the system of record of the
cases, chained and replayed; reads are not case history. Writing them there made every screen
poll grow the log the projector follows, the audit chain and the backups (4,000 records in 3 s
from 20 list requests). The access store is

* **SQLite** (event store ``sqlite:///DIR/events.sqlite``): the file ``DIR/access.sqlite`` beside
  it, in the data dir. A file of its own has its own write lock, so a flush never waits for the
  intake's writer (nor the writer for it), and it can be kept, copied or pruned on its own.
* **PostgreSQL**: the tables ``hub_access_records`` and ``hub_access_cases`` in the same database
  (and schema, ``?schema=``) as the event store, outside the library's ``stored_events``. Every API
  replica writes to the same place and ``hub audit access`` on any machine sees all of them;
  PostgreSQL takes concurrent inserts from replicas without coordination.

Why buffered: a GraphQL answer must not wait for a commit. Records are queued and written in one
transaction at most every ``flush_interval`` seconds, or once ``max_pending`` are waiting, or on
:meth:`AccessLog.flush` / :meth:`AccessLog.close`. Records of one request that arrive within one
interval are merged (same fields → one record listing the cases). A crash loses at most that
interval; a store outage keeps the queue and retries.

Records written by earlier versions (``AccessRecord`` events in the event store, topic
``citybrain.audit.access.recorded.v1``) are not migrated; :func:`read_access` still reads them and
``hub audit access`` lists them before the new ones (a topic-filtered scan of the log: seconds on a
store of millions of events, acceptable for an audit command). ``AccessLog(ledger.events)`` still
writes that old form, for tools and tests that hand it an event store.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from hub.adapters.store.follower import LogFollower
from hub.domain.audit import AccessRecord

log = logging.getLogger(__name__)

ACCESS_FILE = "access.sqlite"
"""The SQLite access store's file name, beside the SQLite event store (in the data dir)."""


@dataclass(frozen=True, slots=True)
class Access:
    """One recorded read of personal data (or one export): who, which fields, which cases, when.

    ``cases`` is empty for an export of every case (``scope`` says what was exported);
    ``store`` says where the record lives: ``access`` (the access store) or ``event-store``
    (a record written before issue 15).
    """

    position: int
    case_id: UUID | None
    role: str
    principal: str
    fields: tuple[str, ...]
    at: datetime
    operation: str
    recorded_at: datetime
    cases: tuple[UUID, ...] = ()
    scope: str = ""
    store: str = "access"

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "case_id": str(self.case_id) if self.case_id is not None else None,
            "cases": [str(c) for c in self.cases],
            "role": self.role,
            "principal": self.principal,
            "fields": list(self.fields),
            "at": self.at.isoformat(),
            "operation": self.operation,
            "scope": self.scope,
            "recorded_at": self.recorded_at.isoformat(),
            "store": self.store,
        }


@dataclass(slots=True)
class Pending:
    """A record waiting to be written: the cases of one request that were shown these fields."""

    role: str
    principal: str
    fields: tuple[str, ...]
    at: datetime
    operation: str
    cases: dict[UUID, None] = field(default_factory=dict)  # ordered set
    scope: str = ""


class AccessSink(Protocol):
    """Where :class:`AccessLog` writes; ``write`` takes a batch in one transaction."""

    def write(self, batch: Sequence[Pending]) -> None: ...


class AccessStore(AccessSink, Protocol):
    def read(self, case_id: UUID | None = None, limit: int | None = None) -> list[Access]: ...

    def close(self) -> None: ...


class _SqlAccessStore:
    """The two tables of the access store; SQLite and PostgreSQL differ only in dialect."""

    records = "hub_access_records"
    cases = "hub_access_cases"
    placeholder = "?"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def _connect(self) -> Any:
        raise NotImplementedError

    def _ddl(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.records} (id {self.serial}, at TEXT NOT NULL,"
            " recorded_at TEXT NOT NULL, role TEXT NOT NULL, principal TEXT NOT NULL,"
            " operation TEXT NOT NULL, fields TEXT NOT NULL, scope TEXT NOT NULL, n_cases INTEGER NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.cases} (record_id BIGINT NOT NULL, case_id TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {self.cases}_by_case ON {self.cases} (case_id, record_id)",
            f"CREATE INDEX IF NOT EXISTS {self.cases}_by_record ON {self.cases} (record_id)",
        ]

    def _create(self, statements: list[str]) -> None:
        con = self._connect()
        try:
            cur = con.cursor()
            for statement in statements:
                cur.execute(statement)
            con.commit()
        finally:
            con.close()

    def _insert_record(self, cur: Any, row: tuple[Any, ...]) -> int:
        p = ", ".join([self.placeholder] * len(row))
        cur.execute(
            f"INSERT INTO {self.records} (at, recorded_at, role, principal, operation, fields, scope,"
            f" n_cases) VALUES ({p}) RETURNING id",
            row,
        )
        return int(cur.fetchone()[0])

    def write(self, batch: Sequence[Pending]) -> None:
        if not batch:
            return
        now = datetime.now(UTC).isoformat()
        p = self.placeholder
        con = self._connect()
        try:
            cur = con.cursor()
            for r in batch:
                row = (r.at.isoformat(), now, r.role, r.principal, r.operation,
                       json.dumps(list(r.fields)), r.scope, len(r.cases))  # fmt: skip
                rid = self._insert_record(cur, row)
                if r.cases:
                    cur.executemany(
                        f"INSERT INTO {self.cases} (record_id, case_id) VALUES ({p}, {p})",
                        [(rid, str(c)) for c in r.cases],
                    )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            self._release(con)

    def _release(self, con: Any) -> None:
        con.close()

    def read(self, case_id: UUID | None = None, limit: int | None = None) -> list[Access]:
        p = self.placeholder
        where, params = "", []
        if case_id is not None:
            where = f"WHERE id IN (SELECT record_id FROM {self.cases} WHERE case_id = {p})"
            params.append(str(case_id))
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        con = self._connect()
        try:
            cur = con.cursor()
            cur.execute(
                f"SELECT id, at, recorded_at, role, principal, operation, fields, scope FROM {self.records}"
                f" {where} ORDER BY id{lim}",
                params,
            )
            rows = cur.fetchall()
            out: list[Access] = []
            for rid, at, recorded_at, role, principal, operation, fields, scope in rows:
                cur.execute(f"SELECT case_id FROM {self.cases} WHERE record_id = {p}", (rid,))
                cases = tuple(UUID(c) for (c,) in cur.fetchall())
                first = case_id if case_id is not None else (cases[0] if cases else None)
                out.append(
                    Access(int(rid), first, role, principal, tuple(json.loads(fields)), _dt(at), operation,
                           _dt(recorded_at), cases, scope)
                )  # fmt: skip
            return out
        finally:
            self._release(con)

    def close(self) -> None:
        """Nothing held between calls (a connection per flush: one a second at most)."""


def _dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


class SQLiteAccessStore(_SqlAccessStore):
    """The access store as its own SQLite file (WAL, so ``hub audit access`` reads while the API writes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create(["PRAGMA journal_mode=WAL", *self._ddl()])

    def _connect(self) -> Any:
        return sqlite3.connect(self.path, timeout=30)


class PostgresAccessStore(_SqlAccessStore):
    """The access store as two tables in the event store's PostgreSQL database (own schema if given)."""

    placeholder = "%s"
    serial = "BIGSERIAL PRIMARY KEY"

    def __init__(self, conninfo: str, schema: str | None = None) -> None:
        self.conninfo = conninfo
        if schema:
            self.records = f'"{schema}".hub_access_records'
            self.cases = f'"{schema}".hub_access_cases'
        ddl = [  # index names are unqualified (they live in the table's schema)
            d.replace(f"{self.cases}_by", "hub_access_cases_by", 1) if d.startswith("CREATE INDEX") else d
            for d in self._ddl()
        ]
        self._create(["SELECT pg_advisory_xact_lock(15015015)", *ddl])  # replicas starting at once

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo, connect_timeout=10)


def open_access_store(env: Any) -> AccessStore:
    """The access store that belongs with an event store, from its eventsourcing settings.

    ``env`` is the ledger's ``env`` (``PERSISTENCE_MODULE``, ``SQLITE_DBNAME``, ``POSTGRES_*``).
    """
    module = str(env.get("PERSISTENCE_MODULE") or "")
    if module.endswith("sqlite"):
        dbname = str(env.get("SQLITE_DBNAME") or "")
        if not dbname or dbname.startswith(":memory:") or dbname.startswith("file:"):
            raise ValueError(f"the access log needs a SQLite event store in a file, not {dbname!r}")
        return SQLiteAccessStore(Path(dbname).parent / ACCESS_FILE)
    if module.endswith("postgres"):
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(
            dbname=env.get("POSTGRES_DBNAME"), host=env.get("POSTGRES_HOST"), port=env.get("POSTGRES_PORT"),
            user=env.get("POSTGRES_USER"), password=env.get("POSTGRES_PASSWORD") or None,
        )  # fmt: skip
        return PostgresAccessStore(conninfo, env.get("POSTGRES_SCHEMA") or None)
    raise ValueError(f"no access store for the event store module {module!r} (use SQLite or PostgreSQL)")


class EventStoreSink:
    """The form before issue 15: one ``AccessRecord`` event per case in the event store (kept for
    callers that hand :class:`AccessLog` an event store, and to read old records)."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def write(self, batch: Sequence[Pending]) -> None:
        out: list[Any] = []
        for r in batch:
            for case_id in r.cases:
                rec = AccessRecord.record(case_id=case_id, role=r.role, fields=list(r.fields), at=r.at,
                                          principal=r.principal, operation=r.operation)  # fmt: skip
                out.extend(rec.collect_events())
        if out:
            self.events.put(out)


class AccessLog:
    """Buffered, batched writer of access records (thread-safe)."""

    def __init__(self, sink: Any, *, flush_interval: float = 1.0, max_pending: int = 256) -> None:
        # an event store (has ``put``) means the old form; anything else is an AccessSink
        self.sink: AccessSink = EventStoreSink(sink) if hasattr(sink, "put") else sink
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._pending: dict[Hashable, Pending] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a full queue: flush now, on the flusher thread
        self._thread: threading.Thread | None = None

    def record_access(
        self,
        token_role: str,
        case_id: UUID,
        fields: Iterable[str],
        at: datetime | None = None,
        *,
        principal: str = "",
        operation: str = "",
        request: Hashable | None = None,
    ) -> None:
        """Record that ``token_role`` (``principal``) was shown ``fields`` of ``case_id`` at ``at``.

        Calls with the same ``request`` key and fields merge into one record until the next flush;
        without a key every call is a record of its own.
        """
        shown = tuple(sorted(set(fields)))
        if not shown:
            return
        key = (request if request is not None else object(), token_role, principal, operation, shown)
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                entry = Pending(token_role, principal, shown, at or datetime.now(UTC), operation)
                self._pending[key] = entry
            entry.cases[case_id] = None
            full = len(self._pending) >= self.max_pending
        if full:
            if self._thread is not None:
                # Called from the API's event loop: the write (a PostgreSQL round trip, a store
                # that is down) belongs on the flusher thread, never in a resolver.
                self._wake.set()
            else:
                self.flush()

    def record_export(
        self, role: str, principal: str, fields: Iterable[str], scope: str, operation: str = "export"
    ) -> None:
        """Record an export of personal columns (``scope`` says what: e.g. every case up to a position)."""
        shown = tuple(sorted(set(fields)))
        entry = Pending(role, principal, shown, datetime.now(UTC), operation, scope=scope)
        with self._lock:
            self._pending[object()] = entry

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write every queued record in one transaction; returns how many."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = list(self._pending.items()), {}
            if not batch:
                return 0
            try:
                self.sink.write([entry for _, entry in batch])
            except Exception:
                with self._lock:
                    kept = dict(batch)
                    kept.update(self._pending)  # keep them for the next attempt
                    self._pending = kept
                raise
            return len(batch)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                break  # close() flushes what is left
            try:
                self.flush()
            except Exception:
                log.exception("access log: flush failed; retrying")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush()
        close = getattr(self.sink, "close", None)
        if close is not None:
            close()


def read_access(
    recorder: Any, mapper: Any, case_id: UUID | None = None, limit: int | None = None
) -> list[Access]:
    """Records of the old form (before issue 15) in order, straight from the event store."""
    out: list[Access] = []
    for section in LogFollower(recorder, [AccessRecord.Recorded.TOPIC]).batches():
        for n in section:
            e = mapper.to_domain_event(n)
            if case_id is not None and e.case_id != case_id:
                continue
            fields = tuple(e.fields)
            at, recorded = e.at, e.timestamp
            out.append(
                Access(n.id, e.case_id, e.role, e.principal, fields, at, e.operation, recorded, (e.case_id,),
                       store="event-store")
            )  # fmt: skip
            if limit is not None and len(out) >= limit:
                return out
    return out
