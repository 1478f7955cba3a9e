"""Issue 15 acceptance: after `hub privacy erase PERSON` no byte the hub holds names the person.

A hub runs (intake on a real nats-server, the store, the live projector holding its DuckDB file);
a person reports a city-management case and a court mediation (their id number in the summary), an
anonymous crisis case names them and their phone in a note, one of their events is dead-lettered,
and another person reports too. `hub privacy erase` runs as its own process, as an operator runs
it. Then every byte is searched for the name, phone and id number (raw UTF-8 and JSON escapes):
the event store (SQLite file bytes / every PostgreSQL table's values), the DuckDB read models
(file bytes and every value), Parquet exported afterwards (file bytes and every value), a replay,
the NATS streams as served (CITY, CITY_DLQ: payloads and headers) and the JetStream store files,
and the hub's log file. Counts and replay still work; the audit chain still verifies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import DeliverPolicy

from hub import messages as m
from hub.adapters.audit import AuditChain
from hub.adapters.privacy.erasure import ERASED
from ops.bootstrap import build_ledger, connect_nats, projector_decoder, start_intake
from ops.natsd import EmbeddedNats
from projections import ProjectionService, export_parquet, rebuild
from tests.factories import case_history, event
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]
P1 = {"name": "王小明", "phone": "13911112222", "id_number": "320102199001011234"}
P2 = {"name": "李四娘", "phone": "13733334444"}


def _forms(values: dict[str, str]) -> dict[str, list[bytes]]:
    """Each value as raw UTF-8 and as JSON escapes (how an ASCII-only publisher writes it)."""
    out = {}
    for v in values.values():
        escaped = json.dumps(v)[1:-1]
        out[v] = sorted({v.encode(), escaped.encode(), escaped.upper().replace("\\U", "\\u").encode()})
    return out


def _found(blob: bytes, values: dict[str, str]) -> list[str]:
    return [v for v, forms in _forms(values).items() if any(f in blob for f in forms)]


def _events() -> list[dict[str, Any]]:
    own = case_history("E1")  # a city-management case P1 reported, closed
    own[0]["data"]["reporter"] = dict(P1)
    own[0]["data"]["title"] = f"{P1['name']}反映路灯不亮，电话{P1['phone']}"  # a department's own title
    court = event(
        "(2026)宁0102诉前调7号", m.Action.REPORTED, department="courts", kind="mediation",
        source="courts-platform",
        data={
            "category": "MD-02", "title": "邻里纠纷：(2026)宁0102诉前调7号", "channel": "court_platform",
            "description": f"申请人{P1['name']}（身份证{P1['id_number']}）与邻居噪音纠纷",
            "reporter": dict(P1),
        },
    )  # fmt: skip
    crisis = [
        event("H-9", m.Action.REPORTED, department="health", kind="psych_crisis", source="health-his",
              data={"category": "psych_crisis", "title": "心理危机：急性心理应激", "priority": "urgent",
                    "location": {"lon": 118.73, "lat": 32.0}}),
        event("H-9", m.Action.REGISTERED, n=1, department="health", kind="psych_crisis",
              source="health-his",
              data={"note": f"当事人{P1['name']}情绪激动，联系电话{P1['phone']}"}),
    ]  # fmt: skip
    other = case_history("E2")
    other[0]["data"]["reporter"] = dict(P2)
    return [*own, court, *crisis, *other]


def _poison() -> bytes:
    bad = case_history("E3", steps=1)[0]
    bad["data"]["reporter"] = dict(P1)
    bad["data"]["priority"] = "whenever"  # not a priority: dead-lettered, P1 inside
    return json.dumps(bad).encode()  # ASCII-only JSON: the name travels as \\u escapes


async def _served(js: Any, stream: str) -> bytes:
    """Every message of a stream as the server serves it: subject, headers and payload."""
    info = await js.stream_info(stream)
    if not info.state.messages:
        return b""
    sub = await js.subscribe(
        info.config.subjects[0], ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, stream=stream
    )
    parts: list[bytes] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=5)
            except NatsTimeout:
                break
            parts += [msg.subject.encode(), orjson.dumps(msg.headers or {}), msg.data]
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return b"\n".join(parts)


def _all_values(con: duckdb.DuckDBPyConnection) -> bytes:
    """Every value of every table, as JSON text (DuckDB compresses strings in its file)."""
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    return b"\n".join(
        orjson.dumps(con.sql(f'SELECT * FROM "{t}"').to_arrow_table().to_pylist(), default=str)
        for t in tables
    )


def _duckdb_values(path: Path) -> bytes:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return _all_values(con)
    finally:
        con.close()


def _store_bytes(store_url: str, tmp_path: Path) -> bytes:
    if store_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("events.sqlite"))
    import psycopg

    parts: list[bytes] = []
    with psycopg.connect(store_url) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog',"
            " 'information_schema')"
        ).fetchall()
        assert tables
        for schema, table in tables:
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                parts += [v if isinstance(v, bytes | memoryview) else str(v).encode() for v in row]
    return b"\n".join(bytes(p) for p in parts)


def _views_file(data: Path) -> bytes:
    """The DuckDB files' bytes, read by another process: closing a descriptor of a file drops every
    POSIX lock this process holds on it, DuckDB's too (and a running hub must keep its lock)."""
    files = sorted(str(p) for p in data.iterdir() if p.name.startswith("views.duckdb"))
    return subprocess.run(["cat", *files], capture_output=True, check=True).stdout


