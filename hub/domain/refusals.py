"""Refusals (拒绝): a command the case will not take, with a reason the sender can act on.

Why a module of its own: the refusals are what the application, the intake and the API tell apart
(a dead letter 死信, a duplicate acknowledged, a GraphQL error), and they read better beside each
other than between the case's events. A refusal records nothing: the case's history stays as it
was, and the message names the case, its stage and what it allows instead.
"""

from __future__ import annotations

from typing import Protocol

from hub.vocabulary import STAGE_LABELS, Stage


class Refusing(Protocol):
    """What a refusal says about the case that refused (:class:`hub.domain.case.Case`)."""

    @property
    def caseref(self) -> str: ...

    @property
    def stage(self) -> Stage: ...

    def allowed_commands(self) -> tuple[str, ...]: ...


class CaseRefused(Exception):
    """A command the case's current stage does not allow; the message says what is allowed instead."""

    def __init__(self, command: str, case: Refusing | None, why: str) -> None:
        self.command = command
        self.stage = case.stage if case is not None else None
        if case is None:
            message = f"cannot {command}: {why}"
        else:
            allowed = ", ".join(case.allowed_commands()) or "nothing (the case is finished)"
            message = (
                f"cannot {command} case {case.caseref!r}: {why}; it is {case.stage.value} "
                f"({STAGE_LABELS[case.stage]}), allowed from there: {allowed}"
            )
        super().__init__(message)


class AlreadyDone(CaseRefused):
    """A command whose effect the case already holds, or that the case's history has overtaken.

    Why a refusal of its own: nothing is wrong and nothing needs anybody's attention. Two sources
    report the same step (the operator's 派遣 and then the department's own dispatch record), or
    the deadline watcher's 督办 arrives for a deadline the case has meanwhile left (it was caught
    up, back-filled, closed, extended). The case records nothing, as for any refusal, and the
    application acknowledges the event as a duplicate instead of dead-lettering it, so the
    dead-letter queue keeps meaning "a department record needs attention". Genuinely wrong
    transitions (a step the case has not reached, or one that contradicts its history) stay
    :class:`CaseRefused`.
    """
