"""The canonical envelope (规范事件): a CloudEvents 1.0 event with the hub's extensions.

Why CloudEvents: department systems already emit JSON; CloudEvents gives them a documented,
vendor-neutral envelope with an ``id`` that doubles as the JetStream ``Nats-Msg-Id`` (server-side
dedup) and as the aggregate's idempotency key (receiver-side dedup). The hub adds ``department``,
``grid``, ``actor``, ``actorrole``, ``caseref`` and ``caseid`` (design §4); the CloudEvents
``type`` is ``<kind>.<action>``. :func:`make_event` is the connectors' one constructor, so every
department builds the same shape; :func:`json_schemas` documents it for integrators.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from hub.messages.actions import ACTION_OF, Action
from hub.messages.payloads import PAYLOADS, AwareDatetime, Short, Token
from hub.messages.subjects import SUBJECT_PREFIX, case_id_for

SPECVERSION = "1.0"


class Envelope(Struct, frozen=True, kw_only=True):
    """A CloudEvents 1.0 event with the hub's extensions, as it travels on ``city.>``.

    Unknown attributes are ignored (CloudEvents allows further extensions); ``data`` is checked
    against the action's payload schema in :func:`validate`.
    """

    specversion: Literal["1.0"]
    id: Annotated[str, Meta(min_length=1, max_length=200)]
    source: Annotated[str, Meta(min_length=1, max_length=200)]
    type: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z_]*$")]
    time: AwareDatetime
    subject: Short | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    department: Token
    grid: Annotated[str, Meta(max_length=64)] | None = None
    actor: Annotated[str, Meta(min_length=1, max_length=200)]
    actorrole: Token | None = None
    caseref: Annotated[str, Meta(min_length=1, max_length=200)]
    caseid: uuid.UUID | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.type.split(".", 1)[0]

    @property
    def action(self) -> Action:
        return ACTION_OF[self.type.rsplit(".", 1)[1]]

    @property
    def nats_subject(self) -> str:
        return f"{SUBJECT_PREFIX}.{self.department}.{self.type}"

    @property
    def case_id(self) -> uuid.UUID:
        """The hub's case id: explicit ``caseid`` (operator commands), else derived from the source."""
        return self.caseid if self.caseid is not None else case_id_for(self.source, self.caseref)


def make_event(
    *,
    id: str,
    source: str,
    department: str,
    kind: str,
    action: Action | str,
    caseref: str,
    actor: str,
    time: datetime,
    data: Mapping[str, Any] | None = None,
    grid: str | None = None,
    caseid: uuid.UUID | None = None,
    actorrole: str | None = None,
) -> dict[str, Any]:
    """Build a canonical event as a JSON-ready dict (the connectors' one constructor)."""
    event: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": id,
        "source": source,
        "type": f"{kind}.{Action(action).value}",
        "time": time.isoformat(),
        "subject": caseref,
        "datacontenttype": "application/json",
        "department": department,
        "actor": actor,
        "caseref": caseref,
        "data": dict(data or {}),
    }
    if grid is not None:
        event["grid"] = grid
    if caseid is not None:
        event["caseid"] = str(caseid)
    if actorrole is not None:
        event["actorrole"] = actorrole
    return event


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the envelope and of every action's ``data``, for integrators."""
    return {
        "envelope": msgspec.json.schema(Envelope),
        "data": {action.value: msgspec.json.schema(model) for action, model in PAYLOADS.items()},
    }
