"""Issue 15: the access log's store of its own, on SQLite (``access.sqlite`` beside the event store)
and PostgreSQL (``hub_access_*`` tables beside the library's), batched, merged per request, and
``hub audit access`` listing both the new records and those written into the event store before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
from typer.testing import CliRunner

from hub.adapters.audit import AccessLog, open_access_store, read_access
from ops.bootstrap import access_log, build_ledger
from ops.cli import app

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_records_are_batched_merged_per_request_and_kept_out_of_the_event_store(
    store_url: str, tmp_path: Path
) -> None:
    ledger = build_ledger(store_url)
    head = ledger.recorder.max_notification_id()
    a, b, c = uuid4(), uuid4(), uuid4()
    old = AccessLog(ledger.events)  # the form before issue 15 (records in the event store)
    old.record_access("auditor", c, ["reporter.name"], T, principal="auditor:old", operation="Before")
    old.flush()

    log = access_log(ledger, flush_interval=60)  # as the API wires it; flushed by hand here
    for case in (a, b, a):  # one request, three reads of the same fields: one record of two cases
        log.record_access("auditor", case, ["reporter.phone"], T, principal="auditor:7", operation="List",
                          request=1)  # fmt: skip
    log.record_access("auditor", a, ["timeline.actor"], T, principal="auditor:7", operation="List", request=1)
    log.record_access("operator", b, ["reporter.name"], T, principal="op:1", operation="Card", request=2)
    log.record_access("operator", b, [], T, principal="op:1", request=3)  # nothing shown: no record
    log.record_export("analyst", "cli:someone", ["events.note"], "every case up to position 9")
    assert log.pending() == 4
    assert log.flush() == 4 and log.pending() == 0
    log.close()
    assert ledger.recorder.max_notification_id() == (head or 0) + 1  # only the old-form record

    store = open_access_store(ledger.env)
    got = store.read()
    assert [(r.role, r.principal, r.fields, r.cases, r.operation) for r in got[:3]] == [
        ("auditor", "auditor:7", ("reporter.phone",), (a, b), "List"),
        ("auditor", "auditor:7", ("timeline.actor",), (a,), "List"),
        ("operator", "op:1", ("reporter.name",), (b,), "Card"),
    ]
    assert got[3].scope == "every case up to position 9" and got[3].cases == ()
    assert [r.operation for r in store.read(b)] == ["List", "Card"]  # by case
    assert len(store.read(limit=1)) == 1
    if store_url.startswith("sqlite"):
        assert (tmp_path / "access.sqlite").exists()
    assert [r.principal for r in read_access(ledger.recorder, ledger.mapper, c)] == ["auditor:old"]
    ledger.close()

    runner = CliRunner()
    result = runner.invoke(app, ["audit", "access", "--store-url", store_url, "--json"])
    assert result.exit_code == 0, result.output
    listed = orjson.loads(result.output)
    assert [(r["principal"], r["store"]) for r in listed] == [
        ("auditor:old", "event-store"), ("auditor:7", "access"), ("auditor:7", "access"), ("op:1", "access"),
        ("cli:someone", "access"),
    ]  # fmt: skip
    result = runner.invoke(app, ["audit", "access", str(b), "--store-url", store_url, "--json", "--no-old"])
    assert [r["operation"] for r in orjson.loads(result.output)] == ["List", "Card"]


def test_an_export_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from projections import ProjectionService
    from tests.projection_history import random_city

    monkeypatch.delenv("HUB_STORE_URL", raising=False)
    data = tmp_path / "var"
    ledger = build_ledger(f"sqlite:///{data / 'events.sqlite'}")
    random_city(ledger, seed=2, n_cases=5, n_steps=20)
    service = ProjectionService(data / "views.duckdb", ledger.recorder)
    service.catch_up()
    service.close()
    result = CliRunner().invoke(app, ["export", "parquet", str(tmp_path / "out"), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    (record,) = open_access_store(ledger.env).read()
    assert record.operation == "hub export parquet" and record.role == "cli"
    assert record.fields == ("timeline.actor", "timeline.note") and record.principal.startswith("os:")
    assert "events" in record.scope and str((tmp_path / "out").resolve()) in record.scope
    ledger.close()
