"""A step the case has already taken is a no-op acknowledged as a duplicate, never a dead letter.

Two cases of the issue: the deadline watcher's 督办 arriving for a deadline the case has meanwhile
left (a catch-up or back-fill: the case's later steps were still on the way when the watcher looked),
and the same step reported by two sources (the operator's 派遣, then the department's own dispatch
record). Genuinely wrong transitions stay refused (and so dead-lettered after their retries).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from hub import messages as m
from hub.adapters.config.loading import load_domain, load_sla
from hub.adapters.store.follower import LogFollower
from hub.application import CaseLedger, Verdict
from hub.domain import AlreadyDone, Case, CaseRefused, Stage

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 09:00 in China
SLA = load_sla().for_case(department="citymgmt", kind="case", category="01001", priority="normal")
DOMAIN = load_domain()
CATALOGUE = m.Catalogue.of({d.code: d.kinds for d in DOMAIN.departments.values()})


class Steps:
    def __init__(self) -> None:
        self.n = 0

    def kw(self, minutes: float, department: str = "command") -> dict[str, Any]:
        self.n += 1
        return {"event_id": f"e{self.n}", "at": T0 + timedelta(minutes=minutes), "actor": "op",
                "department": department}  # fmt: skip


def reported() -> tuple[Case, Steps]:
    s = Steps()
    case = Case.report(
        uuid.uuid4(), **s.kw(0, "citymgmt"), source="dcm", caseref="C1", kind="case", category="01001",
        title="供水井盖破损", sla=SLA,
    )  # fmt: skip
    case.collect_events()
    return case, s


def test_the_same_dispatch_from_operator_and_department_is_already_done() -> None:
    case, s = reported()
    case.register(**s.kw(10), sla=SLA)
    case.dispatch(**s.kw(20), departments=["water"], sla=SLA)  # the operator's 派遣
    case.collect_events()
    with pytest.raises(AlreadyDone, match="every named department is already responsible"):
        case.dispatch(**s.kw(25, "citymgmt"), departments=["water"], sla=SLA)  # the department's record
    assert case.collect_events() == []
    case.accept(**s.kw(30, "water"), sla=SLA)
    with pytest.raises(AlreadyDone, match="water has already accepted it"):
        case.accept(**s.kw(31, "water"), sla=SLA)
    # a new department is not a repeat: joint handling (联合处置)
    case.dispatch(**s.kw(40, "citymgmt"), departments=["water", "gas"], sla=SLA)
    assert set(case.parts) == {"water", "gas"} and case.stage is Stage.DISPATCHED


def test_a_breach_the_case_has_moved_past_is_already_done() -> None:
    case, s = reported()
    due = case.due
    assert due is not None
    case.register(**s.kw(200), sla=SLA)  # registered late: after the 立案 deadline
    with pytest.raises(AlreadyDone, match="is not current"):
        case.escalate(**s.kw(0), reason="超期", stage="reported", deadline=due)
    assert case.breaches == 0 and case.collect_events()[-1].__class__ is Case.Registered


def test_a_breach_is_recorded_once_even_under_another_event_id() -> None:
    case, s = reported()
    due = case.due
    assert due is not None
    case.escalate(**s.kw(130), reason="超期", stage="reported", deadline=due)
    with pytest.raises(AlreadyDone, match="already escalated"):
        case.escalate(**s.kw(131), reason="超期", stage="reported", deadline=due, level=2)
    assert (case.breaches, case.escalations) == (1, 1)


def test_a_breach_of_a_finished_case_is_already_done_but_an_operator_escalation_is_refused() -> None:
    case, s = reported()
    due = case.due
    assert due is not None
    case.reject(**s.kw(30), reason="不属于受理范围")
    with pytest.raises(AlreadyDone):
        case.escalate(**s.kw(0), reason="超期", stage="reported", deadline=due)
    with pytest.raises(CaseRefused) as refused:
        case.escalate(**s.kw(40), reason="督办")  # an operator's 督办 of a finished case is wrong
    assert not isinstance(refused.value, AlreadyDone)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda c, s: c.handle(**s.kw(40, "water"), sla=SLA),  # not accepted yet
        lambda c, s: c.accept(**s.kw(40, "gas"), sla=SLA),  # not responsible
        lambda c, s: c.merge(**s.kw(40), primary_id=uuid.UUID(int=1)),  # not allowed after dispatch
        lambda c, s: c.verify(**s.kw(40), passed=True, sla=SLA),  # nothing handled yet
        lambda c, s: c.close(**s.kw(40)),
        lambda c, s: c.resume(**s.kw(40), sla=SLA),  # not suspended
    ],
)
def test_genuinely_wrong_steps_stay_refused(wrong: Any) -> None:
    case, s = reported()
    case.register(**s.kw(10), sla=SLA)
    case.dispatch(**s.kw(20), departments=["water"], sla=SLA)
    with pytest.raises(CaseRefused) as refused:
        wrong(case, s)
    assert not isinstance(refused.value, AlreadyDone)


def test_a_contradicting_evaluation_is_refused_the_same_one_is_already_done() -> None:
    case, s = reported()
    for step in (
        lambda: case.register(**s.kw(10), sla=SLA),
        lambda: case.dispatch(**s.kw(20), departments=["water"], sla=SLA),
        lambda: case.accept(**s.kw(30, "water"), sla=SLA),
        lambda: case.handle(**s.kw(40, "water"), sla=SLA),
        lambda: case.verify(**s.kw(50), passed=True, sla=SLA),
        lambda: case.close(**s.kw(60)),
        lambda: case.evaluate(**s.kw(70), score=4, by="citizen"),
    ):
        step()
    with pytest.raises(AlreadyDone):
        case.evaluate(**s.kw(71), score=4, by="citizen")
    with pytest.raises(CaseRefused, match="already evaluated by citizen") as refused:
        case.evaluate(**s.kw(72), score=1, by="citizen")
    assert not isinstance(refused.value, AlreadyDone)
    with pytest.raises(AlreadyDone, match="already closed"):
        case.close(**s.kw(73))


# ---------------------------------------------------------------------- the ledger's verdicts
def event(caseref: str, n: int, action: str, data: dict[str, Any], **over: Any) -> m.Valid:
    raw = m.make_event(
        **{"id": f"{caseref}:{n}", "source": "citymgmt-dcm", "department": "citymgmt", "kind": "case",
           "action": action, "caseref": caseref, "actor": "gw:1", "time": T0 + timedelta(minutes=n),
           "data": data, **over},
    )  # fmt: skip
    result = m.validate(orjson.dumps(raw), CATALOGUE)
    assert isinstance(result, m.Valid), result
    return result


def report(caseref: str) -> m.Valid:
    data = {"category": "01001", "title": "井盖", "location": {"lon": 118.7, "lat": 32.0}}
    return event(caseref, 0, "reported", data)


def test_the_watcher_catching_up_never_produces_a_refusal() -> None:
    """The watcher looked while the case's register was still in the backlog (a catch-up)."""
    ledger = CaseLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=DOMAIN, follow_log=LogFollower)
    assert [o.verdict for o in ledger.apply_batch([report("W")])] == [Verdict.APPLIED]
    (breach,) = ledger.breach_events(T0 + timedelta(days=1))
    late = event("W", 300, "registered", {})  # on its way when the watcher looked
    escalation = m.validate(orjson.dumps(breach), ledger.catalogue)
    assert isinstance(escalation, m.Valid)
    outcomes = ledger.apply_batch([late, escalation])
    assert [o.verdict for o in outcomes] == [Verdict.APPLIED, Verdict.DUPLICATE]
    assert "is not current" in outcomes[1].detail
    assert ledger.get_case(late.case_id).breaches == 0
    # the new stage has its own deadline: that breach is escalated, once
    (again,) = ledger.breach_events(T0 + timedelta(days=2))
    assert again["data"]["stage"] == "registered"


def test_operator_dispatch_then_department_dispatch_is_a_duplicate() -> None:
    ledger = CaseLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=DOMAIN, follow_log=LogFollower)
    operator = {"source": "citymgmt-dcm", "department": m.COMMAND_DEPARTMENT, "actor": "operator:1",
                "id": "op-dispatch", "caseid": m.case_id_for("citymgmt-dcm", "D")}  # fmt: skip
    items = [
        report("D"),
        event("D", 5, "registered", {}),
        event("D", 10, "dispatched", {"departments": ["water"]}, **operator),
        event("D", 12, "dispatched", {"departments": ["water"]}),  # the department's own record
        event("D", 15, "accepted", {"department": "water"}),
        event("D", 16, "handled", {"department": "gas"}),  # genuinely wrong: gas is not responsible
    ]
    verdicts = [o.verdict for o in ledger.apply_batch(items)]
    assert verdicts == [Verdict.APPLIED] * 3 + [Verdict.DUPLICATE, Verdict.APPLIED, Verdict.REFUSED]
