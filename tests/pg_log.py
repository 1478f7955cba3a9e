"""Writers that make PostgreSQL notification ids visible out of order, for the log-follower tests.

Why raw connections: the eventsourcing library's default insert path takes ``LOCK TABLE … IN
EXCLUSIVE MODE``, so its ids are handed out in commit order; a foreign writer (or the library's
``enable_db_functions`` path) takes an id from the sequence at insert time and may commit after a
higher id. These helpers are such a writer: :func:`held_insert` keeps a transaction open after its
insert until the test ends it; :func:`barrier_waiting` tells when a follower's write barrier waits.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql


class Held:
    """An open transaction that has inserted rows: ``ids`` are taken but not yet visible."""

    def __init__(self, conn: psycopg.Connection[Any], ids: list[int]) -> None:
        self.conn = conn
        self.ids = ids
        self.ended = False

    def commit(self) -> None:
        self.conn.commit()
        self.ended = True

    def rollback(self) -> None:
        self.conn.rollback()
        self.ended = True


def insert_rows(
    conn: psycopg.Connection[Any], table: str, topic: str, n: int = 1, state: bytes = b"{}"
) -> list[int]:
    """Insert ``n`` rows of ``topic`` (fresh case ids) in the connection's transaction; their ids."""
    ids = []
    for _ in range(n):
        row = conn.execute(
            sql.SQL(
                "INSERT INTO {} (originator_id, originator_version, topic, state)"
                " VALUES (%s, 1, %s, %s) RETURNING notification_id"
            ).format(sql.Identifier(table)),
            (uuid.uuid4(), topic, state),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


@contextmanager
def held_insert(dsn: str, table: str, topic: str, n: int = 1, state: bytes = b"{}") -> Iterator[Held]:
    """Insert ``n`` rows and keep the transaction open; it is rolled back unless the test ended it."""
    with psycopg.connect(dsn) as conn:
        held = Held(conn, insert_rows(conn, table, topic, n, state))
        try:
            yield held
        finally:
            if not held.ended:
                conn.rollback()


def committed_insert(dsn: str, table: str, topic: str, n: int = 1, state: bytes = b"{}") -> list[int]:
    """Insert ``n`` rows in a transaction of their own and commit it at once; their ids."""
    with psycopg.connect(dsn) as conn:
        ids = insert_rows(conn, table, topic, n, state)
        conn.commit()
    return ids


def barrier_waiting(dsn: str, table: str) -> bool:
    """True while some session waits for a ``SHARE`` lock on the table: a follower's write barrier."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE c.relname = %s AND l.mode = 'ShareLock' AND NOT l.granted",
            (table,),
        ).fetchone()
    return bool(row and row[0])


def out_of_order(
    lower: psycopg.Connection[Any],
    higher: psycopg.Connection[Any],
    table: str,
    topic: str,
    *,
    hold: float = 0.02,
    roll_back_lower: bool = False,
) -> list[int]:
    """One id taken by ``lower`` and held open for ``hold`` seconds while ``higher`` inserts and
    commits the next: the higher id becomes visible first. Returns the ids that ended committed.

    The lower transaction ends on a timer, not after the higher insert: that insert may queue
    behind a follower's write barrier, which waits for the lower transaction — a writer that held
    one transaction open until its other insert went through would deadlock with the barrier (a
    test artefact; real writers do not wait on each other inside a transaction).
    """
    ids = insert_rows(lower, table, topic)
    end = threading.Timer(hold, lower.rollback if roll_back_lower else lower.commit)
    end.start()
    try:
        ids += insert_rows(higher, table, topic)
        higher.commit()
    finally:
        end.join()
    return ids[1:] if roll_back_lower else ids
