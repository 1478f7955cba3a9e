"""Issue 15 acceptance: every cross-department attack is dead-lettered ``not_permitted``, through real
NATS, the intake and its store-writer process; the batch's other events are stored, the hub runs on.

Attacks (found item 2 of the issue, and the routes around it): police rejecting (不予立案) a
city-management case by naming its case id; police accepting and handling a city-management case
"as water" by copying its source and case reference and setting ``data.department``; a department
event claiming an operator actor; police linking its case to a city-management case; and over HTTP
ingest a police token whose records would be published as city management, or as the command
centre. And the legitimate flows beside them: a case dispatched to police is accepted and handled
by police.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from connectors import registry
from connectors.base import Connector
from connectors.police import PoliceConnector
from connectors.publisher import publish_events
from hub import messages as m
from hub.intake import IntakeSettings, read_dead_letters
from ops.bootstrap import build_ledger, connect_nats, connector_app, start_intake
from ops.natsd import EmbeddedNats
from tests.factories import event
from tests.support import eventually

# Two quick retries for what may become permitted (a dispatch on its way), then the dead letter;
# the ack wait is long enough that a slow batch is never redelivered on top of its retries.
FAST = IntakeSettings(retry_delays_s=(0.3, 0.3, 3.0), ack_wait_s=1.5)


def _police(caseref: str, action: m.Action, eid: str, **kw: Any) -> dict[str, Any]:
    """A police event naming a city-management case (its source and case reference copied)."""
    e = event(caseref, action, department="police", kind="incident", event_id=eid, **kw)
    e["actor"] = "officer:007"
    return e


def _operator(caseref: str, action: m.Action, eid: str, **kw: Any) -> dict[str, Any]:
    e = event(caseref, action, department=m.COMMAND_DEPARTMENT, event_id=eid,
              caseid=m.case_id_for("citymgmt-dcm", caseref), **kw)  # fmt: skip
    e["actor"], e["actorrole"] = "operator:dev", "operator"
    return e


def _opened(caseref: str) -> list[dict[str, Any]]:
    return [event(caseref, m.Action.REPORTED), event(caseref, m.Action.REGISTERED, n=1)]


async def test_cross_department_attacks_are_dead_lettered_not_permitted(
    nats_server: EmbeddedNats, store_url: str
) -> None:
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10)
    intake, task = await start_intake(nc, store_url, settings=FAST)
    try:
        setup = [
            *_opened("CM-REJ"),
            *_opened("CM-WATER"),
            event("CM-WATER", m.Action.DISPATCHED, n=2),  # to water (a handling unit)
            *_opened("CM-POLICE"),
            _operator("CM-POLICE", m.Action.DISPATCHED, "op-1", data={"departments": ["police"]}),
        ]
        assert {r.status for r in await publish_events(js, setup)} == {"accepted"}
        await eventually(lambda: intake.stats.applied == len(setup), what="the cases opened")

        reject_id = m.case_id_for("citymgmt-dcm", "CM-REJ")
        impostor = event("CM-REJ", m.Action.REJECTED, event_id="cm-impostor", data={"reason": "x"})
        impostor["actor"] = "operator:nobody"
        attacks = [
            # 不予立案 of a city-management case, named by its case id
            _police("CM-REJ", m.Action.REJECTED, "p-reject", caseid=reject_id, data={"reason": "不予立案"}),
            # 签收 and 处置反馈 "as water", source and case reference copied
            _police("CM-WATER", m.Action.ACCEPTED, "p-accept", data={"department": "water"}),
            _police("CM-WATER", m.Action.HANDLED, "p-handle", data={"department": "water", "note": "已处理"}),
            # a department event claiming an operator actor
            impostor,
        ]
        legitimate = [
            # dispatched to police: police signs for it and handles it in its own name
            _police("CM-POLICE", m.Action.ACCEPTED, "p-ok-accept", data={"department": "police"}),
            _police("CM-POLICE", m.Action.HANDLED, "p-ok-handle", data={"department": "police"}),
            event("CM-REJ", m.Action.DISPATCHED, n=3),  # the owner goes on with its case
        ]
        results = await publish_events(js, [*attacks, *legitimate])
        assert {r.status for r in results} == {"accepted"}
        # published again (a publisher's retry): deduplicated, dead-lettered once
        assert {r.status for r in await publish_events(js, attacks)} == {"duplicate"}

        await eventually(lambda: intake.stats.dead_lettered == len(attacks), what="four dead letters")
        await eventually(lambda: intake.stats.applied == len(setup) + len(legitimate), what="neighbours")
        letters = {lt.msg_id: lt for lt in await read_dead_letters(js)}
        assert set(letters) == {"p-reject", "p-accept", "p-handle", "cm-impostor"}
        assert {lt.reason for lt in letters.values()} == {"not_permitted"}
        reject = letters["p-reject"]
        assert reject.field == "department" and reject.deliveries == len(FAST.retry_delays_s) + 1
        assert reject.detail.startswith(
            f"police may not act on case {reject_id} (citymgmt-dcm/CM-REJ) owned by citymgmt; "
            "it was never dispatched, referred or linked to police"
        )
        assert "police may not act on case" in letters["p-accept"].detail
        impostor_letter = letters["cm-impostor"]
        assert impostor_letter.field == "actor" and impostor_letter.deliveries == 1  # final: no retries
        assert "operator:nobody" in impostor_letter.detail
        assert reject.subject.startswith("city.police.incident.rejected")
        assert intake.stats.dead_letter_reasons == {"not_permitted": len(attacks)}

        # the hub runs on: a later event of the attacked case is applied
        await publish_events(js, [event("CM-REJ", m.Action.ACCEPTED, n=4)])
        await eventually(lambda: intake.stats.applied == len(setup) + len(legitimate) + 1, what="later")
    finally:
        intake.stop()
        await task
        await nc.close()

    ledger = build_ledger(store_url)
    assert ledger.get_case(reject_id).stage.value == "accepted"  # never rejected
    water = ledger.get_case(m.case_id_for("citymgmt-dcm", "CM-WATER"))
    assert water.parts == {"water": "dispatched"} and water.stage.value == "dispatched"
    assert ledger.get_case(m.case_id_for("citymgmt-dcm", "CM-POLICE")).stage.value == "handled"


class _PassThrough(Connector):
    """A police connector passing canonical events through as they come (a connector with a bug,
    or a compromised one): whatever a record says about its department would be published."""

    def __init__(self) -> None:
        super().__init__(name="police", department="police", source="police-110", kinds=("incident",))
        self.catalogue = m.Catalogue.of({d: ("incident", "case") for d in ("police", "citymgmt", "command")})

    def map(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dict(record)]


async def test_http_ingest_publishes_only_as_the_tokens_department(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10)
    intake, task = await start_intake(nc, store_url, settings=FAST)
    police = {"Authorization": "Bearer dev-police-token"}
    try:
        await publish_events(js, _opened("CM-HTTP"))
        await eventually(lambda: intake.stats.applied == 2, what="the city-management case")

        # 1. A police token whose record would be published as city management, or as an operator
        #    command: rejected at the door, not_permitted, nothing published.
        monkeypatch.setitem(registry.NATIVE, "police", _PassThrough)
        app = connector_app(js, None)  # type: ignore[arg-type]  # ingest only: no Open311 reads
        as_citymgmt = event("CM-HTTP", m.Action.REJECTED, event_id="h-1", data={"reason": "x"})
        as_command = _operator("CM-HTTP", m.Action.REJECTED, "h-2", data={"reason": "x"})
        own = event("P-HTTP", m.Action.REPORTED, department="police", kind="incident",
                    source="police-110", data={"category": "dispute", "title": "纠纷"})  # fmt: skip
        before = (await js.stream_info(m.STREAM)).state.last_seq
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as http:
            answer = await http.post("/ingest/police", json=[as_citymgmt, as_command, own], headers=police)
        assert answer.status_code == 202, answer.text
        results = answer.json()["results"]
        assert [r["status"] for r in results] == ["rejected", "rejected", "accepted"]
        assert results[0]["field"] == "department"
        assert results[0]["error"].startswith(
            "department: not_permitted: a police token may publish only as police, but the event "
            "says department 'citymgmt'"
        )
        assert "may not publish operator commands" in results[1]["error"]
        assert (await js.stream_info(m.STREAM)).state.last_seq == before + 1  # only its own event

        # 2. Through the real police connector: a referral (警调对接) to the existing
        #    city-management case is the case's to refuse, dead-lettered not_permitted.
        monkeypatch.setitem(registry.NATIVE, "police", PoliceConnector)
        app = connector_app(js, None)  # type: ignore[arg-type]
        base = {"record_type": "incident", "jjdbh": "J-1", "officer": "007"}
        records = [
            {**base, "stage": "received", "time": "2026-03-02T09:00:00+08:00", "category": "0601",
             "summary": "邻里纠纷", "lon": 118.7, "lat": 32.0},
            {**base, "stage": "dispatched", "time": "2026-03-02T09:01:00+08:00", "unit": "PS-01"},
            {**base, "stage": "arrived", "time": "2026-03-02T09:10:00+08:00"},
            {**base, "stage": "result", "time": "2026-03-02T09:40:00+08:00", "result": "移交",
             "refer_to": {"department": "citymgmt", "source": "citymgmt-dcm", "caseref": "CM-HTTP"}},
        ]  # fmt: skip
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as http:
            answer = await http.post("/ingest/police", json=records, headers=police)
        assert answer.status_code == 202 and answer.json()["accepted"] == 4, answer.text
        await eventually(lambda: intake.stats.dead_lettered == 1, what="the referral dead-lettered")
        (letter,) = await read_dead_letters(js)
        assert (letter.reason, letter.field) == ("not_permitted", "data.target")
        assert "police may not link to case" in letter.detail and "owned by citymgmt" in letter.detail
        assert orjson.loads(letter.data)["type"] == "incident.linked"
    finally:
        intake.stop()
        await task
        await nc.close()
    ledger = build_ledger(store_url)
    assert ledger.get_case(m.case_id_for("citymgmt-dcm", "CM-HTTP")).links == []
    assert ledger.get_case(m.case_id_for("police-110", "J-1")).stage.value == "closed"
