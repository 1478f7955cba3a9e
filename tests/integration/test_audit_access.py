"""Read access log (recording side) and the `hub audit` / `hub privacy` commands end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
from typer.testing import CliRunner

from hub import messages as m
from hub.adapters.audit import AccessLog, AuditChain, read_access
from ops.bootstrap import build_ledger
from ops.cli import app
from projections import rebuild
from tests.factories import case_history

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_screen_and_auditor_reads_of_one_case_are_recorded_with_fields(
    store_url: str, tmp_path: Path
) -> None:
    ledger = build_ledger(store_url)
    ledger.apply_batch([m.validate(orjson.dumps(e), ledger.catalogue) for e in case_history("A1")])  # type: ignore[misc]
    case_id = m.case_id_for("citymgmt-dcm", "A1")
    log = AccessLog(ledger.events, flush_interval=0.05)
    log.start()
    log.record_access("screen", case_id, ["reporter.name"], T, principal="token:wall-1", operation="CaseCard")
    log.record_access("auditor", case_id, ["reporter.phone", "reporter.name"], T, principal="token:aud-7")
    log.record_access("operator", m.case_id_for("citymgmt-dcm", "OTHER"), ["reporter.name"], T)
    log.close()

    got = read_access(ledger.recorder, ledger.mapper, case_id)
    assert [(a.role, a.principal, a.fields, a.at, a.operation) for a in got] == [
        ("screen", "token:wall-1", ("reporter.name",), T, "CaseCard"),
        ("auditor", "token:aud-7", ("reporter.name", "reporter.phone"), T, ""),
    ]
    assert len(read_access(ledger.recorder, ledger.mapper)) == 3
    chain = AuditChain(ledger.recorder)
    assert chain.extend() == 10 and chain.verify().ok  # the access log is chained like the cases
    assert rebuild(tmp_path / "v.duckdb", ledger.recorder) == 7  # projections ignore audit events
    ledger.close()


def test_audit_and_privacy_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    ledger = build_ledger(url)
    ledger.apply_batch([m.validate(orjson.dumps(e), ledger.catalogue) for e in case_history("A1")])  # type: ignore[misc]
    AccessLog(ledger.events).record_access(
        "auditor", m.case_id_for("citymgmt-dcm", "A1"), ["reporter.name"], T
    )
    log = AccessLog(ledger.events)
    log.record_access("screen", m.case_id_for("citymgmt-dcm", "A1"), ["reporter.phone"], T)
    log.flush()
    ledger.close()
    runner = CliRunner()
    base = ["--store-url", url]

    result = runner.invoke(app, ["audit", "verify", *base, "--no-nats"])
    assert result.exit_code == 1 and "unchained" in result.output  # nothing chained yet
    assert runner.invoke(app, ["audit", "chain", *base]).exit_code == 0
    result = runner.invoke(app, ["audit", "verify", *base, "--no-nats", "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["checked"] == 8

    head = runner.invoke(app, ["audit", "head", *base, "--json"])
    assert orjson.loads(head.output)["position"] == 8
    result = runner.invoke(app, ["audit", "verify", *base, "--anchor", head.output])
    assert result.exit_code == 0 and "matches" in result.output

    result = runner.invoke(app, ["audit", "history", "citymgmt-dcm/A1", *base, "--json"])
    assert result.exit_code == 0, result.output
    events = orjson.loads(result.output)["events"]
    assert [e["type"] for e in events][:3] == ["reported", "registered", "dispatched"]
    assert events[0]["actor"] == "supervisor:GW-0001" and events[0]["role"] == "supervisor"
    assert events[0]["department"] == "citymgmt" and events[0]["at"] and events[0]["recorded_at"]
    assert events[0]["personal_fields"] == ["reporter.name", "reporter.phone", "title"]  # sealed free text
    assert "13800000000" not in result.output and "张三" not in result.output

    result = runner.invoke(app, ["audit", "access", "citymgmt-dcm/A1", *base, "--json"])
    assert [r["role"] for r in orjson.loads(result.output)] == ["screen"]  # the unflushed one is lost

    result = runner.invoke(app, ["privacy", "erase", "13800000000", *base])
    assert result.exit_code == 0 and "erased 1 key" in result.output, result.output
    fresh = build_ledger(url)
    assert fresh.get_case(m.case_id_for("citymgmt-dcm", "A1")).reporter["phone"] == "[erased]"
    fresh.close()
    assert "right to erasure" in runner.invoke(app, ["privacy", "erasures", *base]).output
    assert len(runner.invoke(app, ["privacy", "new-store-key"]).output.strip()) == 44
