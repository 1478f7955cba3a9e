"""Issue 4 acceptance: per connector, native records → JetStream (real nats-server) → intake → store.

Each connector gets whole case lifecycles plus a malformed record, a record missing a field, one
with an unknown code and a duplicate; the answers must say exactly that (with the field), and the
store must hold the accepted histories with the department's own timestamps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import base, registry
from connectors.publisher import publish_events
from hub import messages as m
from hub.intake import IntakeSettings
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.natsd import EmbeddedNats
from tests.support import eventually

T = "2026-03-02T{}:00+08:00"
# retries that outlast a loaded machine's slow batches: "no dead letters" must not depend on speed
FAST = IntakeSettings(retry_delays_s=(0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0), ack_wait_s=3.0)


def police() -> tuple[list[Any], list[Any]]:
    lifecycle = [
        {
            "record_type": "incident",
            "jjdbh": "J1",
            "stage": "received",
            "time": T.format("08:00"),
            "category": "0601",
            "summary": "邻里因噪音发生纠纷",
            "level": "2",
            "lon": 118.7,
            "lat": 32.0,
            "caller": {"name": "李四", "phone": "13900000000"},
        },
        {
            "record_type": "incident",
            "jjdbh": "J1",
            "stage": "dispatched",
            "time": T.format("08:02"),
            "unit": "PS-03",
        },
        {
            "record_type": "incident",
            "jjdbh": "J1",
            "stage": "arrived",
            "time": T.format("08:11"),
            "officer": "031234",
        },
        {
            "record_type": "incident",
            "jjdbh": "J1",
            "stage": "result",
            "time": T.format("08:40"),
            "officer": "031234",
            "result": "现场调解未果，移交诉前调解",
            "refer_to": {
                "department": "courts",
                "source": "courts-platform",
                "caseref": "M1",
                "kind": "mediation",
            },
        },
        {
            "record_type": "fraud_warning",
            "warning_no": "W1",
            "stage": "issued",
            "time": T.format("09:00"),
            "fraud_type": "F02",
            "risk_level": "1",
            "target": {"name": "王五", "phone": "13700000000"},
            "station": "PS-05",
        },
        {
            "record_type": "fraud_warning",
            "warning_no": "W1",
            "stage": "unreachable",
            "time": T.format("09:05"),
        },
        {
            "record_type": "fraud_warning",
            "warning_no": "W1",
            "stage": "dissuaded",
            "time": T.format("09:30"),
            "officer": "050001",
            "note": "上门劝阻成功",
        },
    ]
    bad = [
        "not a record",
        {
            "record_type": "incident",
            "jjdbh": "J2",
            "stage": "received",
            "time": T.format("10:00"),
            "category": "0601",
        },
        {
            "record_type": "incident",
            "jjdbh": "J3",
            "stage": "received",
            "time": T.format("10:00"),
            "category": "9999",
            "summary": "?",
        },
        lifecycle[0],
    ]
    return lifecycle, bad


def citymgmt() -> tuple[list[Any], list[Any]]:
    c = {"case_no": "C1"}
    lifecycle = [
        {
            **c,
            "stage": "report",
            "time": T.format("07:30"),
            "channel": "supervisor",
            "matter_code": "01001",
            "description": "供水井盖破损",
            "supervisor": "GW-0001",
            "lon": 118.71,
            "lat": 32.01,
            "photos": ["https://img.example/c1.jpg"],
        },
        {**c, "stage": "register", "time": T.format("07:35"), "operator": "op1"},
        {**c, "stage": "dispatch", "time": T.format("07:40"), "department": "water"},
        {**c, "stage": "accept", "time": T.format("07:50"), "department": "water"},
        {**c, "stage": "handle", "time": T.format("09:00"), "department": "water"},
        {**c, "stage": "verify", "time": T.format("09:30"), "passed": False, "note": "井盖未固定"},
        {**c, "stage": "handle", "time": T.format("10:00"), "department": "water"},
        {**c, "stage": "verify", "time": T.format("10:20"), "passed": True, "supervisor": "GW-0001"},
        {**c, "stage": "close", "time": T.format("10:30")},
        {
            "case_no": "C2",
            "stage": "report",
            "time": T.format("07:31"),
            "channel": "hotline",
            "matter_code": "06010",
            "description": "暴露垃圾",
            "address": "江东中路1号",
        },
        {"case_no": "C2", "stage": "reject", "time": T.format("07:45"), "reason": "非城管职责"},
    ]
    bad = [
        {
            **c,
            "stage": "report",
            "time": T.format("07:30"),
            "channel": "supervisor",
            "matter_code": "01001",
            "description": "x",
            "photos": ["ftp://nope"],
        },
        {"stage": "register", "time": T.format("07:35")},
        {
            "case_no": "C3",
            "stage": "report",
            "time": T.format("07:30"),
            "channel": "supervisor",
            "matter_code": "99999",
            "description": "?",
        },
        lifecycle[1],
    ]
    return lifecycle, bad


def health() -> tuple[list[Any], list[Any]]:
    def r(rtype: str, rid: str, stage: str, hhmm: str, **kw: Any) -> dict[str, Any]:
        return {"report_type": rtype, "report_id": rid, "stage": stage, "time": T.format(hhmm), **kw}

    lifecycle = [
        r(
            "public_health",
            "PH1",
            "reported",
            "06:00",
            disease_code="PH-C01",
            case_count=12,
            institution="某小学",
        ),
        r("public_health", "PH1", "investigating", "07:00"),
        r("public_health", "PH1", "controlled", "18:00"),
        r("emergency_120", "E1", "call", "08:00", complaint_code="EM-02", level="1", caller={"phone": "138"}),
        r("emergency_120", "E1", "dispatch", "08:01", vehicle="120-07"),
        r("emergency_120", "E1", "arrive", "08:12"),
        r("emergency_120", "E1", "complete", "08:40", hospital="市第一医院"),
        r(
            "psych_crisis",
            "P1",
            "reported",
            "21:00",
            risk_code="PC-01",
            channel="hotline",
            subject_person={"name": "赵六"},
        ),
        r("psych_crisis", "P1", "intervened", "21:30", department="comprehensive"),
        r("psych_crisis", "P1", "intervened", "21:40", department="mental_health"),
        r("psych_crisis", "P1", "resolved", "23:00"),
        r(
            "food_rapid_test",
            "F1",
            "failed",
            "06:30",
            item_code="FS-01",
            market="江东农贸市场",
            stall="A12",
            sample="韭菜",
        ),
        r("food_rapid_test", "F1", "disposed", "07:00", inspector="QT-3"),
    ]
    bad = [
        ["a", "list"],
        r("emergency_120", "E2", "call", "08:00", level="1"),
        r("food_rapid_test", "F2", "failed", "06:30", item_code="PH-A01", market="m", stall="s", sample="x"),
        lifecycle[3],
    ]
    return lifecycle, bad


def courts() -> tuple[list[Any], list[Any]]:
    def r(kind: str, no: str, stage: str, hhmm: str, **kw: Any) -> dict[str, Any]:
        return {"case_type": kind, "case_no": no, "stage": stage, "time": T.format(hhmm), **kw}

    lifecycle = [
        r(
            "mediation",
            "M1",
            "filed",
            "09:00",
            dispute_code="MD-02",
            summary="邻里噪音纠纷",
            applicant={"name": "李四"},
        ),
        r("mediation", "M1", "mediator_assigned", "09:30", mediator="调解员张"),
        r("mediation", "M1", "succeeded", "15:00"),
        r(
            "arbitration",
            "A1",
            "filed",
            "10:00",
            dispute_code="AR-01",
            summary="拖欠工资",
            applicant={"name": "工人甲"},
        ),
        r("arbitration", "A1", "accepted", "11:00"),
        r("arbitration", "A1", "hearing", "14:00", mediator="仲裁员王"),
        r("arbitration", "A1", "award", "16:00"),
        r(
            "arbitration",
            "A2",
            "filed",
            "10:05",
            dispute_code="AR-03",
            summary="社保",
            applicant={"name": "乙"},
        ),
        r("arbitration", "A2", "not_accepted", "11:05", reason="超过仲裁时效"),
    ]
    bad = [
        42,
        r("mediation", "M2", "filed", "09:00", dispute_code="MD-02", applicant={"name": "x"}),
        r("mediation", "M3", "filed", "09:00", dispute_code="AR-01", summary="s", applicant={"name": "x"}),
        lifecycle[0],
    ]
    return lifecycle, bad


def open311() -> tuple[list[Any], list[Any]]:
    def r(rid: str, **kw: Any) -> dict[str, Any]:
        return {"service_request_id": rid, "requested_datetime": T.format("12:00"), **kw}

    lifecycle = [
        r(
            "SR1",
            service_code="CM-LIGHT",
            lat=32.0,
            long=118.7,
            description="路灯不亮",
            first_name="小",
            last_name="明",
            media_url="https://img.example/sr1.jpg",
        ),
        r(
            "SR2",
            service_code="NOISE",
            address_string="江东中路5号",
            description="夜间施工",
            attribute={"period": "night"},
        ),
    ]
    bad = [
        r("SR3", service_code="CM-LIGHT", lat="north", long=118.7, description="x"),
        r("SR4", service_code="CM-LIGHT", lat=32.0, long=118.7),
        r("SR5", service_code="NOPE", lat=32.0, long=118.7, description="x"),
        lifecycle[0],
    ]
    return lifecycle, bad


# connector → (native builder, expected bad-record fields, {caseref: (kind of case source, expected stage)})
CASES: dict[str, tuple[Any, list[str], dict[str, str]]] = {
    "police": (police, ["", "summary", "category"], {"J1": "closed", "W1": "closed"}),
    "citymgmt": (citymgmt, ["photos.0", "case_no", "matter_code"], {"C1": "closed", "C2": "rejected"}),
    "health": (
        health,
        ["", "complaint_code", "item_code"],
        {"PH1": "closed", "E1": "closed", "P1": "closed", "F1": "closed"},
    ),
    "courts": (courts, ["", "summary", "dispute_code"], {"M1": "closed", "A1": "closed", "A2": "rejected"}),
    "open311": (open311, ["lat", "description", "service_code"], {"SR1": "reported", "SR2": "reported"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_native_records_round_trip(name: str, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    build, bad_fields, expected = CASES[name]
    lifecycle, bad = build()
    store_url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    nc = await connect_nats(nats_server.url, "test-intake")
    intake, task = await start_intake(nc, store_url, settings=FAST)
    pub = await connect_nats(nats_server.url, f"test-{name}")
    js = pub.jetstream(publish_async_max_pending=4000)
    connector = registry.build(name)

    async def publish(events: Sequence[dict[str, Any]]) -> Sequence[Any]:
        return await publish_events(js, events)

    try:
        first = await base.submit(connector, lifecycle, publish)
        assert [r.status for r in first] == ["accepted"] * len(lifecycle), [r.error for r in first]
        second = await base.submit(connector, bad, publish)
        assert [r.status for r in second] == ["rejected"] * 3 + ["duplicate"], second
        assert [r.field for r in second[:3]] == bad_fields, [str(r.error) for r in second]
        assert all(r.error for r in second[:3])
        assert second[3].event_id == connector.map_checked(bad[3])[0]["id"]

        ledger = build_ledger(store_url)

        def stage_of(ref: str) -> str | None:
            try:
                return str(ledger.get_case(m.case_id_for(connector.source, ref)).stage)
            except Exception:
                return None

        await eventually(lambda: all(stage_of(ref) == stage for ref, stage in expected.items()))
        opened_by_referral = 1 if name == "police" else 0  # 警调对接 opens the court's case
        assert ledger.case_count() == len(expected) + opened_by_referral
        # every accepted event is in the store, with the department's own timestamps, once
        ids = {str(e["id"]): e for rec in lifecycle for e in connector.map_checked(rec)}
        for ref in expected:
            case = ledger.get_case(m.case_id_for(connector.source, ref))
            assert case.applied <= set(ids)
            first_event = next(e for e in ids.values() if e["caseref"] == ref)
            assert case.reported_at == datetime.fromisoformat(first_event["time"])
        assert intake.stats.dead_lettered == 0
    finally:
        intake.stop()
        await asyncio.wait_for(task, 30)
        await pub.close()
        await nc.close()


async def test_referral_escalation_and_rework(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """Referral link (警调对接), escalation on an unreachable warning, and the rework loop of 数字城管."""
    store_url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    nc = await connect_nats(nats_server.url, "test-intake")
    intake, task = await start_intake(nc, store_url, settings=FAST)
    js = nc.jetstream(publish_async_max_pending=4000)

    async def publish(events: Sequence[dict[str, Any]]) -> Sequence[Any]:
        return await publish_events(js, events)

    try:
        await base.submit(registry.build("police"), police()[0], publish)
        await base.submit(registry.build("citymgmt"), citymgmt()[0], publish)
        referred = [
            {
                "case_type": "mediation",
                "case_no": "M1",
                "stage": "filed",
                "time": T.format("09:00"),
                "dispute_code": "MD-02",
                "summary": "邻里噪音纠纷",
                "applicant": {"name": "李四"},
                "referred_from": {"source": "police-110", "caseref": "J1"},
            },
            {
                "case_type": "mediation",
                "case_no": "M1",
                "stage": "mediator_assigned",
                "time": T.format("09:30"),
                "mediator": "调解员张",
            },
            {"case_type": "mediation", "case_no": "M1", "stage": "succeeded", "time": T.format("15:00")},
        ]
        assert [r.status for r in await base.submit(registry.build("courts"), referred, publish)] == [
            "accepted"
        ] * 3
        ledger = build_ledger(store_url)
        j1 = m.case_id_for("police-110", "J1")
        w1 = m.case_id_for("police-110", "W1")
        c1 = m.case_id_for("citymgmt-dcm", "C1")
        m1 = m.case_id_for("courts-platform", "M1")

        def done() -> bool:
            try:
                return all(str(ledger.get_case(c).stage) == "closed" for c in (j1, w1, c1, m1))
            except Exception:
                return False

        await eventually(done)
        assert ledger.get_case(j1).links[0][:2] == ("referred_to", m1)
        assert ledger.get_case(m1).category == "MD-02" and ledger.get_case(m1).kind == "mediation"
        assert ledger.get_case(j1).priority == "high"
        assert ledger.get_case(w1).escalations == 1
        case = ledger.get_case(c1)
        assert (case.reworks, case.attachments) == (1, ["https://img.example/c1.jpg"])
    finally:
        intake.stop()
        await asyncio.wait_for(task, 30)
        await nc.close()
