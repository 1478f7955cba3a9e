"""Issue 8 acceptance: tamper tests on SQLite and PostgreSQL; the first changed position is named."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import orjson
import psycopg
import pytest

from hub import messages as m
from hub.adapters.audit import AuditChain, Head
from hub.adapters.audit.chain import GENESIS, link
from ops.bootstrap import build_ledger
from ops.settings import store_env
from tests.factories import case_history
from tests.pg_log import barrier_waiting, committed_insert, held_insert
from tests.support import wait_until

N_CASES, STEPS = 3, 7  # 21 events


def _store(url: str) -> tuple[Any, AuditChain]:
    ledger = build_ledger(url)
    for i in range(N_CASES):
        ledger.apply_batch([m.validate(orjson.dumps(e), ledger.catalogue) for e in case_history(f"T{i}")])  # type: ignore[misc]
    chain = AuditChain(ledger.recorder, batch_size=5)  # several blocks
    assert chain.extend() == N_CASES * STEPS
    return ledger, chain


class Raw:
    """Direct SQL on the store, as a tamperer with database access would do it."""

    def __init__(self, url: str) -> None:
        env = store_env(url)
        self.sqlite = env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
        if self.sqlite:
            self.con: Any = sqlite3.connect(env["SQLITE_DBNAME"])
            self.table, self.id = "stored_events", "rowid"
        else:
            self.con = psycopg.connect(url, autocommit=True)
            self.table, self.id = "cityhub_events", "notification_id"

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        sql = sql.format(t=self.table, id=self.id)
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        cur = self.con.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        if self.sqlite:
            self.con.commit()
        return list(rows)

    def state(self, position: int) -> bytes:
        return bytes(self.run("SELECT state FROM {t} WHERE {id} = ?", (position,))[0][0])

    def close(self) -> None:
        self.con.close()


def test_untouched_store_verifies(store_url: str) -> None:
    ledger, chain = _store(store_url)
    report = chain.verify()
    assert report.ok and report.checked == 21 and report.head.position == 21
    assert report.head == Head(21, 21, chain.head().head, report.head.block)
    ledger.close()


def test_the_chain_read_hashes_what_the_library_reads(store_url: str) -> None:
    """The chain reads plain rows (not ``Notification`` objects): its head must equal the links
    folded over the library's own view of the same events (ids as ``UUID``, states as bytes)."""
    ledger, chain = _store(store_url)
    expected = GENESIS
    for n in ledger.recorder.select_notifications(start=1, limit=1000):
        expected = link(expected, n)
    assert chain.head().head == expected.hex()
    ledger.close()


@pytest.mark.parametrize("tamper", ["edit_byte", "delete", "insert_tail", "swap"])
def test_tampering_is_found_at_its_position(store_url: str, tamper: str) -> None:
    ledger, chain = _store(store_url)
    raw = Raw(store_url)
    try:
        if tamper == "edit_byte":
            state = bytearray(raw.state(10))
            state[-3] ^= 0x01
            raw.run("UPDATE {t} SET state = ? WHERE {id} = ?", (bytes(state), 10))
            expected = (10, "modified")
        elif tamper == "delete":
            raw.run("DELETE FROM {t} WHERE {id} = ?", (12,))
            expected = (12, "deleted")
        elif tamper == "insert_tail":
            row = raw.run("SELECT topic, state FROM {t} WHERE {id} = ?", (5,))[0]
            forged = "00000000-0000-0000-0000-00000000f00d"
            oid = forged.replace("-", "") if raw.sqlite else forged
            raw.run(
                "INSERT INTO {t} ({id}, originator_id, originator_version, topic, state)"
                " VALUES (?, ?, ?, ?, ?)",
                (30, oid, 1, row[0], bytes(row[1])),
            )
            expected = (30, "unchained")
        else:  # swap positions 3 and 9
            for a, b in ((3, -1), (9, 3), (-1, 9)):
                raw.run("UPDATE {t} SET {id} = ? WHERE {id} = ?", (b, a))
            expected = (3, "modified")
        report = chain.verify()
        assert not report.ok
        assert report.finding is not None
        assert (report.finding.position, report.finding.kind) == expected, report.finding
        assert str(expected[0]) in report.finding.detail
    finally:
        raw.close()
        ledger.close()


