"""Every command from every stage of the closed loop: the resulting stage, or the refusal message.

The table below is written out by hand from design §5 (not derived from ``ALLOWED``), so a change
of the transition table has to be made twice, on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.domain import AlreadyDone, Case, CaseRefused, Stage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PRIMARY = uuid.UUID(int=1)
OTHER = uuid.UUID(int=2)


class Steps:
    def __init__(self) -> None:
        self.n = 0

    def kw(self, department: str = "command") -> dict[str, Any]:
        self.n += 1
        return {
            "event_id": f"e{self.n}",
            "at": T0 + timedelta(minutes=self.n),
            "actor": "operator:1",
            "department": department,
        }


def new_case(s: Steps) -> Case:
    return Case.report(
        uuid.uuid5(uuid.NAMESPACE_URL, "C1"),
        **s.kw("citymgmt"),
        source="dcm",
        caseref="C1",
        kind="case",
        category="01001",
        title="供水井盖破损",
    )


def at_stage(stage: str) -> tuple[Case, Steps]:
    """A case brought to ``stage`` (or 'suspended': registered and suspended) by allowed commands."""
    s = Steps()
    c = new_case(s)
    path: dict[str, list[Callable[[Case], None]]] = {
        "reported": [],
        "rejected": [lambda c: c.reject(**s.kw(), reason="不属于受理范围")],
        "merged": [lambda c: c.merge(**s.kw(), primary_id=PRIMARY)],
        "registered": [lambda c: c.register(**s.kw())],
        "suspended": [lambda c: c.register(**s.kw()), lambda c: c.suspend(**s.kw(), reason="等待业主")],
    }
    loop = [
        lambda c: c.register(**s.kw()),
        lambda c: c.dispatch(**s.kw(), departments=["water"]),
        lambda c: c.accept(**s.kw("water")),
        lambda c: c.handle(**s.kw("water")),
        lambda c: c.verify(**s.kw(), passed=True),
        lambda c: c.close(**s.kw()),
        lambda c: c.evaluate(**s.kw(), score=4, by="citizen"),
    ]
    order = ["registered", "dispatched", "accepted", "handled", "verified", "closed", "evaluated"]
    if stage in order:
        path[stage] = loop[: order.index(stage) + 1]
    for step in path[stage]:
        step(c)
    return c, s


def run(command: str, c: Case, s: Steps) -> None:
    until = T0 + timedelta(days=30)
    commands: dict[str, Callable[[], None]] = {
        "register": lambda: c.register(**s.kw()),
        "reject": lambda: c.reject(**s.kw(), reason="重复上报"),
        "merge": lambda: c.merge(**s.kw(), primary_id=PRIMARY),
        "dispatch": lambda: c.dispatch(**s.kw(), departments=["gas"]),
        "accept": lambda: c.accept(**s.kw("water")),
        "return": lambda: c.return_(**s.kw("water"), reason="非本单位职责"),
        "handle": lambda: c.handle(**s.kw("water"), note="已修复"),
        "verify": lambda: c.verify(**s.kw(), passed=True),
        "close": lambda: c.close(**s.kw()),
        "evaluate": lambda: c.evaluate(**s.kw(), score=5, by="operator"),
        "escalate": lambda: c.escalate(**s.kw(), reason="督办"),
        "extend": lambda: c.extend(**s.kw(), until=until, reason="材料待补"),
        "suspend": lambda: c.suspend(**s.kw(), reason="等待业主"),
        "resume": lambda: c.resume(**s.kw()),
        "link": lambda: c.link(**s.kw(), relation="duplicate_of", target_id=OTHER),
    }
    commands[command]()


COMMANDS = [
    "register", "reject", "merge", "dispatch", "accept", "return", "handle", "verify",
    "close", "evaluate", "escalate", "extend", "suspend", "resume", "link",
]  # fmt: skip

ALLOWED_TEXT = {
    "reported": "register, reject, merge, escalate, extend, suspend, link",
    "registered": "dispatch, merge, escalate, extend, suspend, link",
    "dispatched": "dispatch, accept, return, handle, escalate, extend, suspend, link",
    "accepted": "dispatch, accept, return, handle, escalate, extend, suspend, link",
    "handled": "verify, escalate, extend, suspend, link",
    "verified": "close, escalate, extend, suspend, link",
    "closed": "evaluate, link",
    "evaluated": "evaluate, link",
    "rejected": "nothing (the case is finished)",
    "merged": "nothing (the case is finished)",
    "suspended": "resume, escalate, extend, link",
}
LABEL = {
    "reported": "上报", "registered": "立案", "dispatched": "派遣", "accepted": "签收", "handled": "处置反馈",
    "verified": "核查", "closed": "结案", "evaluated": "评价", "rejected": "不予立案", "merged": "合并",
    "suspended": "立案",
}  # fmt: skip

# stage → command → resulting stage (allowed) or the reason in the refusal (refused).
# Refusals not listed here are "not allowed now".
ALLOWED: dict[str, dict[str, str]] = {
    "reported": {
        "register": "registered", "reject": "rejected", "merge": "merged", "escalate": "reported",
        "extend": "reported", "suspend": "reported", "link": "reported",
    },
    "registered": {
        "dispatch": "dispatched", "merge": "merged", "escalate": "registered", "extend": "registered",
        "suspend": "registered", "link": "registered",
    },
    "dispatched": {
        "dispatch": "dispatched", "accept": "accepted", "return": "registered", "escalate": "dispatched",
        "extend": "dispatched", "suspend": "dispatched", "link": "dispatched",
    },
    "accepted": {
        "dispatch": "dispatched", "return": "registered", "handle": "handled", "escalate": "accepted",
        "extend": "accepted", "suspend": "accepted", "link": "accepted",
    },
    "handled": {
        "verify": "verified", "escalate": "handled", "extend": "handled", "suspend": "handled",
        "link": "handled",
    },
    "verified": {
        "close": "closed", "escalate": "verified", "extend": "verified", "suspend": "verified",
        "link": "verified",
    },
    "closed": {"evaluate": "evaluated", "link": "closed"},
    "evaluated": {"evaluate": "evaluated", "link": "evaluated"},
    "rejected": {},
    "merged": {},
    "suspended": {
        "resume": "registered", "escalate": "registered", "extend": "registered", "link": "registered",
    },
}  # fmt: skip
REASONS: dict[tuple[str, str], str] = {
    ("accepted", "accept"): "water has already accepted it",
    ("dispatched", "handle"): "water has not accepted it (签收) yet",
    ("suspended", "suspend"): "it is already suspended (挂起)",
}
for _stage in ALLOWED:
    if _stage != "suspended":
        REASONS[(_stage, "resume")] = "it is not suspended"

# Refusals of a step the case has already taken: nothing is recorded, and the application
# acknowledges them as duplicates (AlreadyDone) instead of dead-lettering them. Every other refusal
# stays a plain CaseRefused. (stage → commands; the reason of each.)
_PAST_REGISTERED = ("registered", "dispatched", "accepted", "handled", "verified", "closed", "evaluated")
ALREADY: dict[tuple[str, str], str] = {
    **{(st, "register"): "it was already registered (立案)" for st in (*_PAST_REGISTERED, "suspended")},
    ("rejected", "reject"): "it was already rejected (不予立案)",
    ("merged", "merge"): f"it was already merged into {PRIMARY}",
    ("accepted", "accept"): "water has already accepted it",
    **{(st, cmd): "water has already handled it"
       for st in ("handled", "verified", "closed", "evaluated") for cmd in ("accept", "handle")},
    **{(st, "verify"): "it was already verified (核查通过)" for st in ("verified", "closed", "evaluated")},
    **{(st, "close"): "it is already closed (结案)" for st in ("closed", "evaluated")},
    ("suspended", "suspend"): "it is already suspended (挂起)",
}  # fmt: skip
REASONS.update(ALREADY)

CASES = [(stage, command) for stage in ALLOWED for command in COMMANDS]


@pytest.mark.parametrize(("stage", "command"), CASES, ids=[f"{s}-{c}" for s, c in CASES])
def test_transition(stage: str, command: str) -> None:
    c, s = at_stage(stage)
    before = len(c.collect_events())
    expected = ALLOWED[stage].get(command)
    if expected is not None:
        run(command, c, s)
        assert c.stage is Stage(expected)
        assert len(c.collect_events()) == 1, "an allowed command records exactly one event"
        if command == "suspend":
            assert c.is_suspended
        if stage == "suspended" and command != "resume":
            assert c.is_suspended
        return
    assert before >= 0
    with pytest.raises(CaseRefused) as refused:
        run(command, c, s)
    reason = REASONS.get(
        (stage, command), "it is suspended (挂起)" if stage == "suspended" else "not allowed now"
    )
    shown = "registered" if stage == "suspended" else stage
    assert str(refused.value) == (
        f"cannot {command} case 'C1': {reason}; it is {shown} ({LABEL[stage]}), "
        f"allowed from there: {ALLOWED_TEXT[stage]}"
    )
    assert refused.value.stage is Stage(shown)
    assert isinstance(refused.value, AlreadyDone) == ((stage, command) in ALREADY), (
        "only a step the case has already taken is AlreadyDone (acknowledged as a duplicate)"
    )
    assert c.collect_events() == [], "a refused command records nothing"


def test_table_covers_every_stage() -> None:
    assert {s.value for s in Stage} <= set(ALLOWED)


def test_joint_handling_needs_every_department() -> None:
    c, s = at_stage("dispatched")
    c.dispatch(**s.kw(), departments=["gas"])
    c.accept(**s.kw("water"))
    assert c.stage is Stage.DISPATCHED  # gas has not signed yet
    c.accept(**s.kw("gas"))
    c.handle(**s.kw("water"))
    assert c.stage is Stage.ACCEPTED
    c.handle(**s.kw("gas"))
    assert c.stage is Stage.HANDLED


def test_a_signed_department_reports_before_its_partner_signs() -> None:
    """联合处置: 综治 intervenes while 精神卫生 has not signed yet (found by the simulated city)."""
    c, s = at_stage("dispatched")
    c.dispatch(**s.kw(), departments=["gas"])
    c.accept(**s.kw("water"))
    c.handle(**s.kw("water"))
    assert c.stage is Stage.DISPATCHED  # gas has not signed yet
    with pytest.raises(CaseRefused, match="gas has not accepted it"):
        c.handle(**s.kw("gas"))
    c.accept(**s.kw("gas"))
    c.handle(**s.kw("gas"))
    assert c.stage is Stage.HANDLED


def test_rework_counts_and_returns_to_every_department() -> None:
    c, s = at_stage("handled")
    c.verify(**s.kw(), passed=False, note="井盖仍松动")
    assert (c.stage, c.reworks, c.parts["water"].value) == (Stage.ACCEPTED, 1, "accepted")
    c.handle(**s.kw("water"))
    c.verify(**s.kw(), passed=True)
    assert c.stage is Stage.VERIFIED


def test_side_path_refusals_name_the_rule() -> None:
    c, s = at_stage("reported")
    with pytest.raises(CaseRefused, match="cannot be merged into itself"):
        c.merge(**s.kw(), primary_id=c.id)
    c, s = at_stage("dispatched")
    with pytest.raises(CaseRefused, match="gas is not responsible"):
        c.accept(**s.kw("gas"))
    with pytest.raises(CaseRefused, match="every named department is already responsible"):
        c.dispatch(**s.kw(), departments=["water"])
    with pytest.raises(CaseRefused, match="is not after"):
        c.extend(**s.kw(), until=T0, reason="x")
    c, s = at_stage("closed")
    with pytest.raises(CaseRefused, match="outside 1–5"):
        c.evaluate(**s.kw(), score=6)


def test_close_waits_for_referrals_and_children() -> None:
    c, s = at_stage("handled")
    c.link(**s.kw(), relation="referred_to", target_id=OTHER, target_department="courts")
    c.verify(**s.kw(), passed=True)
    with pytest.raises(CaseRefused, match=f"waits for linked cases to conclude \\(referred_to {OTHER}\\)"):
        c.close(**s.kw())
    with pytest.raises(CaseRefused, match="does not wait"):
        c.conclude_link(**s.kw(), target_id=PRIMARY, outcome="closed")
    c.conclude_link(**s.kw(), target_id=OTHER, outcome="closed")
    c.close(**s.kw())
    assert c.stage is Stage.CLOSED and c.concluded_links == {OTHER: "closed"}


def test_every_event_records_actor_and_source_time() -> None:
    c, _ = at_stage("evaluated")
    events = c.collect_events()
    assert [e.at for e in events] == sorted(e.at for e in events)  # type: ignore[attr-defined]
    assert all(e.actor for e in events)  # type: ignore[attr-defined]
    assert c.reported_at == T0 + timedelta(minutes=1)  # the source's time, not the wall clock
