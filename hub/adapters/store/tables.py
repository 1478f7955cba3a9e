"""Side tables in the event store's own database (audit chain, person keys), on SQLite and PostgreSQL.

Why the store's database and the library's own datastore: the audit chain and the key table must
live wherever the events live (one backup, one set of credentials, the same SQLite file or the
same PostgreSQL schema), and borrowing ``recorder.datastore`` reuses the library's connection
settings (lock timeout, pool, schema) instead of a second configuration. Only plain SQL that both
engines accept is used; the one difference, the parameter marker, is translated here.

Why in ``store/``: it knows the store's drivers and its events table, as the rest of this package
does; the audit chain and the privacy keyring are its users, not its owners.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class StoreTables:
    """Plain-SQL access to the event store database behind an eventsourcing application recorder."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore
        module = type(self.datastore).__module__
        if module.startswith("eventsourcing.sqlite"):
            self.dialect = "sqlite"
            self.schema = ""
        elif module.startswith("eventsourcing.postgres"):
            self.dialect = "postgres"
            self.schema = str(self.datastore.schema)
        else:
            raise TypeError(f"audit and privacy tables need a SQLite or PostgreSQL store, not {module}")
        self.events_table = str(recorder.events_table_name)
        self.id_column = "rowid" if self.dialect == "sqlite" else "notification_id"
        self.blob = "BLOB" if self.dialect == "sqlite" else "BYTEA"

    def table(self, name: str) -> str:
        """A side table's name, qualified by the PostgreSQL schema the events live in."""
        return f"{self.schema}.{name}" if self.schema else name

    @property
    def events(self) -> str:
        return self.table(self.events_table) if "." not in self.events_table else self.events_table

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[Any]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield cursor

    def execute(self, cursor: Any, statement: str, params: Sequence[Any] = ()) -> None:
        cursor.execute(self.sql(statement), tuple(params))

    def executemany(self, cursor: Any, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cursor.executemany(self.sql(statement), [tuple(r) for r in rows])

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.transaction(commit=False) as cursor:
            cursor.execute(self.sql(statement), tuple(params))
            return list(cursor.fetchall())

    def ddl(self, *statements: str) -> None:
        with self.transaction() as cursor:
            for statement in statements:
                cursor.execute(statement)