def test_forged_row_in_a_gap_is_an_insertion(pg_database: str) -> None:
    """PostgreSQL ids may have gaps: the chain follows the ids present; a row put into a gap is found."""
    ledger = build_ledger(pg_database)
    apply = lambda ref: ledger.apply_batch(  # noqa: E731
        [m.validate(orjson.dumps(e), ledger.catalogue) for e in case_history(ref)]  # type: ignore[misc]
    )
    apply("G1")
    raw = Raw(pg_database)
    raw.run(
        "SELECT nextval(pg_get_serial_sequence('cityhub_events', 'notification_id'))"
    )  # id 8 is never used
    apply("G2")
    chain = AuditChain(ledger.recorder)
    chain.extend()
    ids = [r[0] for r in raw.run("SELECT {id} FROM {t} ORDER BY 1")]
    assert 8 not in ids and len(ids) == 14
    assert chain.verify().ok
    row = raw.run("SELECT topic, state FROM {t} WHERE {id} = 1")[0]
    raw.run(
        "INSERT INTO {t} ({id}, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
        (8, "00000000-0000-0000-0000-00000000f00d", 1, row[0], bytes(row[1])),
    )
    report = chain.verify()
    assert report.finding is not None and (report.finding.position, report.finding.kind) == (8, "inserted")
    raw.close()
    ledger.close()


def test_rewritten_chain_is_caught_by_the_anchored_head(store_url: str) -> None:
    """A tamperer who also rebuilds the chain table cannot match the head anchored outside the store."""
    ledger, chain = _store(store_url)
    anchored = chain.head()
    raw = Raw(store_url)
    try:
        state = bytearray(raw.state(4))
        state[-2] ^= 0x01
        raw.run("UPDATE {t} SET state = ? WHERE {id} = ?", (bytes(state), 4))
        raw.run("DELETE FROM hub_audit_chain")
    finally:
        raw.close()
    fresh = AuditChain(ledger.recorder)
    fresh.extend()
    assert fresh.verify().ok  # consistent with itself …
    report = fresh.verify(anchor=anchored)  # … but not with the anchor
    assert report.finding is not None and report.finding.kind == "anchor-mismatch"
    assert report.finding.position == 21
    ledger.close()


def test_deleting_the_tail_with_its_chain_blocks_is_caught_by_the_anchor(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    ledger, chain = _store(url)
    anchored = chain.head()
    raw = Raw(url)
    raw.run("DELETE FROM {t} WHERE {id} > 20")
    raw.run("DELETE FROM hub_audit_chain WHERE last_id > 20")
    raw.close()
    report = AuditChain(ledger.recorder).verify(anchor=anchored)
    assert report.finding is not None and report.finding.kind == "anchor-mismatch"
    ledger.close()


async def test_head_is_anchored_in_nats_kv(tmp_path: Any, nats_server: Any) -> None:
    import nats

    from hub.adapters.audit.anchor import anchor_head, anchored_head

    ledger, chain = _store(f"sqlite:///{tmp_path / 'events.sqlite'}")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        assert await anchored_head(js) is None
        revision = await anchor_head(js, chain.head())
        assert revision >= 1
        got = await anchored_head(js)
        assert got is not None and (got.position, got.count, got.head) == (21, 21, chain.head().head)
        assert chain.verify(anchor=got).anchor_checked
    finally:
        await nc.close()
        ledger.close()


@pytest.mark.parametrize("lower_ends", ["commit", "rollback"])
def test_an_id_visible_out_of_order_is_chained_not_alarmed(pg_database: str, lower_ends: str) -> None:
    """PostgreSQL: a writer holds a lower id open while a higher one commits. The chain must not step
    past the lower id (``verify`` would call it "inserted": a false tamper alarm); rolled back, the
    lower id is stepped over without waiting for it again."""
    ledger, chain = _store(pg_database)
    table = ledger.recorder.events_table_name
    first = ledger.recorder.select_notifications(start=None, limit=1)[0]
    with held_insert(pg_database, table, first.topic, state=bytes(first.state)) as lower:
        higher = committed_insert(pg_database, table, first.topic, state=bytes(first.state))
        assert lower.ids[0] < higher[0]
        chained: list[int] = []
        extend = threading.Thread(target=lambda: chained.append(chain.extend()), name="chain")
        extend.start()
        wait_until(lambda: barrier_waiting(pg_database, table), what="the chain's barrier waiting")
        assert extend.is_alive() and not chained, "the chain stepped past an id that may still appear"
        lower.commit() if lower_ends == "commit" else lower.rollback()
        extend.join(60)
    expected = lower.ids + higher if lower_ends == "commit" else higher
    assert chained == [len(expected)]
    assert chain.extend() == 0
    report = chain.verify()
    assert report.ok, report.finding
    assert report.checked == N_CASES * STEPS + len(expected)
    assert report.head.position == higher[0]
