"""Issue 9, API replicas: two API servers, each with its own DuckDB following the PostgreSQL log,
give the same answers and both deliver subscriptions.

One intake writes to a throw-away PostgreSQL database; replicas A and B each run their own
``ProjectionService`` (own DuckDB file, own NATS connection, own commit notices) and the wired
GraphQL app on their own uvicorn port (``tests.e2e.graphql_stack.graphql_replica``). They are
in-process servers, not separate OS processes: what they share is only what separate processes
would share (PostgreSQL, NATS), but not proven against process isolation.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from gql import GraphQLRequest
from psycopg import sql

from hub import messages as m
from ops.bootstrap import connect_nats, start_intake
from ops.natsd import EmbeddedNats
from projections.schema import TOPICS
from tests.e2e.graphql_stack import FAST, Stack, document, graphql_replica
from tests.factories import event
from tests.support import eventually

pytestmark = pytest.mark.timeout(300)

OVERVIEW, CASES, ACTIONS, LIVE = (document(n) for n in ("overview", "cases", "actions", "live"))
CASES_N = 40


def _report(ref: str, n: int, department: str) -> dict[str, Any]:
    source, kind = {"citymgmt": ("citymgmt-dcm", "case"), "police": ("police-110", "incident")}[department]
    data = {
        "category": "01001", "title": f"井盖破损 {ref}", "priority": "normal", "channel": "grid_worker",
        "location": {"lon": 118.78, "lat": 32.04, "address": "中山路 1 号"},
        "reporter": {"name": "张三", "phone": "13800000000"},
    }  # fmt: skip
    return event(ref, m.Action.REPORTED, n=n, department=department, kind=kind, source=source, data=data)


async def _query(stack: Stack, token: str, doc: Any, op: str, **variables: Any) -> dict[str, Any]:
    async with stack.http(token) as session:
        result: dict[str, Any] = await session.execute(
            GraphQLRequest(doc, variable_values=variables, operation_name=op)
        )
        return result


async def _answers(stack: Stack) -> tuple[Any, Any]:
    """What a screen and an operator see; ``now`` (the query's own clock) is left out."""
    overview = (await _query(stack, "dev-screen", OVERVIEW, "Overview"))["overview"]
    overview.pop("now")
    cases = (await _query(stack, "dev-operator", CASES, "Cases", first=100))["cases"]
    return overview, cases


async def _same_answers(a: Stack, b: Stack) -> tuple[Any, Any]:
    """Once both replicas have applied the whole log, their answers must be identical.

    Why wait on the projectors rather than on the answers' ``position``: a live answer's
    ``position`` is read after (and apart from) its data, so while a batch commits it can name a
    newer position than the data reflects (seen here: position 40 with 35 cases); comparing while
    nothing is in flight compares the read models, which is what this test is about.
    """
    recorder: Any = a.reader.recorder
    last_case_event = sql.SQL("SELECT max(notification_id) FROM {} WHERE topic = ANY(%s)").format(
        sql.Identifier(recorder.events_table_name)
    )  # the access log writes other topics into the same table

    def caught_up() -> bool:
        with recorder.datastore.transaction() as curs:
            curs.execute(last_case_event, (list(TOPICS),))
            row = curs.fetchone()
        end = int(next(iter(row.values())) or 0) if row else 0
        return a.service.projector.position == b.service.projector.position == end > 0

    await eventually(caught_up, every=0.05)
    first, second = await asyncio.gather(_answers(a), _answers(b))
    assert first == second, "replicas that applied the same log answer differently"
    return first


async def test_two_api_replicas_answer_alike_and_both_deliver_subscriptions(
    nats_server: EmbeddedNats, pg_database: str, tmp_path: Path
) -> None:
    nc_intake = await connect_nats(nats_server.url, "test-intake")
    nc_a = await connect_nats(nats_server.url, "test-api-a")
    nc_b = await connect_nats(nats_server.url, "test-api-b")
    intake, task = await start_intake(nc_intake, pg_database, settings=FAST, writer_process=False)
    try:
        async with (
            graphql_replica(nc_a, pg_database, tmp_path / "a" / "views.duckdb") as a,
            graphql_replica(nc_b, pg_database, tmp_path / "b" / "views.duckdb") as b,
        ):
            assert a.url != b.url and a.service.path != b.service.path
            depts = ("citymgmt", "police")
            events = [_report(f"R-{i:03d}", i, depts[i % 2]) for i in range(CASES_N)]
            await a.publish(events)
            await a.settled(CASES_N)
            await b.settled(CASES_N)
            overview, cases = await _same_answers(a, b)
            assert overview["totals"]["reported"] == CASES_N
            assert len(cases["edges"]) == CASES_N

            # a subscription on each replica; the mutation goes to replica B
            target = str(m.case_id_for("citymgmt-dcm", "R-000"))
            received: dict[str, asyncio.Queue[dict[str, Any]]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}

            async def watch(name: str, stack: Stack) -> None:
                # from the position before the mutation: a subscription slow to start on a busy
                # machine still gets the change from its replica
                after = stack.service.projector.position
                async with stack.ws("dev-screen") as session:
                    request = GraphQLRequest(
                        LIVE,
                        variable_values={"filter": {"department": "citymgmt"}, "afterPosition": after},
                        operation_name="CaseChanged",
                    )
                    async for msg in session.subscribe(request):
                        await received[name].put(msg["caseChanged"])
                        return

            watchers = [asyncio.create_task(watch("a", a)), asyncio.create_task(watch("b", b))]
            await asyncio.sleep(1.0)  # subscribed (connection_ack, NATS subscription in place)
            done = await _query(b, "dev-operator", ACTIONS, "Register", id=target)
            assert done
            got = {name: await asyncio.wait_for(q.get(), 60) for name, q in received.items()}
            await asyncio.gather(*watchers)
            for name, change in got.items():
                assert change["case"]["id"] == target, name
                assert change["event"]["type"] == "registered", name
                assert change["case"]["reporter"]["masked"] is True, name
            assert got["a"] == got["b"], "the replicas delivered different changes"

            overview, _ = await _same_answers(a, b)
            assert overview["totals"]["registered"] == 1
            assert overview["position"] == got["a"]["position"]
    finally:
        intake.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        for nc in (nc_a, nc_b, nc_intake):
            await nc.close()
