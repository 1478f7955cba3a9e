"""Shared fixtures: real servers only (nats-server from the venv, SQLite files, PostgreSQL).

PostgreSQL tests create and drop their own database on 127.0.0.1:5432 (user postgres); where that
server is unreachable they FAIL with how to start it (``require_pg``): a CI without PostgreSQL must
not stay green by skipping half the suite. ``HUB_TEST_SKIP_PG=1`` skips them instead, with the
reason, for a machine that deliberately has none (never set it in CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


SKIP_PG_ENV = "HUB_TEST_SKIP_PG"
START_PG = (
    "The PostgreSQL tests need a server at 127.0.0.1:5432, user postgres with trust (or password-less)"
    " access and a database named test. Start one, e.g.\n"
    "  docker run -d --name hub-pg -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test"
    " postgres:16\n"
    "or on Debian/Ubuntu: apt-get install postgresql && service postgresql start, then allow trust for"
    " 127.0.0.1 in pg_hba.conf and run: createdb -U postgres test.\n"
    "HUB_TEST_PG=<libpq conninfo> points the tests at another server; HUB_TEST_SKIP_PG=1 skips them"
    " instead of failing (a machine without PostgreSQL on purpose; never in CI)."
)


def _pg_unreachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_DSN!r} is unreachable: {exc}"
    return None


def require_pg() -> None:
    """Fail a PostgreSQL test when the server is unreachable (skip it when HUB_TEST_SKIP_PG=1)."""
    reason = _pg_unreachable()
    if reason is None:
        return
    if os.environ.get(SKIP_PG_ENV, "").strip() not in ("", "0"):
        pytest.skip(f"{reason} ({SKIP_PG_ENV} is set)")
    pytest.fail(f"{reason}\n{START_PG}", pytrace=False)


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


@contextmanager
def throwaway_pg_database() -> Iterator[str]:
    """A PostgreSQL database created for the caller and dropped after it; yields its URL."""
    require_pg()
    import psycopg

    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database; yields its URL (postgresql://…)."""
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_database_per_module() -> Iterator[str]:
    """A throw-away PostgreSQL database shared by one module's tests (a contract suite that opens
    its subject once per store, tests/contracts/test_ledger.py); yields its URL."""
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store-backed test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.sqlite'}"
    return str(request.getfixturevalue("pg_database"))
