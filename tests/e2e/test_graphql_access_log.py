"""Read access log over the wire (issue 8, narrowed by issue 15): only reads that reveal personal
data are recorded — which cases, which fields, which role and principal, when — in the access
store of its own (``access.sqlite`` beside the event store), never in the case event store.

Issue 15 changed what the first test expects of the screen: a masked reporter reveals nothing,
so the screen's read is no longer recorded (it used to add ``reporter (masked)``, which made 20
screen list requests add 4,000 records)."""

from __future__ import annotations

from pathlib import Path

import orjson
from gql import GraphQLRequest, gql
from typer.testing import CliRunner

from hub import messages as m
from hub.adapters.audit.access import SQLiteAccessStore, read_access
from ops.cli import app
from ops.natsd import EmbeddedNats
from tests.e2e.graphql_stack import document, graphql_stack
from tests.factories import event

CASES = document("cases")
PHONE = gql("query ReporterPhone($id: ID!) { case(id: $id) { id reporter { phone } } }")


async def test_screen_and_auditor_reads_are_recorded_with_fields(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        await stack.publish([event("ACC-1", m.Action.REPORTED)])
        await stack.settled(1)
        case_id = m.case_id_for("citymgmt-dcm", "ACC-1")
        for token in ("dev-screen", "dev-auditor"):
            async with stack.http(token) as session:
                await session.execute(
                    GraphQLRequest(CASES, variable_values={"id": str(case_id)}, operation_name="CaseDetail")
                )
        stack.access.flush()
        reads = SQLiteAccessStore(tmp_path / "access.sqlite").read(case_id)
        assert read_access(stack.reader.recorder, stack.reader.mapper) == []  # not in the event store
    by_role: dict[str, set[str]] = {}
    for access in reads:
        by_role.setdefault(access.role, set()).update(access.fields)
        assert access.operation == "CaseDetail" and access.at is not None
        assert access.cases == (case_id,) and access.principal == "auditor:dev"
    assert "screen" not in by_role  # masked: nothing revealed, nothing recorded
    assert by_role["auditor"] == {"reporter.name", "reporter.phone", "timeline.actor"}
    assert len(reads) == 2  # one record per set of fields shown (the reporter's, the timeline's)


async def test_a_thousand_screen_list_reads_add_nothing_and_one_phone_read_adds_one(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        await stack.publish([event(f"LST-{i}", m.Action.REPORTED, n=i) for i in range(5)])
        await stack.settled(5)
        head = stack.reader.recorder.max_notification_id()
        access_store = SQLiteAccessStore(tmp_path / "access.sqlite")
        list_reads = GraphQLRequest(CASES, variable_values={"first": 50}, operation_name="Cases")
        async with stack.http("dev-screen") as session:
            for _ in range(1000):
                page = await session.execute(list_reads)
                assert page["cases"]["edges"][0]["node"]["reporter"]["masked"] is True
        stack.access.flush()
        assert access_store.read() == []  # 1,000 screen list reads: no record
        assert stack.reader.recorder.max_notification_id() == head  # and nothing in the event store

        case_id = m.case_id_for("citymgmt-dcm", "LST-3")
        async with stack.http("dev-auditor") as session:
            answer = await session.execute(
                GraphQLRequest(PHONE, variable_values={"id": str(case_id)}, operation_name="ReporterPhone")
            )
        assert answer["case"]["reporter"]["phone"]
        stack.access.flush()
        records = access_store.read()
        assert stack.reader.recorder.max_notification_id() == head
    assert len(records) == 1
    (one,) = records
    assert (one.role, one.principal, one.fields, one.cases, one.operation) == (
        "auditor", "auditor:dev", ("reporter.phone",), (case_id,), "ReporterPhone",
    )  # fmt: skip

    result = CliRunner().invoke(app, ["audit", "access", "--store-url", store, "--json"])
    assert result.exit_code == 0, result.output
    listed = orjson.loads(result.output)
    assert [(r["role"], r["fields"], r["cases"], r["store"]) for r in listed] == [
        ("auditor", ["reporter.phone"], [str(case_id)], "access")
    ]
    result = CliRunner().invoke(app, ["audit", "access", "citymgmt-dcm/LST-3", "--store-url", store])
    assert result.exit_code == 0 and "auditor" in result.output, result.output  # the table (wrapped)
    assert str(case_id)[:8] in result.output
