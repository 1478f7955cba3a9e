"""Departments confined to their own cases (issue 15, 数据权限): the pure rule and the ledger's verdicts.

The rule (hub.domain.authority) decides; the ledger turns its refusal into ``NOT_PERMITTED`` (final:
dead-lettered at once) or ``NOT_PERMITTED_YET`` (retried first: the dispatch that permits it may
still be on its way), the intake dead-letters both as ``not_permitted``. The integration test
through real NATS is tests/integration/test_not_permitted.py.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from hub import messages as m
from hub.adapters.config.loading import ConfigError, load_departments, load_domain
from hub.adapters.store.follower import LogFollower
from hub.application import CaseLedger, Verdict
from hub.domain import Authority, Case, NotPermitted, Stage

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DOMAIN = load_domain()
CATALOGUE = m.Catalogue.of({d.code: d.kinds for d in DOMAIN.departments.values()})
RULE = Authority(command=m.COMMAND_DEPARTMENT)


# ---------------------------------------------------------------------- the pure rule
def kw(n: int, department: str) -> dict[str, Any]:
    return {"event_id": f"e{n}", "at": T0 + timedelta(minutes=n), "actor": "x:1", "department": department}


def citymgmt_case() -> Case:
    return Case.report(
        uuid.uuid5(uuid.NAMESPACE_URL, "C1"), **kw(0, "citymgmt"), source="citymgmt-dcm", caseref="C1",
        kind="case", category="01001", title="供水井盖破损",
    )  # fmt: skip


def test_the_origin_department_acts_and_records_its_units_steps() -> None:
    case = citymgmt_case()
    RULE.check_case(case, "citymgmt")
    RULE.check_case(case, "citymgmt", acting_for="water")  # 数字城管 records 供水's 签收


def test_a_stranger_may_not_act_and_the_refusal_names_case_and_department() -> None:
    case = citymgmt_case()
    with pytest.raises(NotPermitted) as refused:
        RULE.check_case(case, "police")
    assert str(refused.value) == (
        f"police may not act on case {case.id} (citymgmt-dcm/C1) owned by citymgmt; "
        f"it was never dispatched, referred or linked to police"
    )
    assert (refused.value.field, refused.value.final, refused.value.case_id) == ("department", False, case.id)
    with pytest.raises(NotPermitted, match="police may not act on case"):
        RULE.check_case(case, "police", acting_for="water")  # "as water": still not its case


def test_a_dispatched_department_acts_in_its_own_name_only() -> None:
    case = citymgmt_case()
    case.register(**kw(1, "citymgmt"))
    case.dispatch(**kw(2, "citymgmt"), departments=["water", "police"])
    RULE.check_case(case, "police")
    RULE.check_case(case, "police", acting_for="police")
    with pytest.raises(NotPermitted) as refused:
        RULE.check_case(case, "police", acting_for="water")
    assert refused.value.final and refused.value.field == "data.department"
    assert "police may not act as water" in str(refused.value)


def test_a_department_that_returned_the_case_was_still_dispatched_it() -> None:
    case = citymgmt_case()
    case.register(**kw(1, "citymgmt"))
    case.dispatch(**kw(2, "citymgmt"), departments=["police"])
    case.return_(**kw(3, "police"), reason="非本单位职责")
    assert "police" not in case.parts
    RULE.check_case(case, "police")  # its late records concern this case; the stage decides them


def test_a_case_referred_or_linked_to_a_department_is_its_concern() -> None:
    case = citymgmt_case()
    case.link(**kw(1, "citymgmt"), relation="referred_to", target_id=uuid.UUID(int=7),
              target_department="police")  # fmt: skip
    RULE.check_case(case, "police")
    with pytest.raises(NotPermitted):
        RULE.check_case(case, "courts")


def test_the_command_centre_acts_on_every_case_for_everyone() -> None:
    case = citymgmt_case()
    RULE.check_case(case, "command", acting_for="police")
    RULE.check_identity("command", "operator:dev", "operator")
    RULE.check_link_target(case, "command")


@pytest.mark.parametrize(
    ("actor", "role", "field"),
    [
        ("operator:nobody", None, "actor"),
        ("system:sla-watcher", None, "actor"),
        ("Operator:x", None, "actor"),
        ("operator", None, "actor"),
        ("officer:1", "operator", "actorrole"),
        ("officer:1", "system", "actorrole"),
    ],
)
def test_a_department_event_may_not_claim_a_hub_identity(actor: str, role: str | None, field: str) -> None:
    with pytest.raises(NotPermitted) as refused:
        RULE.check_identity("police", actor, role)
    assert refused.value.final and refused.value.field == field


def test_department_staff_actors_are_their_own() -> None:
    for actor in ("calltaker:110", "clerk:7", "officer:123456", "center:dcm", "citizen", "department:x"):
        RULE.check_identity("police", actor, None)


def test_linking_to_an_existing_case_needs_permission_on_it() -> None:
    target = citymgmt_case()
    with pytest.raises(NotPermitted) as refused:
        RULE.check_link_target(target, "police")
    assert refused.value.field == "data.target" and f"may not link to case {target.id}" in str(refused.value)
    RULE.check_link_target(target, "citymgmt")


def test_involvement_is_rebuilt_by_replay() -> None:
    case = citymgmt_case()
    case.register(**kw(1, "citymgmt"))
    case.dispatch(**kw(2, "citymgmt"), departments=["police"])
    case.link(**kw(3, "citymgmt"), relation="parent_of", target_id=uuid.UUID(int=8),
              target_department="health")  # fmt: skip
    replayed: Case | None = None
    for event in case.collect_events():
        replayed = event.mutate(replayed)
    assert replayed is not None and replayed.involved == {"police", "health"}


# ---------------------------------------------------------------------- the ledger's verdicts
def event(caseref: str, n: int, action: str, data: dict[str, Any], **over: Any) -> m.Valid:
    raw = m.make_event(
        **{"id": f"{over.get('department', 'citymgmt')}:{caseref}:{n}", "source": "citymgmt-dcm",
           "department": "citymgmt", "kind": "case", "action": action, "caseref": caseref,
           "actor": "gw:1", "time": T0 + timedelta(minutes=n), "data": data, **over},
    )  # fmt: skip
    result = m.validate(orjson.dumps(raw), CATALOGUE)
    assert isinstance(result, m.Valid), result
    return result


def police(caseref: str, n: int, action: str, data: dict[str, Any], **over: Any) -> m.Valid:
    """A police event naming a city-management case by copying its source and case reference."""
    return event(caseref, n, action, data, department="police", kind="incident", actor="officer:1", **over)


def operator(caseref: str, n: int, action: str, data: dict[str, Any]) -> m.Valid:
    return event(
        caseref, n, action, data, department="command", actor="operator:dev", actorrole="operator",
        caseid=m.case_id_for("citymgmt-dcm", caseref),
    )  # fmt: skip


def opened(caseref: str) -> list[m.Valid]:
    data = {"category": "01001", "title": "井盖", "location": {"lon": 118.7, "lat": 32.0}}
    return [event(caseref, 0, "reported", data), event(caseref, 1, "registered", {})]


def ledger() -> CaseLedger:
    return CaseLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=DOMAIN, follow_log=LogFollower)


def test_police_rejecting_a_citymgmt_case_by_its_id_is_not_permitted() -> None:
    hub = ledger()
    hub.apply_batch(opened("R1"))
    case_id = m.case_id_for("citymgmt-dcm", "R1")
    attack = police("R1", 5, "rejected", {"reason": "不予立案"}, caseid=case_id)
    outcomes = hub.apply_batch([attack, event("R1", 6, "dispatched", {"departments": ["water"]})])
    assert [o.verdict for o in outcomes] == [Verdict.NOT_PERMITTED_YET, Verdict.APPLIED]
    assert outcomes[0].field == "department"
    assert f"police may not act on case {case_id}" in outcomes[0].detail
    assert "owned by citymgmt; it was never dispatched, referred or linked to police" in outcomes[0].detail
    assert hub.get_case(case_id).stage is Stage.DISPATCHED  # its neighbour applied, the attack nothing
    again = hub.apply_batch([attack])  # redelivered: refused again, never applied, never a duplicate
    assert [o.verdict for o in again] == [Verdict.NOT_PERMITTED_YET]


def test_police_accepting_and_handling_as_water_is_not_permitted() -> None:
    hub = ledger()
    hub.apply_batch([*opened("W1"), event("W1", 2, "dispatched", {"departments": ["water"]})])
    outcomes = hub.apply_batch(
        [
            police("W1", 5, "accepted", {"department": "water"}),
            police("W1", 6, "handled", {"department": "water", "note": "已处理"}),
        ]
    )
    assert [o.verdict for o in outcomes] == [Verdict.NOT_PERMITTED_YET] * 2
    case = hub.get_case(m.case_id_for("citymgmt-dcm", "W1"))
    assert case.parts == {"water": "dispatched"} and case.version == 3


def test_a_department_dispatched_jointly_may_not_act_as_another() -> None:
    hub = ledger()
    hub.apply_batch([*opened("J1"), operator("J1", 2, "dispatched", {"departments": ["water", "police"]})])
    (outcome,) = hub.apply_batch([police("J1", 5, "accepted", {"department": "water"})])
    assert outcome.verdict is Verdict.NOT_PERMITTED and outcome.field == "data.department"


def test_a_department_a_case_was_dispatched_to_handles_it() -> None:
    hub = ledger()
    hub.apply_batch([*opened("D1"), operator("D1", 2, "dispatched", {"departments": ["police"]})])
    outcomes = hub.apply_batch(
        [
            police("D1", 5, "accepted", {"department": "police"}),
            police("D1", 6, "handled", {"department": "police", "note": "已处置"}),
        ]
    )
    assert [o.verdict for o in outcomes] == [Verdict.APPLIED] * 2
    assert hub.get_case(m.case_id_for("citymgmt-dcm", "D1")).stage is Stage.HANDLED


def test_the_dispatch_and_the_handling_in_one_batch_apply_in_order() -> None:
    hub = ledger()
    outcomes = hub.apply_batch(
        [
            *opened("B1"),
            event("B1", 2, "dispatched", {"departments": ["police"]}),
            police("B1", 3, "accepted", {"department": "police"}),
        ]
    )
    assert [o.verdict for o in outcomes] == [Verdict.APPLIED] * 4


def test_a_referral_lets_each_side_act_on_the_case_it_concerns() -> None:
    """转介: citymgmt refers its case to a new police case; police owns that one and may act on the
    referring case too (it was referred to police), courts on neither."""
    hub = ledger()
    link = {"relation": "referred_to", "target": {"source": "police-110", "caseref": "P-9"},
            "target_department": "police", "target_kind": "incident"}  # fmt: skip
    hub.apply_batch([*opened("L1"), event("L1", 2, "linked", link)])
    police_case = m.case_id_for("police-110", "P-9")
    mine = police("P-9", 3, "registered", {}, source="police-110")
    on_referring = police("L1", 4, "escalated", {"reason": "请城管协助"})
    courts = event("L1", 5, "escalated", {"reason": "x"}, department="courts", kind="mediation")
    outcomes = hub.apply_batch([mine, on_referring, courts])
    assert [o.verdict for o in outcomes] == [Verdict.APPLIED, Verdict.APPLIED, Verdict.NOT_PERMITTED_YET]
    assert hub.get_case(police_case).stage is Stage.REGISTERED


def test_linking_a_department_case_to_another_departments_existing_case_is_not_permitted() -> None:
    hub = ledger()
    hub.apply_batch(opened("T1"))
    report = {"category": "dispute", "title": "纠纷"}
    hub.apply_batch([police("P-1", 0, "reported", report, source="police-110")])
    link = {"relation": "parent_of", "target": {"source": "citymgmt-dcm", "caseref": "T1"}}
    (outcome,) = hub.apply_batch([police("P-1", 1, "linked", link, source="police-110")])
    assert outcome.verdict is Verdict.NOT_PERMITTED_YET and outcome.field == "data.target"
    assert hub.get_case(m.case_id_for("police-110", "P-1")).links == []
    assert hub.get_case(m.case_id_for("citymgmt-dcm", "T1")).links == []


def test_a_department_event_claiming_an_operator_actor_is_not_permitted() -> None:
    hub = ledger()
    report = {"category": "01001", "title": "井盖"}
    outcomes = hub.apply_batch(
        [
            event("O1", 0, "reported", report, actor="operator:nobody"),
            *opened("O2"),
            event("O2", 3, "rejected", {"reason": "x"}, actor="operator:nobody"),
            event("O2", 4, "rejected", {"reason": "x"}, actorrole="operator"),
        ]
    )
    verdicts = [o.verdict for o in outcomes]
    assert verdicts == [Verdict.NOT_PERMITTED, Verdict.APPLIED, Verdict.APPLIED] + [Verdict.NOT_PERMITTED] * 2
    assert outcomes[0].field == "actor" and outcomes[4].field == "actorrole"
    assert hub.get_case(m.case_id_for("citymgmt-dcm", "O2")).stage is Stage.REGISTERED
    assert hub.case_count() == 1


def test_an_event_applied_before_is_still_a_duplicate() -> None:
    """Redelivered history (applied before the rule existed) stays a duplicate, never a dead letter."""
    hub = ledger()
    first = opened("H1")
    hub.apply_batch(first)
    assert [o.verdict for o in hub.apply_batch(first)] == [Verdict.DUPLICATE] * 2


# ---------------------------------------------------------------------- the HTTP edge
def test_an_event_is_published_only_as_the_senders_department() -> None:
    mine = {"department": "police"}
    assert m.published_as(mine, "police") is None
    problem = m.published_as({"department": "citymgmt"}, "police")
    assert problem is not None and "only as police" in problem and "'citymgmt'" in problem
    command = m.published_as({"department": "command"}, "police")
    assert command is not None and "operator commands" in command
    assert m.published_as({"department": "command"}, "command") is not None  # never through ingest


def test_an_operator_command_comes_only_from_the_command_subject() -> None:
    """On NATS the subject is the authenticated department: a command published on a department's
    subject is refused before any case sees it (NATS permissions keep city.command.> the hub's)."""
    command = m.make_event(
        id="op-x", source="citymgmt-dcm", department="command", kind="case", action="rejected",
        caseref="C1", actor="operator:dev", time=T0, data={"reason": "x"},
        caseid=m.case_id_for("citymgmt-dcm", "C1"),
    )  # fmt: skip
    raw = orjson.dumps(command)
    refused = m.validate(raw, CATALOGUE, "city.police.case.rejected")
    assert isinstance(refused, m.Invalid) and refused.reason is m.Reason.SUBJECT_MISMATCH
    assert isinstance(m.validate(raw, CATALOGUE, "city.command.case.rejected"), m.Valid)


# ---------------------------------------------------------------------- rule 6: source systems
def sourced_ledger() -> CaseLedger:
    """A deployment that lists its departments' source systems (departments.toml ``sources``)."""
    departments = {
        code: replace(d, sources={"citymgmt": ("citymgmt-dcm",), "police": ("police-110",)}.get(code, ()))
        for code, d in DOMAIN.departments.items()
    }
    return CaseLedger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        domain=replace(DOMAIN, departments=departments),
        follow_log=LogFollower,
    )


