"""Property-based tests (hypothesis) of the Case aggregate and of the ledger's idempotent receiver."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import messages as m
from hub.adapters.config.loading import load_domain, load_sla
from hub.adapters.store.follower import LogFollower
from hub.application import CaseLedger, Verdict
from hub.domain import OPEN_STAGES, Case, CaseRefused, Stage
from hub.domain.case import CONCLUDED_STAGES
from hub.domain.progress import stage_of

T0 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
SLA = load_sla().for_case(department="citymgmt", kind="case", category="01001", priority="normal")
DEPTS = ["water", "gas"]
TARGETS = [uuid.UUID(int=i) for i in (1, 2)]

command = st.one_of(
    st.tuples(st.just("register"), st.none()),
    st.tuples(st.just("reject"), st.none()),
    st.tuples(st.just("merge"), st.none()),
    st.tuples(st.just("dispatch"), st.sampled_from(DEPTS)),
    st.tuples(st.just("accept"), st.sampled_from(DEPTS)),
    st.tuples(st.just("return"), st.sampled_from(DEPTS)),
    st.tuples(st.just("handle"), st.sampled_from(DEPTS)),
    st.tuples(st.just("verify"), st.booleans()),
    st.tuples(st.just("close"), st.none()),
    st.tuples(st.just("evaluate"), st.sampled_from(["citizen", "operator"])),
    st.tuples(st.just("escalate"), st.integers(1, 5)),
    st.tuples(st.just("extend"), st.integers(1, 72)),
    st.tuples(st.just("suspend"), st.none()),
    st.tuples(st.just("resume"), st.none()),
    st.tuples(st.just("link"), st.sampled_from(TARGETS)),
    st.tuples(st.just("conclude"), st.sampled_from(TARGETS)),
)


def apply(case: Case, n: int, name: str, arg: Any, gap: int) -> None:
    at = case.updated_at + timedelta(minutes=gap)
    kw: dict[str, Any] = {"event_id": f"e{n}", "at": at, "actor": "op", "department": "command"}
    dept = {**kw, "department": arg} if isinstance(arg, str) else kw
    {
        "register": lambda: case.register(**kw, sla=SLA),
        "reject": lambda: case.reject(**kw, reason="r"),
        "merge": lambda: case.merge(**kw, primary_id=uuid.UUID(int=9)),
        "dispatch": lambda: case.dispatch(**kw, departments=[arg], sla=SLA),
        "accept": lambda: case.accept(**dept, sla=SLA),
        "return": lambda: case.return_(**dept, reason="r", sla=SLA),
        "handle": lambda: case.handle(**dept, sla=SLA),
        "verify": lambda: case.verify(**kw, passed=arg, sla=SLA),
        "close": lambda: case.close(**kw),
        "evaluate": lambda: case.evaluate(**kw, score=3, by=arg),
        "escalate": lambda: case.escalate(**kw, reason="督办", level=arg),
        "extend": lambda: case.extend(**kw, until=at + timedelta(hours=arg), reason="r"),
        "suspend": lambda: case.suspend(**kw, reason="r"),
        "resume": lambda: case.resume(**kw, sla=SLA),
        "link": lambda: case.link(**kw, relation="referred_to", target_id=arg),
        "conclude": lambda: case.conclude_link(**kw, target_id=arg, outcome="closed"),
    }[name]()


def check_invariants(case: Case) -> None:
    assert isinstance(case.stage, Stage)
    if case.stage in (Stage.DISPATCHED, Stage.ACCEPTED, Stage.HANDLED):
        assert case.parts and case.stage is stage_of(case.parts)
    if case.stage is Stage.REGISTERED:
        assert not case.parts
    if case.stage not in OPEN_STAGES:
        assert case.due is None, "a finished case has no running deadline"
        assert not case.is_overdue(datetime(2100, 1, 1, tzinfo=UTC))
    if case.stage.value in ("closed", "evaluated"):
        assert not case.awaiting, "closed while a referral or child was still open"
        assert case.verified_at is not None
    assert 0 <= case.escalation_level <= 5
    assert all(1 <= s <= 5 for s in case.scores.values())
    assert set(case.awaiting) <= {t for _, t, _ in case.links}
    assert case.is_concluded == (case.stage.value in CONCLUDED_STAGES)


def new_case() -> Case:
    return Case.report(
        uuid.UUID(int=42), event_id="e0", at=T0, actor="gw", department="citymgmt", source="dcm",
        caseref="C", kind="case", category="01001", title="t", sla=SLA,
    )  # fmt: skip


def state(case: Case) -> dict[str, Any]:
    return {k: v for k, v in vars(case).items() if k != "_pending_events"}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(command, st.integers(0, 600)), max_size=40))
def test_random_commands_never_reach_an_invalid_state_and_replay_rebuilds_it(
    steps: list[tuple[tuple[str, Any], int]],
) -> None:
    case = new_case()
    check_invariants(case)
    for n, ((name, arg), gap) in enumerate(steps, start=1):
        pending = len(case.pending_events)
        try:
            apply(case, n, name, arg, gap)
        except CaseRefused as refused:
            assert len(case.pending_events) == pending, "a refused command must record nothing"
            assert str(refused).startswith(f"cannot {name if name != 'conclude' else 'conclude_link'}")
        check_invariants(case)
    events = case.collect_events()
    rebuilt: Case | None = None
    for event in events:
        rebuilt = event.mutate(rebuilt)  # type: ignore[assignment]
    assert rebuilt is not None
    assert state(rebuilt) == state(case)
    assert case.applied == {e.event_id for e in events}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the ledger
DOMAIN = load_domain()
ACTIONS = [
    ("registered", {}),
    ("dispatched", {"departments": ["water"]}),
    ("dispatched", {"departments": ["gas"]}),
    ("accepted", {"department": "water"}),
    ("accepted", {"department": "gas"}),
    ("handled", {"department": "water"}),
    ("handled", {"department": "gas"}),
    ("returned", {"department": "gas", "reason": "非本单位"}),
    ("verified", {"passed": True}),
    ("verified", {"passed": False}),
    ("closed", {}),
    ("evaluated", {"score": 4}),
    ("escalated", {"reason": "督办"}),
    ("suspended", {"reason": "等待"}),
    ("resumed", {}),
]


def canonical(caseref: str, n: int, action: str, data: dict[str, Any]) -> m.Valid:
    raw = m.make_event(
        id=f"{caseref}:{n}", source="citymgmt-dcm", department="citymgmt", kind="case", action=action,
        caseref=caseref, actor="gw:1", time=T0 + timedelta(minutes=n), data=data,
    )  # fmt: skip
    result = m.validate(orjson.dumps(raw), m.Catalogue.of({"citymgmt": ["case"]}))
    assert isinstance(result, m.Valid), result
    return result


def report(caseref: str) -> m.Valid:
    return canonical(
        caseref,
        0,
        "reported",
        {"category": "01001", "title": "井盖", "location": {"lon": 118.7, "lat": 32.0}},
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(range(len(ACTIONS)))), max_size=30),
    st.integers(1, 7),
    st.data(),
)
def test_reapplying_applied_event_ids_changes_nothing(
    steps: list[tuple[str, int]], batch: int, data: st.DataObject
) -> None:
    ledger = CaseLedger({"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=DOMAIN, follow_log=LogFollower)
    items = [report("A"), report("B")] + [
        canonical(ref, n, *ACTIONS[i]) for n, (ref, i) in enumerate(steps, start=1)
    ]
    applied: list[m.Valid] = []
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        for item, outcome in zip(chunk, ledger.apply_batch(chunk), strict=True):
            assert outcome.verdict in (Verdict.APPLIED, Verdict.REFUSED, Verdict.DUPLICATE)
            if outcome.verdict is Verdict.DUPLICATE:  # a new id for a step already taken: a no-op
                assert "already" in outcome.detail or "not current" in outcome.detail, outcome
            if outcome.verdict is Verdict.APPLIED:
                applied.append(item)
    ids = {ref: m.case_id_for("citymgmt-dcm", ref) for ref in "AB"}
    before = {ref: state(ledger.get_case(cid)) for ref, cid in ids.items()}
    position = ledger.recorder.max_notification_id()
    again = data.draw(st.lists(st.sampled_from(applied), min_size=1, max_size=10))
    outcomes = ledger.apply_batch(again)
    assert [o.verdict for o in outcomes] == [Verdict.DUPLICATE] * len(again)
    assert ledger.recorder.max_notification_id() == position
    for ref, cid in ids.items():
        assert state(ledger.get_case(cid)) == before[ref]  # read back from the store, not the cache
