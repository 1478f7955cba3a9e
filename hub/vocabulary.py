"""The hub's vocabulary (词汇表): names every layer speaks, each written once, standard library only.

Why a module of its own: the stage names, the priorities, the link relations, the SLA limit names
(办理时限) and the application's name were copied into the domain, the message contract, the SLA
policy, the configuration loader, the read model, the connectors and the API, and a copy that
drifts is a silent bug (a stage the projector does not count as open, a priority the contract
accepts but the configuration refuses). The stage labels, the transition table (which commands
each stage allows) and the grid levels are here too, because the API answers with them from the
read model and may not import the domain. Everything here is plain data with no imports beyond the
standard library, so every layer — the pure domain, connectors, projections — may import it
(design §3: ``hub.vocabulary`` is the innermost layer). ``tests/architecture/test_vocabulary.py``
checks that the copies stay gone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal, get_args

APPLICATION_NAME: Final = "CityHub"
"""The eventsourcing application's name: the tracking rows of the read model and the audit chain's
anchor name it, so it must never change for an existing store."""


class Stage(StrEnum):
    """Where a case stands in the closed loop (闭环)."""

    REPORTED = "reported"  # 上报
    REGISTERED = "registered"  # 立案
    REJECTED = "rejected"  # 不予立案 (terminal)
    MERGED = "merged"  # 合并入主案件 (terminal)
    DISPATCHED = "dispatched"  # 派遣
    ACCEPTED = "accepted"  # 签收
    HANDLED = "handled"  # 处置反馈
    VERIFIED = "verified"  # 核查通过
    CLOSED = "closed"  # 结案
    EVALUATED = "evaluated"  # 评价 (terminal)


STAGE_LABELS: Final[dict[Stage, str]] = {
    Stage.REPORTED: "上报",
    Stage.REGISTERED: "立案",
    Stage.REJECTED: "不予立案",
    Stage.MERGED: "合并",
    Stage.DISPATCHED: "派遣",
    Stage.ACCEPTED: "签收",
    Stage.HANDLED: "处置反馈",
    Stage.VERIFIED: "核查",
    Stage.CLOSED: "结案",
    Stage.EVALUATED: "评价",
}
"""Each stage as operators say it: refusals of the case and of the API name the stage this way."""

ALLOWED: Final[dict[Stage, tuple[str, ...]]] = {
    Stage.REPORTED: ("register", "reject", "merge", "escalate", "extend", "suspend", "link"),
    Stage.REGISTERED: ("dispatch", "merge", "escalate", "extend", "suspend", "link"),
    # handle: in joint handling (联合处置) a department that has signed may report while another
    # has not signed yet; the per-department guard requires its own 签收 first.
    Stage.DISPATCHED: ("dispatch", "accept", "return", "handle", "escalate", "extend", "suspend", "link"),
    Stage.ACCEPTED: ("dispatch", "accept", "return", "handle", "escalate", "extend", "suspend", "link"),
    Stage.HANDLED: ("verify", "escalate", "extend", "suspend", "link"),
    Stage.VERIFIED: ("close", "escalate", "extend", "suspend", "link"),
    Stage.CLOSED: ("evaluate", "link"),
    Stage.EVALUATED: ("evaluate", "link"),
    Stage.REJECTED: (),
    Stage.MERGED: (),
}
"""The commands each stage allows (the transition table): the single source of truth for what may
happen next. The case refuses by it (besides its per-department and suspension guards,
``hub.domain.stages``), and the API refuses a mutation early by it from the read model alone, so
both say the same; the names are the case's command names, which the mutations share."""


class Level(StrEnum):
    """The levels of the grid tree (网格层级), coarsest first: the API's ``level`` argument and the
    grid configuration name them, the domain's tree (``hub.domain.grid``) orders them."""

    DISTRICT = "district"  # 区
    STREET = "street"  # 街道/镇
    COMMUNITY = "community"  # 社区
    GRID = "grid"  # 网格
    MICRO = "micro"  # 微网格


OPEN_STAGE_NAMES: Final[tuple[str, ...]] = (
    Stage.REPORTED.value,
    Stage.REGISTERED.value,
    Stage.DISPATCHED.value,
    Stage.ACCEPTED.value,
    Stage.HANDLED.value,
    Stage.VERIFIED.value,
)
"""Stages in which the case is still someone's work, in the loop's order: each has an SLA time
limit (the clock runs unless suspended) that ends when the case leaves the stage."""

CONCLUDED_STAGES: Final = frozenset(
    {Stage.CLOSED.value, Stage.EVALUATED.value, Stage.REJECTED.value, Stage.MERGED.value}
)
"""Stages in which the case's work is over (结案, 评价, 不予立案, 合并)."""

EVALUABLE_STAGES: Final = frozenset({Stage.CLOSED.value, Stage.EVALUATED.value})
"""Stages in which a reporter may evaluate (评价) the case."""

STAGE_LIMIT_NAMES: Final[dict[str, str]] = {
    Stage.REPORTED.value: "立案时限",
    Stage.REGISTERED.value: "派遣时限",
    Stage.DISPATCHED.value: "签收时限",
    Stage.ACCEPTED.value: "处置时限",
    Stage.HANDLED.value: "核查时限",
    Stage.VERIFIED.value: "结案时限",
}
"""The name of each open stage's time limit (办理时限), as operators and escalations (督办) say it."""

Priority = Literal["urgent", "high", "normal", "low"]
"""优先级, most pressing first (the message contract's type)."""
PRIORITIES: Final[tuple[str, ...]] = get_args(Priority)

INVERSE: Final[dict[str, str]] = {
    "referred_to": "referred_from",
    "referred_from": "referred_to",
    "duplicate_of": "duplicated_by",
    "duplicated_by": "duplicate_of",
    "parent_of": "child_of",
    "child_of": "parent_of",
}
"""How two cases may be linked (关联: 转介, 重复, 父子). Each link is recorded on both cases, the
target holding the inverse relation."""
RELATIONS: Final[tuple[str, ...]] = tuple(INVERSE)
LinkRelation = Literal["referred_to", "duplicate_of", "parent_of", "child_of"]
"""The relations a ``linked`` event (and the GraphQL ``link`` mutation) may ask for; the hub records
the inverse on the target itself."""
LINK_RELATIONS: Final[tuple[str, ...]] = get_args(LinkRelation)
WAITING_RELATIONS: Final = frozenset({"referred_to", "parent_of"})
"""Relations whose target must conclude before this case may close (转介 awaits the result; a parent
awaits all its children)."""
