"""Shared fixtures: real servers only (nats-server from the venv, SQLite files, PostgreSQL).

PostgreSQL tests create and drop their own database on 127.0.0.1:5432 (user postgres); where that
server is unreachable they are skipped with the reason, never silently passed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from ops.natsd import EmbeddedNats, free_port

PG_DSN = os.environ.get("HUB_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")

# Property tests are judged on what they find, not on how fast an example runs: on a loaded 2-core
# machine hypothesis' default 200 ms deadline per example and its "too slow" health check fail
# tests that are right. Every property test in the suite gets this profile.
settings.register_profile(
    "busy-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
settings.load_profile("busy-machine")


def _pg_unreachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_DSN!r} is unreachable: {exc}"
    return None


@pytest.fixture()
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A fresh nats-server with JetStream on a free loopback port, storage in tmp_path.

    Authenticated, as every server of the hub: ``nats_server.url`` carries the hub user's
    credentials (connect with it), ``nats_server.department_url("police")`` a department's, and
    ``nats_server.address`` none (anonymous clients are refused)."""
    server = EmbeddedNats(
        store_dir=tmp_path / "nats", port=free_port(), server_name=f"test-{uuid.uuid4().hex[:6]}"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database; yields its URL (postgresql://…)."""
    reason = _pg_unreachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store-backed test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.sqlite'}"
    return str(request.getfixturevalue("pg_database"))
