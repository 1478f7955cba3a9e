"""GraphQL over the wire (gql client, HTTP and graphql-transport-ws) against uvicorn serving the
wired app, fed by the real intake and projector: queries, roles and masking, operator actions,
live subscriptions with resume, and limits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from gql import GraphQLRequest
from gql.transport.exceptions import TransportQueryError

from hub import messages as m
from ops.natsd import EmbeddedNats
from tests.e2e.graphql_stack import Stack, document, graphql_stack
from tests.factories import event

pytestmark = pytest.mark.timeout(300)

OVERVIEW, CASES, ACTIONS, LIVE = (document(n) for n in ("overview", "cases", "actions", "live"))
REPORTER = {"name": "张三", "phone": "13800000000"}


def _report(ref: str, n: int, department: str = "citymgmt", grid: str | None = None) -> dict[str, Any]:
    source = {"citymgmt": "citymgmt-dcm", "police": "police-110"}[department]
    kind = "case" if department == "citymgmt" else "incident"
    data = {
        "category": "01001", "title": f"井盖破损 {ref}", "priority": "normal", "channel": "grid_worker",
        "location": {"lon": 118.78, "lat": 32.04, "address": "中山路 1 号"}, "reporter": REPORTER,
    }  # fmt: skip
    return event(ref, m.Action.REPORTED, n=n, department=department, kind=kind, source=source, data=data)


async def _seed(stack: Stack) -> dict[str, str]:
    events = [_report(f"C-{i}", i) for i in range(5)] + [_report("P-1", 9, "police")]
    await stack.publish(events)
    await stack.settled(6)
    return {ev["caseref"]: str(m.case_id_for(ev["source"], ev["caseref"])) for ev in events}


async def _query(stack: Stack, token: str, doc: Any, op: str, **variables: Any) -> dict[str, Any]:
    async with stack.http(token) as session:
        result: dict[str, Any] = await session.execute(
            GraphQLRequest(doc, variable_values=variables, operation_name=op)
        )
        return result


async def _error(stack: Stack, token: str, doc: Any, op: str, **variables: Any) -> dict[str, Any]:
    with pytest.raises(TransportQueryError) as info:
        await _query(stack, token, doc, op, **variables)
    assert info.value.errors, info.value
    first: dict[str, Any] = info.value.errors[0]
    return first


async def test_queries_roles_and_masking(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        ids = await _seed(stack)

        ov = (await _query(stack, "dev-screen", OVERVIEW, "Overview"))["overview"]
        assert ov["totals"]["reported"] == 6 and ov["totals"]["open"] == 6
        assert {c["key"]: c["cases"] for c in ov["byStage"]} == {"reported": 6}
        assert {c["key"] for c in ov["byDepartment"]} == {"citymgmt", "police"}
        assert (
            (
                sum(c["totals"]["reported"] for c in ov["children"]) == sum(1 for _ in ov["children"])
                and (all(c["name"] for c in ov["children"]))
            )
            or ov["children"] == []
            or sum(c["totals"]["reported"] for c in ov["children"]) <= 6
        )

        # Relay pagination: 2 + 2 + 2, no duplicates, newest first
        seen: list[str] = []
        after = None
        while True:
            page = (await _query(stack, "dev-screen", CASES, "Cases", first=2, after=after))["cases"]
            seen += [e["node"]["caseref"] for e in page["edges"]]
            for edge in page["edges"]:  # screen: personal data never visible
                assert edge["node"]["reporter"] == {"name": None, "phone": None, "masked": True}
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert len(seen) == 6 and len(set(seen)) == 6 and seen[0] == "P-1"
        texts = await _query(stack, "dev-screen", CASES, "Cases", first=10, filter={"text": "c-3"})
        assert [e["node"]["caseref"] for e in texts["cases"]["edges"]] == ["C-3"]

        # case detail: auditor sees the reporter and the full timeline; screen sees it masked
        full = (await _query(stack, "dev-auditor", CASES, "CaseDetail", id=ids["C-1"]))["case"]
        assert full["reporter"] == {**REPORTER, "masked": False}
        assert [t["type"] for t in full["timeline"]] == ["reported"] and full["timeline"][0]["actor"] != "***"
        masked = (await _query(stack, "dev-screen", CASES, "CaseDetail", id=ids["C-1"]))["case"]
        assert masked["reporter"]["name"] is None and masked["timeline"][0]["actor"] == "***"
        body = str(masked)
        assert "张三" not in body and "13800000000" not in body

        # a department sees its own cases in full, never another department's
        own = (await _query(stack, "dev-police", CASES, "CaseDetail", id=ids["P-1"]))["case"]
        assert own["reporter"]["phone"] == REPORTER["phone"]
        err = await _error(stack, "dev-police", CASES, "CaseDetail", id=ids["C-1"])
        assert err["extensions"]["code"] == "FORBIDDEN" and "cases:read_all" in err["message"]
        listed = (await _query(stack, "dev-police", CASES, "Cases", first=50))["cases"]["edges"]
        assert [e["node"]["caseref"] for e in listed] == ["P-1"]
        err = await _error(stack, "dev-police", CASES, "Cases", first=5, filter={"department": "citymgmt"})
        assert err["extensions"]["code"] == "FORBIDDEN" and "cases:read_all" in err["message"]
        pol = (await _query(stack, "dev-police", OVERVIEW, "Overview"))["overview"]
        assert pol["totals"]["reported"] == 1 and pol["scopeDepartment"] == "police"

        # refusals name the missing permission
        err = await _error(stack, "dev-screen", ACTIONS, "Register", id=ids["C-1"])
        assert err["extensions"] == {"code": "FORBIDDEN", "missing_permission": "cases:write"}
        assert "cases:write" in err["message"] and "screen" in err["message"]
        err = await _error(stack, "dev-screen", CASES, "CaseDetail", id=ids["C-1"], asOfPosition=1)
        assert "history:read" in err["message"]
        err = await _error(stack, "nope", OVERVIEW, "Overview")
        assert err["extensions"]["code"] == "UNAUTHENTICATED"

        # as-of: the analyst (history, masked) sees the past, still masked
        past = (await _query(stack, "dev-analyst", CASES, "CaseDetail", id=ids["C-1"], asOfPosition=2))[
            "case"
        ]
        assert past["stage"] == "REPORTED" and past["reporter"]["masked"] is True
        early = (await _query(stack, "dev-screen", OVERVIEW, "Overview", asOfPosition=3))["overview"]
        assert early["totals"]["reported"] == 3 and early["position"] == 3
        ref = await _query(stack, "dev-screen", OVERVIEW, "Reference")
        assert ref["grids"] and any(d["code"] == "police" for d in ref["departments"])


async def test_operator_actions_and_their_errors(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        ids = await _seed(stack)
        cid = ids["C-1"]
        done = await _query(
            stack, "dev-operator", ACTIONS, "Register", id=cid, note="立案", expectedVersion=1
        )
        assert done["register"]["stage"] == "REGISTERED" and done["register"]["version"] == 2
        err = await _error(stack, "dev-operator", ACTIONS, "Register", id=cid, expectedVersion=1)
        assert err["extensions"]["code"] == "STALE"
        err = await _error(stack, "dev-operator", ACTIONS, "Close", id=cid)
        assert err["extensions"]["code"] == "WRONG_STAGE"
        assert "registered" in err["message"] and "dispatch" in err["extensions"]["allowed"]
        err = await _error(stack, "dev-operator", ACTIONS, "Escalate", id=cid, reason="催办", level=9)
        assert err["extensions"]["code"] == "BAD_USER_INPUT" and err["extensions"]["field"] == "level"
        err = await _error(
            stack, "dev-operator", ACTIONS, "Register", id="00000000-0000-0000-0000-000000000000"
        )
        assert err["extensions"]["code"] == "NOT_FOUND"
        out = await _query(stack, "dev-operator", ACTIONS, "Dispatch", id=cid, departments=["water"])
        assert out["dispatch"]["stage"] == "DISPATCHED" and out["dispatch"]["responsibleDepartments"] == [
            "water"
        ]
        back = await _query(
            stack, "dev-operator", ACTIONS, "Return", id=cid, department="water", reason="非本部门"
        )
        assert back["return"]["stage"] == "REGISTERED"
        esc = await _query(stack, "dev-operator", ACTIONS, "Escalate", id=cid, reason="督办")
        assert esc["escalate"]["escalations"] == 1
        rej = await _query(stack, "dev-operator", ACTIONS, "Reject", id=ids["C-2"], reason="重复")
        assert rej["reject"]["stage"] == "REJECTED" and rej["reject"]["allowedActions"] == []
        link = await _query(stack, "dev-operator", ACTIONS, "Link", id=ids["C-3"], relation="REFERRED_TO",
                            targetId=ids["P-1"], targetDepartment="police")  # fmt: skip
        assert link["link"]["id"] == ids["C-3"]
        detail = (await _query(stack, "dev-auditor", CASES, "CaseDetail", id=ids["C-3"]))["case"]
        assert [(x["relation"], x["targetId"]) for x in detail["links"]] == [("referred_to", ids["P-1"])]
        timeline = (await _query(stack, "dev-auditor", CASES, "CaseDetail", id=cid))["case"]["timeline"]
        assert [t["type"] for t in timeline] == [
            "reported",
            "registered",
            "dispatched",
            "returned",
            "escalated",
        ]
        assert {t["actor"] for t in timeline[1:]} == {"operator:dev"}
        # the command centre acts; a return is recorded in the name of the department it acted for
        assert [t["department"] for t in timeline[1:]] == ["command", "command", "water", "command"]


async def test_a_command_already_done_is_answered_at_once_not_after_the_timeout(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """Two operators register the same case while the read model lags: the second command passes
    the read model's stage check, and the intake decides it is already done (AlreadyDone: acked as
    a duplicate, neither recorded nor dead-lettered). Its operator learns that at once, instead of
    a TIMEOUT after the mutation's deadline."""
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        ids = await _seed(stack)
        cid = ids["C-1"]
        views = stack.service.views
        stale = views.case(UUID(cid))
        assert stale is not None and stale.stage == "reported"
        first = await _query(stack, "dev-operator", ACTIONS, "Register", id=cid, note="立案")
        assert first["register"]["stage"] == "REGISTERED"

        fresh_case = views.case
        # a lagging read model: the case still shows as reported
        views.case = lambda case_id: stale if str(case_id) == cid else fresh_case(case_id)
        try:
            err = await _error(stack, "dev-operator", ACTIONS, "Register", id=cid, note="再次立案")
        finally:
            views.case = fresh_case
        assert err["extensions"]["code"] == "ALREADY_DONE", err
        assert "already registered" in err["message"] and err["extensions"]["dead_letter"] is False
        timeline = (await _query(stack, "dev-auditor", CASES, "CaseDetail", id=cid))["case"]["timeline"]
        assert [t["type"] for t in timeline] == ["reported", "registered"]  # recorded once


