"""Issue 9: the PostgreSQL store fails under a running intake worker; nothing is lost or doubled.

The test kills the intake's PostgreSQL connections (``pg_terminate_backend``) again and again while
events flow, then makes the database refuse connections for a few seconds (``ALLOW_CONNECTIONS
false`` on this test's own database: the shared server keeps running for everyone else). The
worker's ``/readyz`` must report the store down while that lasts and ready again afterwards; every
event is stored exactly once, in per-case order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.publisher import Published, publish_events
from hub.intake import ensure_streams
from ops.bootstrap import build_ledger, connect_nats
from ops.natsd import EmbeddedNats, free_port
from tests.conftest import PG_DSN
from tests.factories import case_history
from tests.support import assert_exactly_once, eventually, stored_history

HUB = str(Path(sys.executable).parent / "hub")
CASES = 1000  # × 7 events


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


@pytest.mark.slow
async def test_store_connections_killed_and_database_refusing_during_intake(
    nats_server: EmbeddedNats, pg_database: str, tmp_path: Path
) -> None:
    dbname = pg_database.rsplit("/", 1)[1]
    events = [e for i in range(CASES) for e in case_history(f"P{i:04d}")]
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    await ensure_streams(js)
    admin = psycopg.connect(PG_DSN, autocommit=True)  # on another database: never terminated here
    build_ledger(pg_database)  # creates the tables before the worker and the killer start
    port = free_port()
    log = (tmp_path / "intake.log").open("wb")
    env = {**os.environ, "HUB_DATA_DIR": str(tmp_path / "var")}
    worker = subprocess.Popen(
        [HUB, "intake", "--nats-url", nats_server.url, "--store-url", pg_database, "--batch-size", "100",
         "--retry-delays", "0.2,0.5,1,2,4", "--ack-wait", "2", "--http-port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    published: list[Published] = []
    observed: dict[str, Any] = {"killed": 0}

    def terminate_backends() -> int:
        rows = admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
        return len(rows)

    def stored() -> int:
        try:
            with psycopg.connect(pg_database, connect_timeout=2) as conn:
                row = conn.execute("select count(*) from cityhub_events").fetchone()
                return int(row[0]) if row else 0
        except psycopg.Error:
            return -1

    async def publish_all() -> None:
        for start in range(0, len(events), 700):
            published.extend(await publish_events(js, events[start : start + 700]))
            await asyncio.sleep(0.5)

    started = time.monotonic()
    try:
        await eventually(lambda: readyz(port)[0] == 200)
        publishing = asyncio.create_task(publish_all())
        await eventually(lambda: stored() > 300)

        # 1. Connections killed, repeatedly, under load.
        for _ in range(12):
            observed["killed"] += await asyncio.to_thread(terminate_backends)
            await asyncio.sleep(0.3)
        observed["stored_after_kills"] = stored()

        # 2. The database refuses connections for a while: readiness must say so while it lasts.
        admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        outage_started = time.monotonic()
        try:
            observed["killed"] += await asyncio.to_thread(terminate_backends)
            await eventually(lambda: readyz(port)[0] == 503, every=0.2)
            observed["not_ready_after_s"] = round(time.monotonic() - outage_started, 2)
            _, body = readyz(port)
            assert body["components"]["store"] is False and body["components"]["nats"] is True, body
            for _ in range(10):  # still not ready while the outage lasts
                await asyncio.sleep(0.3)
                assert readyz(port)[0] == 503
        finally:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        outage_ended = time.monotonic()
        observed["outage_s"] = round(outage_ended - outage_started, 2)

        await eventually(lambda: readyz(port)[0] == 200, every=0.2)
        observed["ready_again_after_s"] = round(time.monotonic() - outage_ended, 2)
        await asyncio.wait_for(publishing, 300)
        assert {r.status for r in published} == {"accepted"}
        await eventually(lambda: stored() >= len(events), every=0.2)
        await asyncio.sleep(2.5)  # a redelivery applied twice would show up now (ack wait 2 s)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            metrics = r.read().decode()
        assert "hub_intake_applied_total" in metrics and 'hub_component_up{component="store"} 1' in metrics
        observed["seconds"] = round(time.monotonic() - started, 1)
        print(f"store outage: {observed}")
    finally:
        with contextlib.suppress(Exception):
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        worker.terminate()
        try:
            code = worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            code = worker.wait(10)
        admin.close()
        await nc.close()
    assert code == 0, (tmp_path / "intake.log").read_text()[-3000:]
    assert observed["killed"] > 0
    history = stored_history(build_ledger(pg_database))
    assert_exactly_once(history, (e["id"] for e in events))
    assert len(history) == CASES and all(len(v) == 7 for v in history.values())
