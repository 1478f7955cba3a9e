"""Entry points: run the projector, rebuild with an atomic swap, export Parquet, read-only SQL.

How ops wires it (the only place that knows the ledger)::

    service = ProjectionService(settings.data_dir / "views.duckdb", ledger.recorder,
                                application_name=ledger.name, state_decoder=decoder_or_None)
    service.start()            # background thread; service.notify() after each saved intake batch
    api_views = service.views  # hub.views.ReadModels for the GraphQL API
    service.stop()

For data teams (documented in docs/projections.md)::

    from projections import query_arrow
    table = query_arrow("var/views.duckdb", "SELECT stage, count(*) FROM cases GROUP BY ALL")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from eventsourcing.persistence import ApplicationRecorder

from projections.projector import (
    DEFAULT_APPLICATION,
    REPLAY_FOLD,
    REPLAY_SECTION,
    REPLAY_SECTION_MAX,
    NotificationReader,
    Projector,
    read_ahead,
    reader_for,
    replay,
)
from projections.queries import DuckDBReadModels
from projections.store import ReadModelStore, connect

ProgressFn = Callable[[int, int], None]


class ProjectionService:
    """The live read side of one process: the DuckDB store, its projector and the query port."""

    def __init__(
        self,
        path: str | Path,
        source: ApplicationRecorder | NotificationReader,
        *,
        application_name: str = DEFAULT_APPLICATION,
        batch_size: int = 5000,
        poll_interval: float = 0.5,
        state_decoder: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store = ReadModelStore(path)
        read = reader_for(source) if isinstance(source, ApplicationRecorder) else source
        self.projector = Projector(
            self.store, read, application_name=application_name, batch_size=batch_size,
            poll_interval=poll_interval, state_decoder=state_decoder,
        )  # fmt: skip
        self.views = DuckDBReadModels(
            self.store.reader,
            lambda: self.projector.position,
            generation=lambda: self.store.generation,
            reading=self.store.reading,
        )

    def catch_up(self, until: int | None = None, progress: ProgressFn | None = None) -> int:
        return self.projector.catch_up(until, progress)

    def start(self) -> None:
        self.projector.start()

    def notify(self) -> None:
        self.projector.notify()

    def stop(self) -> None:
        self.projector.stop()

    def export_parquet(self, out_dir: str | Path) -> dict[str, int]:
        """Incremental Parquet export from inside the process that holds the file."""
        cur = self.store.reader()
        try:
            return export_parquet(cur, out_dir)
        finally:
            cur.close()

    def close(self) -> None:
        self.projector.stop()
        if self.views.rewinds is not None:  # the API's shared as-of snapshots and their builder
            self.views.rewinds.close()
        self.store.close()


def rebuild(
    path: str | Path,
    source: ApplicationRecorder | NotificationReader,
    *,
    application_name: str = DEFAULT_APPLICATION,
    until: int | None = None,
    batch_size: int = REPLAY_SECTION,
    progress: ProgressFn | None = None,
    state_decoder: Callable[[bytes], bytes] | None = None,
    swap: bool = True,
    fold_size: int = REPLAY_FOLD,
) -> int:
    """Replay the whole log into a FRESH file next to ``path``, then swap it in atomically.

    Readers of the old file are never disturbed while the new one is built; ``os.replace`` makes
    the switch atomic. The live file must not be held open by a running projector in another
    process (DuckDB's lock would be stolen from under it): ``check_not_in_use`` refuses then.
    With ``until`` the replay stops at that position (an auditor's copy; pass ``swap=False`` and
    a different ``path``). Returns the number of events applied.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    read = reader_for(source) if isinstance(source, ApplicationRecorder) else source
    # reading starts at once, in its own thread, while the live file is checked and the fresh one created
    sizes = {"size": batch_size, "largest": max(batch_size, REPLAY_SECTION_MAX)}
    with read_ahead(read, 0, **sizes, until=until, state_decoder=state_decoder) as sections:
        if swap and target.exists():
            check_not_in_use(target)
        fresh = target.with_name(target.name + ".rebuild")
        for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
            leftover.unlink(missing_ok=True)
        store = ReadModelStore(fresh, fresh=True)
        try:
            with store.bulk_load():
                applied = replay(store, sections, application_name, progress, fold_size)
            store._con.execute("CHECKPOINT")
        finally:
            store.close()
    os.replace(fresh, target)
    target.with_name(target.name + ".wal").unlink(missing_ok=True)
    return applied


def check_not_in_use(path: Path) -> None:
    """Raise ``RuntimeError`` when another process holds the DuckDB file (a running hub)."""
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        raise RuntimeError(
            f"{path} is in use by a running hub ({exc}); stop it first, or rebuild to another file with --out"
        ) from exc
    con.close()


def open_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection: writes raise, and the whole session sees one consistent snapshot."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        raise RuntimeError(
            f"{path} is held by a running hub: query it through the API, or export Parquet "
            f"(`hub export parquet DIR`) and query that ({exc})"
        ) from exc
    con.execute("SET TimeZone = 'UTC'")
    return con