async def test_mutation_reaches_another_clients_subscription_and_resume(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        ids = await _seed(stack)
        cid = ids["C-4"]
        received: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

        async def watch(token: str, after: int | None = None, stop_after: int = 1) -> None:
            async with stack.ws(token) as session:
                got = 0
                variables: dict[str, Any] = {"filter": {"department": "citymgmt"}}
                if after is not None:
                    variables["afterPosition"] = after
                async for msg in session.subscribe(
                    GraphQLRequest(LIVE, variable_values=variables, operation_name="CaseChanged")
                ):
                    await received.put((time.monotonic(), msg["caseChanged"]))
                    got += 1
                    if got >= stop_after:
                        return

        # from the position before the mutation: a subscription that is slow to start on a busy
        # machine still gets the change (the sleep gives it time to be live, not correctness)
        watcher = asyncio.create_task(watch("dev-screen", after=stack.service.projector.position))
        await asyncio.sleep(1.0)  # subscribed (connection_ack, NATS subscription in place)
        sent = time.monotonic()
        await _query(stack, "dev-operator", ACTIONS, "Register", id=cid)
        at, change = await asyncio.wait_for(received.get(), 60)
        # pushed, not polled: well under the projector's idle poll; generous for a busy 2-core machine
        assert at - sent < 5.0, f"the change arrived after {at - sent:.3f}s"
        assert change["case"]["id"] == cid and change["event"]["type"] == "registered"
        assert change["case"]["reporter"]["masked"] is True and change["event"]["actor"] == "***"
        await watcher
        last = change["position"]

        # while nobody listens: two more changes; a reconnecting client misses neither
        await _query(stack, "dev-operator", ACTIONS, "Dispatch", id=cid, departments=["water"])
        await _query(stack, "dev-operator", ACTIONS, "Escalate", id=cid, reason="督办")
        await asyncio.wait_for(watch("dev-auditor", after=last, stop_after=2), 60)
        caught = [received.get_nowait()[1] for _ in range(2)]
        assert [c["event"]["type"] for c in caught] == ["dispatched", "escalated"]
        assert caught[0]["position"] > last and caught[1]["position"] > caught[0]["position"]
        assert caught[0]["case"]["reporter"]["masked"] is False

        # overviewChanged: a new overview after a change in scope
        async with stack.ws("dev-screen") as session:
            stream = session.subscribe(GraphQLRequest(LIVE, operation_name="OverviewChanged")).__aiter__()
            first = (await asyncio.wait_for(stream.__anext__(), 60))["overviewChanged"]
            await _query(stack, "dev-operator", ACTIONS, "Register", id=ids["C-0"])
            second = (await asyncio.wait_for(stream.__anext__(), 60))["overviewChanged"]
            assert second["position"] > first["position"]
            stages = {c["key"]: c["cases"] for c in second["byStage"]}
            assert stages["registered"] == 1 + {c["key"]: c["cases"] for c in first["byStage"]}.get(
                "registered", 0
            )


async def test_abusive_queries_are_refused_before_execution(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    from gql import gql

    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        calls: list[str] = []
        views = stack.service.views
        original = views.cases

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append("cases")
            return original(*args, **kwargs)

        views.cases = counting  # type: ignore[method-assign]
        deep = "{ cases(first: 1) { edges { node { links { target { links { target { links { target {" \
               " links { target { id } } } } } } } } } } } }"  # fmt: skip
        aliases = "{ " + " ".join(f"a{i}: departments {{ code }}" for i in range(50)) + " }"
        huge = "{ cases(first: 1000) { edges { node { id } } } }"
        costly = (
            "{ cases(first: 200) { edges { node { timeline { note }"
            " links { target { timeline { note } } } } } } }"
        )
        tokens = "{ departments { " + " ".join("code" for _ in range(4000)) + " } }"
        expected = {
            deep: "depth",
            aliases: "aliases",
            huge: "PAGE_TOO_LARGE",
            costly: "COST_LIMIT",
            tokens: "tokens",
        }
        for query, what in expected.items():
            async with stack.http("dev-operator") as session:
                with pytest.raises(TransportQueryError) as info:
                    await session.execute(gql(query))
            err = info.value.errors[0]  # type: ignore[index]
            assert what in err["message"] or err.get("extensions", {}).get("code") == what, err
            assert info.value.data is None
        big_var = "query($n: Int!) { cases(first: $n) { edges { node { id } } } }"
        async with stack.http("dev-operator") as session:
            with pytest.raises(TransportQueryError) as info:
                await session.execute(GraphQLRequest(gql(big_var), variable_values={"n": 500}))
        assert info.value.errors[0]["extensions"]["code"] == "PAGE_TOO_LARGE"  # type: ignore[index]
        assert calls == [], "a refused query reached a resolver"
