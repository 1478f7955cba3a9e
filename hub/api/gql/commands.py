"""Operator actions (操作): a mutation becomes a command event on NATS, like any department's event.

Why not call the application directly: the intake is the single writer of the event store (one
store-writer process, exactly-once from JetStream); an operator's action entering the same path
keeps one order of events per case, the same validation, idempotency and dead-lettering, and the
same audit trail (the operator is the event's actor, ``command`` its department).

The answer waits until the projection reflects the command (read-your-writes), so the client gets
the case's new state. Refusals are caught early where they can be decided from the read model
(stage not in ``hub.vocabulary.ALLOWED``, stale ``expectedVersion``) and otherwise reported from
the dead-letter stream, whose headers carry the original event id (``Hub-Dlq-Msg-Id``). A command
the intake finds already done (``AlreadyDone``: another operator or source took the step first) is
acked as a duplicate, neither recorded nor dead-lettered; the intake's ``hub.done.<subject>`` notice
answers it at once (``ALREADY_DONE``) instead of after the timeout.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import GraphQLError

from hub import messages as m
from hub.api.gql import auth
from hub.api.gql.auth import Principal
from hub.api.gql.context import ApiContext, run
from hub.views import CaseRow
from hub.vocabulary import ALLOWED, STAGE_LABELS, Stage

ACTIONS: dict[str, m.Action] = {
    "register": m.Action.REGISTERED,
    "reject": m.Action.REJECTED,
    "dispatch": m.Action.DISPATCHED,
    "return": m.Action.RETURNED,
    "verify": m.Action.VERIFIED,
    "close": m.Action.CLOSED,
    "escalate": m.Action.ESCALATED,
    "extend": m.Action.EXTENDED,
    "evaluate": m.Action.EVALUATED,
    "link": m.Action.LINKED,
}
"""Mutation name = the domain's command name (the ALLOWED table's vocabulary) → event action."""


def error(code: str, message: str, **extra: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extra})


def forbidden(who: Principal, permission: str, what: str) -> GraphQLError:
    return error(
        "FORBIDDEN",
        f"{what} needs the permission {permission!r}, which role {who.role!r} does not have",
        missing_permission=permission,
    )


def require(who: Principal, permission: str, what: str) -> None:
    if not who.can(permission):
        raise forbidden(who, permission, what)


def _wrong_stage(command: str, row: CaseRow) -> GraphQLError:
    stage = Stage(row.stage)
    allowed = ", ".join(ALLOWED[stage]) or "nothing (the case is finished)"
    return error(
        "WRONG_STAGE",
        f"cannot {command} case {row.caseref!r}: it is {stage.value} ({STAGE_LABELS[stage]}), "
        f"allowed from there: {allowed}",
        stage=stage.value,
        allowed=list(ALLOWED[stage]),
    )


async def perform(
    ctx: ApiContext,
    who: Principal,
    command: str,
    case_id: uuid.UUID,
    data: Mapping[str, Any],
    expected_version: int | None = None,
) -> CaseRow:
    """Check, publish, and wait until applied; returns the case as the projection now shows it."""
    require(who, auth.WRITE, f"the {command} action")
    row = await run(ctx.views.case, case_id)
    if row is None:
        raise error("NOT_FOUND", f"no case {case_id} in the read models (position {ctx.views.position()})")
    if expected_version is not None and expected_version != row.version:
        raise error(
            "STALE",
            f"case {row.caseref!r} is at version {row.version}, not {expected_version}: "
            f"someone acted on it since you read it; reload and decide again",
            version=row.version,
        )
    if command not in ALLOWED[Stage(row.stage)]:
        raise _wrong_stage(command, row)
    if command == "return" and data.get("department") not in row.responsible_departments:
        raise error(
            "BAD_USER_INPUT",
            f"only a responsible department can return the case; responsible: "
            f"{', '.join(row.responsible_departments) or 'none'}",
            field="department",
        )

    action = ACTIONS[command]
    kinds = ctx.catalogue.kinds.get(m.COMMAND_DEPARTMENT, frozenset())
    event_id = f"op-{uuid.uuid4()}"
    event = m.make_event(
        id=event_id, source=ctx.source, department=m.COMMAND_DEPARTMENT,
        kind=row.kind if row.kind in kinds else "case", action=action, caseref=row.caseref,
        actor=who.actor, time=datetime.now(UTC), data=dict(data), caseid=case_id,
        actorrole=who.role.split(":")[0],
    )  # fmt: skip
    raw = orjson.dumps(event)
    # Case-keyed (ADR 0006): the command joins its case's partition, so the intake worker that
    # holds the case's history decides it, in order with the department's own events.
    subject = m.keyed_subject(m.COMMAND_DEPARTMENT, event["type"], case_id)
    checked = m.validate(raw, ctx.catalogue, subject)
    if isinstance(checked, m.Invalid):
        field = checked.field.removeprefix("data.")
        raise error("BAD_USER_INPUT", f"{field or 'input'}: {checked.detail}", field=field)

    nc = ctx.nc
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[str] = loop.create_future()
    already: asyncio.Future[str] = loop.create_future()

    async def on_dead_letter(msg: Any) -> None:
        headers = msg.headers or {}
        if headers.get(m.H_MSG_ID) == event_id and not refused.done():
            refused.set_result(f"{headers.get(m.H_REASON, '')}: {headers.get(m.H_DETAIL, '')}")

    async def on_done(msg: Any) -> None:
        headers = msg.headers or {}
        if headers.get(m.H_MSG_ID) == event_id and not already.done():
            already.set_result(headers.get(m.H_DETAIL, ""))

    sub = await nc.subscribe(m.dlq_subject_for(subject), cb=on_dead_letter)
    done_sub = await nc.subscribe(m.done_subject_for(subject), cb=on_done)
    try:
        ack = await nc.jetstream().publish(subject, raw, headers={"Nats-Msg-Id": event_id}, stream=m.STREAM)
        deadline = time.monotonic() + ctx.limits.mutation_timeout_s
        delay = 0.005
        while True:
            if refused.done():
                reason = refused.result()
                code = "WRONG_STAGE" if reason.startswith(m.Reason.REFUSED.value) else "REFUSED"
                raise error(code, f"the hub refused the {command}: {reason}", dead_letter=True)
            if already.done():
                now = await run(ctx.views.case, case_id)
                raise error(
                    "ALREADY_DONE",
                    f"nothing to {command}: {already.result()}; the case is unchanged by this action",
                    dead_letter=False,
                    version=now.version if now is not None else None,
                )
            position = await run(ctx.views.event_position, case_id, event_id)
            if position is not None:
                await run(ctx.views.wait, position, 1.0)
                after = await run(ctx.views.case, case_id)
                assert after is not None
                return after
            if time.monotonic() >= deadline:
                raise error(
                    "TIMEOUT",
                    f"the {command} was accepted by NATS (stream seq {ack.seq}, event id {event_id}) but "
                    f"not applied within {ctx.limits.mutation_timeout_s:g}s; it may still be applied "
                    f"(the intake retries commands a case cannot take yet before dead-lettering them)",
                    event_id=event_id,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
    finally:
        await sub.unsubscribe()
        await done_sub.unsubscribe()