def test_a_department_may_not_take_another_systems_case_reference_first() -> None:
    """Police reports under city management's source system before the real report arrives: refused
    for good, and the owner's own report is then applied as the case's first event."""
    hub = sourced_ledger()
    squat = police("S1", 0, "reported", {"category": "01001", "title": "井盖"})  # source citymgmt-dcm
    (outcome,) = hub.apply_batch([squat])
    assert outcome.verdict is Verdict.NOT_PERMITTED and outcome.field == "source"
    assert "'citymgmt-dcm': it is citymgmt's source system" in outcome.detail
    outcomes = hub.apply_batch(opened("S1"))
    assert [o.verdict for o in outcomes] == [Verdict.APPLIED, Verdict.APPLIED]
    assert hub.get_case(m.case_id_for("citymgmt-dcm", "S1")).origin_department == "citymgmt"


def test_a_link_may_not_open_a_case_under_another_departments_source() -> None:
    hub = sourced_ledger()
    hub.apply_batch(
        [police("P-2", 0, "reported", {"category": "dispute", "title": "纠纷"}, source="police-110")]
    )
    link = {"relation": "referred_to", "target": {"source": "citymgmt-dcm", "caseref": "S2"},
            "target_department": "police"}  # fmt: skip
    (outcome,) = hub.apply_batch([police("P-2", 1, "linked", link, source="police-110")])
    assert outcome.verdict is Verdict.NOT_PERMITTED and outcome.field == "data.target"
    assert hub.get_case(m.case_id_for("police-110", "P-2")).links == []


def test_sources_configured_for_no_department_stay_open_and_a_source_has_one_owner(tmp_path: Any) -> None:
    hub = sourced_ledger()
    free = police("F1", 0, "reported", {"category": "dispute", "title": "纠纷"}, source="police-app")
    assert [o.verdict for o in hub.apply_batch([free])] == [Verdict.APPLIED]
    (tmp_path / "departments.toml").write_text(
        '[departments.a]\nkinds = ["case"]\nsources = ["x"]\n'
        '[departments.b]\nkinds = ["case"]\nsources = ["x"]\n'
    )
    with pytest.raises(ConfigError, match="source 'x' is already the source of department 'a'"):
        load_departments(tmp_path)
