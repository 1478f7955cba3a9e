"""The deadline watcher (督办) follows the log through the hub's one follower: on PostgreSQL a case
whose events become visible after a higher id's is still watched (no missed escalation)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

from hub import messages as m
from ops.bootstrap import build_ledger
from tests.factories import case_history
from tests.pg_log import Held, barrier_waiting
from tests.support import wait_until

FAR = datetime(2030, 1, 1, tzinfo=UTC)


def _copy_case(conn: psycopg.Connection[Any], table: str, source: uuid.UUID) -> uuid.UUID:
    """Every stored event of ``source`` again under a fresh case id, in the connection's transaction."""
    copy = uuid.uuid4()
    conn.execute(
        sql.SQL(
            "INSERT INTO {t} (originator_id, originator_version, topic, state)"
            " SELECT %s, originator_version, topic, state FROM {t} WHERE originator_id = %s"
            " ORDER BY originator_version"
        ).format(t=sql.Identifier(table)),
        (copy, source),
    )
    return copy


def test_a_case_visible_out_of_order_is_still_escalated(pg_database: str) -> None:
    writer = build_ledger(pg_database)
    history = case_history("OPEN", steps=4)  # accepted: an open stage with a deadline
    writer.apply_batch([m.validate(orjson.dumps(e), writer.catalogue) for e in history])  # type: ignore[misc]
    seed = m.case_id_for("citymgmt-dcm", "OPEN")
    table = writer.recorder.events_table_name
    watcher = build_ledger(pg_database)  # another process's watcher
    assert watcher.breach_events(datetime(2000, 1, 1, tzinfo=UTC)) == []  # its position: the log's end
    with psycopg.connect(pg_database) as slow, psycopg.connect(pg_database) as fast:
        late = _copy_case(slow, table, seed)  # lower ids, held open
        held = Held(slow, [])
        early = _copy_case(fast, table, seed)
        fast.commit()  # higher ids, visible first
        found: list[Any] = []
        thread = threading.Thread(target=lambda: found.append(watcher.breach_events(FAR)), name="watcher")
        thread.start()
        wait_until(lambda: barrier_waiting(pg_database, table), what="the watcher's barrier waiting")
        assert thread.is_alive() and not found, "the watcher read past ids that may still appear"
        held.commit()
        thread.join(60)
    escalated = {uuid.UUID(str(e["caseid"])) for e in found[0]}
    assert escalated == {seed, early, late}
    writer.close()
    watcher.close()
