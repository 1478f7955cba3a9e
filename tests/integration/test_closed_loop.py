"""The two cross-department scenarios of issue 3 through the real intake path (NATS → store), and
the deadline watcher's exactly-once escalations across restarts (SQLite and PostgreSQL).

1. 警调/诉调对接: a police dispute is referred to court pre-litigation mediation (诉前调解); the police
   case cannot close until the mediation concludes, then it can.
2. 心理危机: a psychological-crisis report from health opens work for 综治 (comprehensive) and
   精神卫生 (mental_health); the health case closes only when both are done.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from connectors.publisher import publish_events
from hub import messages as m
from hub.application import CaseLedger, Verdict
from hub.domain import Stage
from hub.intake import Intake, IntakeSettings
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.natsd import EmbeddedNats
from tests.support import eventually

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 China Standard Time
SETTINGS = IntakeSettings(retry_delays_s=(0.3,) * 60, ack_wait_s=2.0, batch_size=200)


class Dept:
    """One department system publishing canonical events about its own case."""

    def __init__(self, department: str, kind: str, source: str, caseref: str) -> None:
        self.department, self.kind, self.source, self.caseref = department, kind, source, caseref
        self.n = 0

    @property
    def case_id(self) -> UUID:
        return m.case_id_for(self.source, self.caseref)

    def __call__(
        self, action: str, data: dict[str, Any] | None = None, minutes: int | None = None
    ) -> dict[str, Any]:
        self.n += 1
        return m.make_event(
            id=f"{self.source}:{self.caseref}:{self.n}", source=self.source, department=self.department,
            kind=self.kind, action=action, caseref=self.caseref, actor=f"{self.department}:staff-1",
            time=T0 + timedelta(minutes=minutes if minutes is not None else 10 * self.n), data=data or {},
        )  # fmt: skip

    def loop(self, *, close: bool = True) -> list[dict[str, Any]]:
        """registered → dispatched to itself → accepted → handled → verified (→ closed)."""
        d = self.department
        events = [
            self("registered"),
            self("dispatched", {"departments": [d]}),
            self("accepted", {"department": d}),
            self("handled", {"department": d, "note": "处置完毕"}),
            self("verified", {"passed": True}),
        ]
        return [*events, self("closed")] if close else events


async def _settled(intake: Intake, applied: int) -> None:
    await eventually(lambda: intake.stats.applied >= applied)


@pytest.mark.slow
async def test_police_dispute_referred_to_court_mediation(nats_server: EmbeddedNats, tmp_path: Any) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    nc = await connect_nats(nats_server.url, "test-closed-loop")
    intake, task = await start_intake(nc, store, settings=SETTINGS)
    police = Dept("police", "incident", "police-110", "JQ-20260302-001")
    court = Dept("courts", "mediation", "court-mediation", "TJ-2026-017")
    try:
        js = nc.jetstream(timeout=10)
        police_events = [
            police(
                "reported",
                {"category": "dispute", "title": "邻里噪音纠纷", "location": {"lon": 118.70, "lat": 32.01}},
            ),
            *police.loop(close=False)[:4],  # registered, dispatched, accepted, handled
            police(
                "linked",
                {
                    "relation": "referred_to",
                    "target": {"source": court.source, "caseref": court.caseref},
                    "target_department": "courts",
                    "target_kind": "mediation",
                    "note": "警调对接: 引导当事人诉前调解",
                },
            ),
            police("verified", {"passed": True}),
        ]
        early_close = police("closed")
        results = await publish_events(js, [*police_events, early_close])
        assert {r.status for r in results} == {"accepted"}
        await _settled(intake, len(police_events))
        await eventually(lambda: intake.stats.retried >= 2)  # the close is refused, retried

        ledger = build_ledger(store)
        case = ledger.get_case(police.case_id)
        assert case.stage is Stage.VERIFIED and court.case_id in case.awaiting
        mediation = ledger.get_case(court.case_id)  # opened by the link, in the court's name
        assert (mediation.origin_department, mediation.kind, mediation.stage) == (
            "courts",
            "mediation",
            Stage.REPORTED,
        )
        assert mediation.links == [("referred_from", police.case_id, "police")]
        assert mediation.grid == case.grid and case.grid is not None

        await publish_events(js, court.loop())  # the mediation runs its own loop and concludes
        await eventually(lambda: build_ledger(store).get_case(police.case_id).stage is Stage.CLOSED)
    finally:
        intake.stop()
        await task
        await nc.close()
    ledger = build_ledger(store)
    case = ledger.get_case(police.case_id)
    assert case.concluded_links == {court.case_id: "closed"} and not case.awaiting
    assert ledger.get_case(court.case_id).stage is Stage.CLOSED
    assert intake.stats.dead_lettered == 0


@pytest.mark.slow
async def test_psych_crisis_opens_comprehensive_and_mental_health_work(
    nats_server: EmbeddedNats, tmp_path: Any
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    nc = await connect_nats(nats_server.url, "test-closed-loop")
    intake, task = await start_intake(nc, store, settings=SETTINGS)
    health = Dept("health", "psych_crisis", "health-psych", "XL-001")
    zongzhi = Dept("comprehensive", "case", "zongzhi-grid", "ZZ-001")
    mental = Dept("mental_health", "case", "mental-health-center", "MH-001")
    try:
        js = nc.jetstream(timeout=10)
        opened = [
            health("reported", {"category": "psych_crisis", "title": "心理危机干预", "priority": "urgent",
                                "location": {"lon": 118.74, "lat": 32.03}}),
            health("registered"),
            *(
                health("linked", {"relation": "parent_of",
                                  "target": {"source": d.source, "caseref": d.caseref},
                                  "target_department": d.department, "note": "心理危机 联动"})
                for d in (zongzhi, mental)
            ),
            *health.loop(close=False)[1:],  # dispatched to health itself … verified
        ]  # fmt: skip
        await publish_events(js, opened)
        await _settled(intake, len(opened))
        ledger = build_ledger(store)
        for child in (zongzhi, mental):
            case = ledger.get_case(child.case_id)
            assert (case.origin_department, case.kind, case.priority) == (child.department, "case", "urgent")
            assert case.links == [("child_of", health.case_id, "health")]

        await publish_events(js, [*zongzhi.loop(), *mental.loop(close=False), health("closed")])
        await eventually(lambda: intake.stats.retried >= 2)
        await eventually(
            lambda: not build_ledger(store).get_case(health.case_id).awaiting.get(zongzhi.case_id)
        )
        parent = build_ledger(store).get_case(health.case_id)
        assert parent.stage is Stage.VERIFIED, "closed while 精神卫生 was still working"
        assert set(parent.awaiting) == {mental.case_id}

        await publish_events(js, [mental("closed")])
        await eventually(lambda: build_ledger(store).get_case(health.case_id).stage is Stage.CLOSED)
    finally:
        intake.stop()
        await task
        await nc.close()
    parent = build_ledger(store).get_case(health.case_id)
    assert parent.concluded_links == {zongzhi.case_id: "closed", mental.case_id: "closed"}
    assert intake.stats.dead_lettered == 0


# --------------------------------------------------------------------------- deadline watcher
def _valid(event: dict[str, Any], ledger: CaseLedger) -> m.Valid:
    import orjson

    result = m.validate(orjson.dumps(event), ledger.catalogue)
    assert isinstance(result, m.Valid), result
    return result


def _escalations(ledger: CaseLedger) -> list[Any]:
    from hub.domain import Case

    return [ledger.mapper.to_domain_event(n) for n in ledger.iter_topics({Case.Escalated.TOPIC})]


def test_deadline_watcher_escalates_once_across_restarts(store_url: str) -> None:
    dcm = Dept("citymgmt", "case", "citymgmt-dcm", "W-1")
    ledger = build_ledger(store_url)
    events = [
        dcm(
            "reported",
            {"category": "01001", "title": "供水井盖缺失", "location": {"lon": 118.70, "lat": 32.0}},
            0,
        ),
        dcm("registered", minutes=10),
        dcm("dispatched", {"departments": ["water"]}, 20),
        dcm("accepted", {"department": "water"}, 30),  # 09:30 CST: 处置时限 2 working hours → 11:30
    ]
    assert [o.verdict for o in ledger.apply_batch([_valid(e, ledger) for e in events])] == [
        Verdict.APPLIED
    ] * 4
    due = datetime(2026, 3, 2, 3, 30, tzinfo=UTC)
    assert ledger.get_case(dcm.case_id).due == due

    assert ledger.escalate_overdue(due) == []  # not yet: the deadline itself is not a breach
    first = ledger.escalate_overdue(due + timedelta(minutes=1))
    assert [o.verdict for o in first] == [Verdict.APPLIED]
    assert ledger.escalate_overdue(due + timedelta(hours=5)) == []  # same breach: nothing new

    restarted = build_ledger(store_url)  # a new process: empty cache, index rebuilt from the log
    assert restarted.escalate_overdue(due + timedelta(days=3)) == []
    (breach,) = _escalations(restarted)
    assert breach.event_id == f"sla:{dcm.case_id}:accepted:{due.isoformat()}"
    assert (breach.at, breach.stage, breach.deadline, breach.actor) == (
        due,
        "accepted",
        due,
        "system:sla-watcher",
    )

    # An extension sets a new deadline: its breach is a second, distinct escalation, once.
    until = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
    ext = dcm("extended", {"reason": "需更换井座", "until": until.isoformat()}, 300)
    assert restarted.apply_batch([_valid(ext, restarted)])[0].verdict is Verdict.APPLIED
    assert restarted.escalate_overdue(until) == []
    assert [o.verdict for o in restarted.escalate_overdue(until + timedelta(seconds=1))] == [Verdict.APPLIED]
    again = build_ledger(store_url)
    assert again.breach_events(until + timedelta(days=30)) == []
    case = again.get_case(dcm.case_id)
    assert (case.breaches, case.escalation_level) == (2, 2)
    assert len(_escalations(again)) == 2

    # Suspended cases are never escalated (the clock is paused).
    sus = dcm("suspended", {"reason": "等待产权单位"}, 400)
    again.apply_batch([_valid(sus, again)])
    assert again.breach_events(until + timedelta(days=60)) == []


@pytest.mark.slow
async def test_breach_events_published_twice_apply_once(nats_server: EmbeddedNats, tmp_path: Any) -> None:
    """The watcher's events can also go through NATS; duplicates die at the stream and the case."""
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    dcm = Dept("citymgmt", "case", "citymgmt-dcm", "W-2")
    nc = await connect_nats(nats_server.url, "test-watcher")
    intake, task = await start_intake(nc, store, settings=SETTINGS)
    try:
        js = nc.jetstream(timeout=10)
        await publish_events(
            js,
            [
                dcm(
                    "reported",
                    {"category": "06001", "title": "私搭乱建", "location": {"lon": 118.7, "lat": 32.0}},
                    0,
                )
            ],
        )
        await _settled(intake, 1)
        watcher = build_ledger(store)  # e.g. a separate ops process
        breaches = watcher.breach_events(T0 + timedelta(days=1))
        assert [b["data"]["stage"] for b in breaches] == ["reported"]
        await publish_events(js, breaches)
        await publish_events(js, [{**breaches[0]}])  # published again by a restarted watcher
        await _settled(intake, 2)
        await eventually(lambda: build_ledger(store).breach_events(T0 + timedelta(days=1)) == [])
    finally:
        intake.stop()
        await task
        await nc.close()
    assert len(_escalations(build_ledger(store))) == 1