def query_arrow(
    path: str | Path, sql: str, params: list[object] | dict[str, object] | None = None
) -> pa.Table:
    """Run read-only SQL against the read models and return an Arrow table (data teams' entry).

    The statement runs in one transaction, so it sees one consistent snapshot of every table.
    """
    con = open_read_only(path)
    try:
        con.execute("BEGIN TRANSACTION")
        table = con.sql(sql, params=params).to_arrow_table()
        con.execute("COMMIT")
        return table
    finally:
        con.close()


EXPORT_TABLES = {
    "events": 'SELECT *, CAST("at" AS DATE) AS date, department AS dept FROM events',
    "cases": "SELECT *, CAST(reported_at AS DATE) AS date, origin_department AS dept FROM cases",
}
"""What ``export_parquet`` writes, partitioned by date and department (reporter PII is never exported)."""


def export_parquet(db: str | Path | duckdb.DuckDBPyConnection, out_dir: str | Path) -> dict[str, int]:
    """Write events and cases as Parquet (hive partitions ``date=…/dept=…``), incrementally.

    Events are append-only, so each export writes only events after the last exported position
    (new files beside the old ones). Cases change, so the case snapshot of every partition touched
    since the last export is rewritten (files named by the export's position; older files of
    those partitions are removed after the new ones are written). Returns rows written per table.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = db if isinstance(db, duckdb.DuckDBPyConnection) else connect(db)
    try:
        mark_row = con.execute(
            "SELECT position FROM export_marks WHERE target = ?", [str(out.resolve())]
        ).fetchone()
        since = int(mark_row[0]) if mark_row else 0
        pos_row = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        upto = int(pos_row[0]) if pos_row else 0
        written = {"events": 0, "cases": 0}
        if upto <= since:
            return written
        pattern = f"part-{upto:012d}-{{i}}"
        ev_sql = f"{EXPORT_TABLES['events']} WHERE seq > {since} AND seq <= {upto}"
        n = con.execute(f"SELECT count(*) FROM ({ev_sql})").fetchone()
        written["events"] = int(n[0]) if n else 0
        con.execute(
            f"COPY ({ev_sql}) TO '{out / 'events'}' (FORMAT parquet, PARTITION_BY (date, dept), "
            f"OVERWRITE_OR_IGNORE, FILENAME_PATTERN '{pattern}')"
        )
        touched = (
            f"SELECT DISTINCT CAST(c.reported_at AS DATE) AS date, c.origin_department AS dept FROM cases c "
            f"WHERE c.last_position > {since}"
        )
        parts = con.execute(touched).fetchall()
        case_sql = (
            f"SELECT * FROM ({EXPORT_TABLES['cases']}) WHERE (date, dept) IN "
            f"(SELECT (date, dept) FROM ({touched}))"
        )
        n = con.execute(f"SELECT count(*) FROM ({case_sql})").fetchone()
        written["cases"] = int(n[0]) if n else 0
        if parts:
            con.execute(
                f"COPY ({case_sql}) TO '{out / 'cases'}' (FORMAT parquet, PARTITION_BY (date, dept), "
                f"OVERWRITE_OR_IGNORE, FILENAME_PATTERN '{pattern}')"
            )
            for date, dept in parts:  # drop superseded case snapshots of the rewritten partitions
                folder = out / "cases" / f"date={date}" / f"dept={dept}"
                for old in folder.glob("*.parquet"):
                    if not old.name.startswith(f"part-{upto:012d}-"):
                        old.unlink()
        con.execute(
            "INSERT INTO export_marks VALUES (?, ?, now()) ON CONFLICT (target) DO UPDATE "
            "SET position = excluded.position, exported_at = excluded.exported_at",
            [str(out.resolve()), upto],
        )
        return written
    finally:
        if not isinstance(db, duckdb.DuckDBPyConnection):
            con.close()


def as_of_file(
    path: str | Path, *, position: int | None = None, time: datetime | None = None
) -> DuckDBReadModels:
    """Read models as of a past moment from a read-models file (opened read-write: own process only)."""
    store = ReadModelStore(path)
    live = DuckDBReadModels(store.reader, lambda: store.position(DEFAULT_APPLICATION))
    return live.as_of(position=position, time=time)
