"""Department progress (部门处置进度): how far each responsible department has got with a case.

Why a module of its own: a case handled jointly (联合处置) has one stage but several departments,
each signing (签收) and reporting its handling (处置反馈) on its own. The case keeps each
department's progress and derives its stage from them (:func:`stage_of`); the read models derive
the same stage from the same rule (``projections.derive``), so the rule is stated once, here.
"""

from __future__ import annotations

from enum import StrEnum

from hub.vocabulary import Stage


class DepartmentProgress(StrEnum):
    """A responsible department's own progress on a (possibly joint, 联合处置) case."""

    DISPATCHED = "dispatched"  # 派遣: named responsible, not signed for yet
    ACCEPTED = "accepted"  # 签收: signed for, handling
    HANDLED = "handled"  # 处置反馈: reported its handling


def stage_of(parts: dict[str, DepartmentProgress]) -> Stage:
    """The stage of a dispatched case from its responsible departments' progress (联合处置):
    registered when none is responsible (all returned 退回), dispatched while any has not signed,
    handled once every one has handled, accepted in between."""
    if not parts:
        return Stage.REGISTERED
    # One plain loop over the (one to a few) departments: it runs on nearly every event the intake
    # decides, where generator expressions and enum attribute lookups cost more than the test.
    handled, dispatched = _HANDLED, _DISPATCHED
    all_handled = True
    for progress in parts.values():
        if progress is dispatched:
            return Stage.DISPATCHED
        if progress is not handled:
            all_handled = False
    return Stage.HANDLED if all_handled else Stage.ACCEPTED


_HANDLED, _DISPATCHED = DepartmentProgress.HANDLED, DepartmentProgress.DISPATCHED