def _tree_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.parametrize("hub", ["running", "stopped"])
async def test_erasure_leaves_no_byte_naming_the_person(
    store_url: str, nats_server: EmbeddedNats, tmp_path: Path, hub: str
) -> None:
    data = tmp_path  # the hub's data dir: store (SQLite), views.duckdb, nats/ (the server's store)
    assert nats_server.store_dir == data / "nats"
    log_file = data / "hub.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10)
    intake, task = await start_intake(nc, store_url, writer_process=False)
    reader = build_ledger(store_url)
    service = ProjectionService(
        data / "views.duckdb",
        reader.recorder,
        application_name=reader.name,
        state_decoder=projector_decoder(reader),
    )
    own = m.case_id_for("citymgmt-dcm", "E1")
    crisis = m.case_id_for("health-his", "H-9")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUB_DATA_DIR": str(data)}
    env.pop("HUB_NATS_URL", None)
    erase = [
        sys.executable,
        "-m",
        "ops.cli",
        "privacy",
        "erase",
        P1["phone"],
        "--store-url",
        store_url,
        "--json",
    ]
    try:
        events = _events()
        for e in events:
            case = m.case_id_for(e["source"], e["caseref"])
            await js.publish(m.keyed_subject(e["department"], e["type"], case), orjson.dumps(e))
        await js.publish("city.citymgmt.case.reported", _poison())
        await eventually(
            lambda: (
                intake.stats.dead_lettered == 1
                and (reader.recorder.max_notification_id() or 0) >= len(events)
            ),
            what="every event stored, the poison dead-lettered",
        )
        AuditChain(reader.recorder).extend()
        service.start()
        last = reader.recorder.max_notification_id() or 0
        await eventually(lambda: service.views.position() >= last, what="projected")
        reporter = service.views.reporter(own)
        assert reporter is not None and reporter.name == P1["name"]
        counts_before = service.store.counts()
        # the searches find the person before the erasure (so finding nothing after means something)
        assert set(_found(await _served(js, m.STREAM), P1)) == set(P1.values())
        assert _found(await _served(js, m.DLQ_STREAM), P1)
        assert _found(_duckdb_values_live(service), P1)
        assert _found(_tree_bytes(nats_server.store_dir), P1)  # the raw files hold it in clear
        cur = service.store.reader()
        cur.execute("CHECKPOINT")
        cur.close()
        assert set(_found(_views_file(data), P1)) == set(P1.values())  # and so does the DuckDB file

        if hub == "running":  # erase as an operator does, while the projector holds the DuckDB file
            done = await asyncio.to_thread(
                subprocess.run, [*erase, "--nats-url", nats_server.url],
                env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            report = orjson.loads(done.stdout)
            assert "running hub" in report["read_models"], report
            # at once in the running hub's read models and API: no replay
            await eventually(
                lambda: (r := service.views.reporter(own)) is not None and r.name == ERASED,
                what="the running projector applied the erasure",
            )
            assert not _found(_duckdb_values_live(service), P1)
    finally:
        service.close()
        intake.stop()
        await task
        await nc.close()

    if hub == "stopped":  # the whole hub is down: the command opens the views and the stream store
        nats_server.stop()
        done = await asyncio.to_thread(
            subprocess.run, erase, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        report = orjson.loads(done.stdout)
        assert report["read_models"].startswith("masked and compacted"), report
        nats_server.start()
    assert report["cases"] == 2 and report["mentioned"] == 1, report
    assert report["streams"] == {
        # every event of the person's two cases and of the case naming them, and the poison
        m.STREAM: f"deleted 11 of {len(_events()) + 1} message(s)",
        m.DLQ_STREAM: "deleted 1 of 1 message(s)",
    }, report

    # the API of a hub (re)started now: no replay either
    after = ProjectionService(
        data / "views.duckdb",
        reader.recorder,
        application_name=reader.name,
        state_decoder=projector_decoder(reader),
    )
    try:
        after.catch_up()
        assert after.views.reporter(own).name == ERASED  # type: ignore[union-attr]
        assert after.views.reporter(m.case_id_for("citymgmt-dcm", "E2")).name == P2["name"]  # type: ignore[union-attr]
        assert [t.note for t in after.views.timeline(crisis) if t.note] == [ERASED]
        assert after.store.counts() == counts_before
    finally:
        after.close()
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()

    nc = await connect_nats(nats_server.url, "test")
    served = await _served(nc.jetstream(timeout=10), m.STREAM) + await _served(
        nc.jetstream(timeout=10), m.DLQ_STREAM
    )
    await nc.close()
    assert not _found(served, P1), "NATS streams as served"
    assert _found(served, P2)  # only the person's messages went
    nats_server.stop()
    assert not _found(_tree_bytes(nats_server.store_dir), P1), "JetStream store files"

    # replay and exports made afterwards
    fresh = build_ledger(store_url)
    replayed = tmp_path / "replay" / "replayed.duckdb"
    rebuild(replayed, fresh.recorder, application_name=fresh.name, state_decoder=projector_decoder(fresh))
    export_parquet(data / "views.duckdb", data / "parquet")
    parquet_values = b"\n".join(
        orjson.dumps(pq.read_table(p).to_pylist(), default=str) for p in (data / "parquet").rglob("*.parquet")
    )
    con = duckdb.connect(str(replayed), read_only=True)
    try:
        replay_counts = {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("events", "cases", "case_links", "case_reporters")
        }
    finally:
        con.close()
    assert replay_counts == counts_before

    searched = {
        "event store": _store_bytes(store_url, tmp_path),
        "DuckDB file": _views_file(data),
        "DuckDB values": _duckdb_values(data / "views.duckdb"),
        "replay": replayed.read_bytes() + _duckdb_values(replayed),
        "Parquet files": _tree_bytes(data / "parquet"),
        "Parquet values": parquet_values,
        "hub log": log_file.read_bytes(),
        "the command's output and log": (done.stdout + done.stderr).encode(),
        "everything else in the data dir": _tree_bytes(data),
    }
    leaks = {where: _found(blob, P1) for where, blob in searched.items() if _found(blob, P1)}
    assert not leaks, leaks
    assert P2["name"].encode() in searched["DuckDB values"]  # the other person is untouched

    chain = AuditChain(fresh.recorder)
    chain.extend()
    assert chain.verify().ok  # crypto-shredding keeps every stored byte: the history verifies
    fresh.close()
    reader.close()


def _duckdb_values_live(service: ProjectionService) -> bytes:
    cur = service.store.reader()
    try:
        return _all_values(cur)
    finally:
        cur.close()


async def test_an_event_the_intake_has_not_settled_is_kept_until_it_has(nats_server: EmbeddedNats) -> None:
    """Erasing from CITY never loses an event before the store records it (sealed)."""
    from hub.adapters.privacy import erase_from_stream
    from hub.intake import ensure_streams

    nc = await connect_nats(nats_server.url, "test")
    try:
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        pull = await js.pull_subscribe("city.>", durable="intake", stream=m.STREAM)
        report = case_history("E9", steps=1)[0]
        report["data"]["reporter"] = dict(P1)
        await js.publish("city.citymgmt.case.reported", orjson.dumps(report))
        first = await erase_from_stream(js, m.STREAM, [], [P1["phone"]])
        assert (first.deleted, first.pending) == ([], [1])
        for msg in await pull.fetch(1, timeout=5):
            await msg.ack_sync()
        second = await erase_from_stream(js, m.STREAM, [], [P1["phone"]])
        assert (second.deleted, second.pending) == ([1], [])
        assert not _found(await _served(js, m.STREAM), P1)
    finally:
        await nc.close()


def test_erasing_one_anonymous_case_shreds_its_free_text_only(tmp_path: Path) -> None:
    """`hub privacy erase --case` on a case nobody is named in: its own key goes, nothing else."""
    from hub.adapters.privacy.erasure import erase, plan_erasure

    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    ledger = build_ledger(url)
    crisis = _events()[-9:-7]  # the anonymous crisis report and its note naming P1
    kept = _events()[:1]  # P1's own report elsewhere
    for e in [*kept, *crisis]:
        outcome = ledger.apply_batch([m.validate(orjson.dumps(e), ledger.catalogue)])  # type: ignore[list-item]
        assert outcome[0].verdict.value == "applied", outcome
    case = m.case_id_for("health-his", "H-9")
    plan = plan_erasure(ledger.mapper, ledger.recorder, case_id=case)
    assert plan.person_kids == set() and plan.cases == {str(case)}
    assert erase(ledger.events, ledger.mapper.sealer, plan, "test") == (0, 1)
    ledger.close()
    fresh = build_ledger(url)
    assert fresh.get_case(case).stage.value == "registered"
    notes = [e.note for e in fresh.events.get(case) if getattr(e, "note", "")]
    assert notes == [ERASED]
    assert fresh.get_case(m.case_id_for("citymgmt-dcm", "E1")).reporter["name"] == P1["name"]
    fresh.close()
