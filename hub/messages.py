"""The connector contract: canonical envelope, per-action payload schemas and subject names.

Every department system speaks to the hub in one shape: a CloudEvents 1.0 JSON event (规范事件)
with the hub's extensions ``department``, ``grid``, ``actor``, ``caseref`` (design §4). Connectors
import only this module, so it stays light: msgspec and the standard library, no I/O
(msgspec validates an event in ≈ 4 µs where pydantic took ≈ 15: this is the intake's hot path).

Why CloudEvents: department systems already emit JSON; CloudEvents gives them a documented,
vendor-neutral envelope with an ``id`` that doubles as the JetStream ``Nats-Msg-Id`` (server-side
dedup) and as the aggregate's idempotency key (receiver-side dedup).

Subjects are ``city.<department>.<kind>.<action>``: ``kind`` is the department's own record kind
(``incident``, ``case``, ``psych_crisis``, ``mediation`` …, from configuration) and ``action`` is one
step of the closed loop (上报 reported → 立案 registered → 派遣 dispatched → …), the same for every
department. The CloudEvents ``type`` is ``<kind>.<action>``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

SPECVERSION = "1.0"
SUBJECT_PREFIX = "city"
STREAM = "CITY"
"""The JetStream stream holding every canonical event (subjects ``city.>``)."""
DLQ_STREAM = "CITY_DLQ"
"""The dead-letter stream (死信): every event the hub could not apply, with the reason."""
DLQ_PREFIX = "dlq"
COMMAND_DEPARTMENT = "command"
"""Pseudo-department of the command centre: operator actions enter as ``city.command.case.*``."""
PARTITIONS = 12
"""Case partitions (案件分区) of the ``CITY`` stream (ADR 0006). Fixed for the life of a deployment:
a case's partition is its key's hash modulo this number, so changing it would move cases between
partitions while their earlier events still wait in the old ones. Workers come and go; this stays."""

CASE_NAMESPACE = uuid.UUID("6f1c3a52-6a8e-5b43-9d1e-2f4c1b7e8a90")
"""Namespace of the deterministic case id; never change it (every stored case id depends on it)."""

Token = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[a-z][a-z0-9_]*$")]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=500, pattern=r"\S")]
Text = Annotated[str, Meta(max_length=8000)]
Short = Annotated[str, Meta(max_length=200)]
Url = Annotated[str, Meta(max_length=2000)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]
"""A timestamp with its UTC offset: department clocks differ, so a naive time is refused."""


class Action(StrEnum):
    """The closed-loop steps (闭环环节) every department's records map onto."""

    REPORTED = "reported"  # 上报
    REGISTERED = "registered"  # 立案
    REJECTED = "rejected"  # 不予立案
    MERGED = "merged"  # 合并 (duplicate of a primary case)
    DISPATCHED = "dispatched"  # 派遣
    ACCEPTED = "accepted"  # 签收
    RETURNED = "returned"  # 退回
    HANDLED = "handled"  # 处置反馈
    VERIFIED = "verified"  # 核查 (passed → closable; failed → 返工 rework)
    CLOSED = "closed"  # 结案
    EVALUATED = "evaluated"  # 评价
    ESCALATED = "escalated"  # 督办
    EXTENDED = "extended"  # 延期
    SUSPENDED = "suspended"  # 挂起
    RESUMED = "resumed"  # 恢复
    LINKED = "linked"  # 关联 (referral, duplicate, parent/child across departments)


# --------------------------------------------------------------------------- payload schemas
class _Payload(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Payloads refuse unknown fields: a misspelt field would otherwise be silently lost."""


class Location(_Payload, kw_only=True, frozen=True):
    """WGS-84 point (lon/lat in degrees) with an optional address line."""

    lon: Annotated[float, Meta(ge=-180, le=180)]
    lat: Annotated[float, Meta(ge=-90, le=90)]
    address: Text | None = None


class Person(_Payload, kw_only=True, frozen=True):
    """A reporter or party (个人信息): personal data, masked for screens and protected at rest."""

    name: Short | None = None
    phone: Annotated[str, Meta(max_length=40)] | None = None
    id_number: Annotated[str, Meta(max_length=40)] | None = None


class CaseRef(_Payload, kw_only=True, frozen=True):
    """Points at a case in another department's system: by hub id, or by (source, caseref)."""

    caseid: uuid.UUID | None = None
    source: NonEmpty | None = None
    caseref: NonEmpty | None = None

    def resolve(self) -> uuid.UUID:
        if self.caseid is not None:
            return self.caseid
        if self.source and self.caseref:
            return case_id_for(self.source, self.caseref)
        raise ValueError("a case reference needs either caseid, or both source and caseref")


class Reported(_Payload, kw_only=True, frozen=True):
    """上报: the first record of a case. ``category`` is a code of the department's taxonomy."""

    category: NonEmpty
    title: Annotated[str, Meta(min_length=1, max_length=500)]
    description: Text = ""
    priority: Literal["urgent", "high", "normal", "low"] = "normal"
    channel: Token = "system"
    location: Location | None = None
    reporter: Person | None = None
    attachments: Annotated[list[Url], Meta(max_length=50)] = field(default_factory=list)


class Note(_Payload, kw_only=True, frozen=True):
    note: Text = ""


class Registered(Note, kw_only=True, frozen=True):
    """立案. Optional corrections of category and priority made by the registering operator."""

    category: NonEmpty | None = None
    priority: Literal["urgent", "high", "normal", "low"] | None = None


class WithReason(_Payload, kw_only=True, frozen=True):
    reason: NonEmpty


class Rejected(WithReason, kw_only=True, frozen=True):
    """不予立案."""


class Merged(Note, kw_only=True, frozen=True):
    """合并: this case duplicates ``primary``."""

    primary: CaseRef


class Dispatched(Note, kw_only=True, frozen=True):
    """派遣 to one or more responsible departments (several = 联合处置 joint handling)."""

    departments: Annotated[list[Token], Meta(min_length=1, max_length=20)]


class Accepted(Note, kw_only=True, frozen=True):
    """签收 by one responsible department."""

    department: Token


class Returned(WithReason, kw_only=True, frozen=True):
    """退回: a responsible department says the case is not theirs."""

    department: Token


class Handled(Note, kw_only=True, frozen=True):
    """处置反馈: a responsible department reports its handling done."""

    department: Token
    attachments: Annotated[list[Url], Meta(max_length=50)] = field(default_factory=list)


class Verified(Note, kw_only=True, frozen=True):
    """核查: ``passed`` false sends the case back to the departments (返工 rework)."""

    passed: bool


class Closed(Note, kw_only=True, frozen=True):
    """结案."""


class Evaluated(Note, kw_only=True, frozen=True):
    """评价: satisfaction 1–5, by the citizen or an operator."""

    score: Annotated[int, Meta(ge=1, le=5)]
    by: Literal["citizen", "operator"] = "citizen"


class Escalated(WithReason, kw_only=True, frozen=True):
    """督办: raised by the SLA watcher or by an operator."""

    level: Annotated[int, Meta(ge=1, le=5)] = 1
    stage: Token | None = None
    """SLA breach only: the stage whose deadline passed (set together with ``deadline``)."""
    deadline: AwareDatetime | None = None
    """SLA breach only: the breached deadline; the hub refuses it when no longer current."""


class Extended(WithReason, kw_only=True, frozen=True):
    """延期: a new deadline for the current stage."""

    until: AwareDatetime


class Suspended(WithReason, kw_only=True, frozen=True):
    """挂起: the SLA clock pauses until 恢复 resumed."""


class Resumed(Note, kw_only=True, frozen=True):
    """恢复."""


class Linked(Note, kw_only=True, frozen=True):
    """关联: a relation to a case in another department (警调对接, 诉调对接, 精神卫生 …)."""

    relation: Literal["referred_to", "duplicate_of", "parent_of", "child_of"]
    target: CaseRef
    target_department: Token | None = None
    target_kind: Token | None = None
    """When the target case does not exist yet and the hub opens it: its record kind (default: the
    target department's first configured kind)."""
    target_category: NonEmpty | None = None
    """When the hub opens the target case: its category (default: this case's category)."""


PAYLOADS: dict[Action, type[_Payload]] = {
    Action.REPORTED: Reported,
    Action.REGISTERED: Registered,
    Action.REJECTED: Rejected,
    Action.MERGED: Merged,
    Action.DISPATCHED: Dispatched,
    Action.ACCEPTED: Accepted,
    Action.RETURNED: Returned,
    Action.HANDLED: Handled,
    Action.VERIFIED: Verified,
    Action.CLOSED: Closed,
    Action.EVALUATED: Evaluated,
    Action.ESCALATED: Escalated,
    Action.EXTENDED: Extended,
    Action.SUSPENDED: Suspended,
    Action.RESUMED: Resumed,
    Action.LINKED: Linked,
}


# --------------------------------------------------------------------------- envelope
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
        return _ACTION_OF[self.type.rsplit(".", 1)[1]]

    @property
    def nats_subject(self) -> str:
        return f"{SUBJECT_PREFIX}.{self.department}.{self.type}"

    @property
    def case_id(self) -> uuid.UUID:
        """The hub's case id: explicit ``caseid`` (operator commands), else derived from the source."""
        return self.caseid if self.caseid is not None else case_id_for(self.source, self.caseref)


_ACTIONS = frozenset(a.value for a in Action)
_ACTION_OF = {a.value: a for a in Action}  # Action(value) costs a slow enum lookup per call
_DECODER = msgspec.json.Decoder(Envelope)


# --------------------------------------------------------------------------- catalogue + validation
@dataclass(frozen=True, slots=True)
class Catalogue:
    """Which departments exist and which record kinds each may publish (from configuration)."""

    kinds: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, kinds: Mapping[str, Iterable[str]]) -> Catalogue:
        return cls({dept: frozenset(ks) for dept, ks in kinds.items()})


class Reason(StrEnum):
    """Why an event was dead-lettered: a stable code operators filter on (``hub dlq replay --reason``)."""

    INVALID_JSON = "invalid_json"
    SCHEMA = "schema"
    UNKNOWN_DEPARTMENT = "unknown_department"
    UNKNOWN_TYPE = "unknown_type"
    SUBJECT_MISMATCH = "subject_mismatch"
    REFUSED = "refused"
    NOT_FOUND = "not_found"
    STORE_FAILED = "store_failed"  # the store writer could not decide or map this one event


@dataclass(frozen=True, slots=True)
class Invalid:
    """A rejected event: ``reason`` is the code, ``field`` the JSON path, ``detail`` the rule broken."""

    reason: Reason
    field: str
    detail: str

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        return f"{self.reason.value}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Valid:
    envelope: Envelope
    payload: _Payload
    case_id: uuid.UUID
    """Computed once: deriving it (uuid5) costs more than validating the whole event."""
    raw: bytes | str = b""
    """The event as received: what a store-writer process is handed (it keeps the source's offsets)."""

    @property
    def action(self) -> Action:
        return _ACTION_OF[self.envelope.type.rsplit(".", 1)[1]]


_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]+)`")


def _error_field(exc: msgspec.ValidationError, prefix: str = "") -> tuple[str, str]:
    """(field path, rule) from a msgspec error such as "Expected `int` <= 5 - at `$.data.score`"."""
    message = str(exc)
    at = _AT.search(message)
    path = at.group(1) if at else ""
    rule = message[: at.start()] if at else message
    missing = _MISSING.match(rule)
    unknown = _UNKNOWN.match(rule)
    if missing or unknown:
        name = (missing or unknown).group(1)  # type: ignore[union-attr]
        path = f"{path}.{name}" if path else name
        rule = (
            "field required" if missing else "unknown field (misspelt? see the JSON schema for this action)"
        )
    field_path = f"{prefix}{path}" if path else prefix.rstrip(".")
    return field_path, rule


def validate(raw: bytes | str, catalogue: Catalogue, subject: str | None = None) -> Valid | Invalid:
    """Parse and check one event; never raises. ``subject`` is the NATS subject it arrived on."""
    try:
        env = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        field_path, detail = _error_field(exc)
        return Invalid(Reason.SCHEMA, field_path, detail)
    except msgspec.DecodeError as exc:
        return Invalid(Reason.INVALID_JSON, "", str(exc))
    action = env.type.rsplit(".", 1)[1]
    if action not in _ACTIONS:
        return Invalid(
            Reason.SCHEMA, "type", f"unknown action {action!r}; expected one of {sorted(_ACTIONS)}"
        )
    kinds = catalogue.kinds.get(env.department)
    if kinds is None:
        known = ", ".join(sorted(catalogue.kinds))
        return Invalid(
            Reason.UNKNOWN_DEPARTMENT, "department", f"{env.department!r} is not configured ({known})"
        )
    if env.kind not in kinds:
        return Invalid(
            Reason.UNKNOWN_TYPE,
            "type",
            f"{env.department} has no record kind {env.kind!r}; configured: {', '.join(sorted(kinds))}",
        )
    case_id = env.case_id
    if subject is not None and not _on_own_subject(subject, env, case_id):
        return Invalid(
            Reason.SUBJECT_MISMATCH,
            "type",
            f"published on {subject!r} but the event says {env.nats_subject!r}, optionally followed "
            f"by its case key .{case_key(case_id)} (ADR 0006)",
        )
    if env.department == COMMAND_DEPARTMENT and env.caseid is None:
        return Invalid(Reason.SCHEMA, "caseid", "operator commands must name the hub case id")
    try:
        payload = msgspec.convert(env.data, PAYLOADS[_ACTION_OF[action]])
    except msgspec.ValidationError as exc:
        field_path, detail = _error_field(exc, "data.")
        return Invalid(Reason.SCHEMA, field_path, detail)
    return Valid(env, payload, case_id, raw)


def decode_trusted(raw: bytes | str) -> Valid:
    """Decode an event that :func:`validate` already accepted (in another process): no catalogue
    checks, and any failure is a programming error, not bad input."""
    env = _DECODER.decode(raw)
    payload = msgspec.convert(env.data, PAYLOADS[_ACTION_OF[env.type.rsplit(".", 1)[1]]])
    return Valid(env, payload, env.case_id, raw)


class WireEvent(Struct, array_like=True, frozen=True):
    """A validated event as the intake hands it to the store-writer process (ops/writer.py).

    Why not the raw JSON: re-decoding it in the writer (envelope patterns, timestamp parsing)
    cost ≈ 6.5 µs an event on the writer's core, the intake's bottleneck; this already-checked
    form (msgpack, positional) is rebuilt in ≈ 3 µs. ``time`` travels as ISO 8601 text, so the
    source's UTC offset is kept exactly (msgpack timestamps would turn it into UTC).
    """

    id: str
    source: str
    type: str
    time: str
    subject: str | None
    department: str
    grid: str | None
    actor: str
    actorrole: str | None
    caseref: str
    caseid: uuid.UUID | None
    data: dict[str, Any]
    case_id: uuid.UUID


_NOT_ON_WIRE = frozenset({"specversion", "datacontenttype"})  # constants of the envelope
assert set(Envelope.__struct_fields__) - _NOT_ON_WIRE == set(WireEvent.__struct_fields__) - {"case_id"}


def to_wire(valid: Valid) -> WireEvent:
    """The compact form of a validated event for the store writer (see :class:`WireEvent`)."""
    e = valid.envelope
    return WireEvent(
        e.id, e.source, e.type, e.time.isoformat(), e.subject, e.department, e.grid, e.actor,
        e.actorrole, e.caseref, e.caseid, e.data, valid.case_id,
    )  # fmt: skip


def from_wire(w: WireEvent) -> Valid:
    """Rebuild an event :func:`validate` already accepted (in the intake process): no checks, and
    any failure is a programming error, not bad input. ``raw`` stays empty (nothing reads it there)."""
    env = Envelope(
        specversion="1.0", id=w.id, source=w.source, type=w.type,
        time=datetime.fromisoformat(w.time), subject=w.subject, department=w.department,
        grid=w.grid, actor=w.actor, actorrole=w.actorrole, caseref=w.caseref, caseid=w.caseid,
        data=w.data,
    )  # fmt: skip
    payload = msgspec.convert(w.data, PAYLOADS[_ACTION_OF[w.type.rpartition(".")[2]]])
    return Valid(env, payload, w.case_id)


# --------------------------------------------------------------------------- helpers
@lru_cache(maxsize=262_144)
def case_id_for(source: str, caseref: str) -> uuid.UUID:
    """Deterministic hub case id (案件编号) from the source system and its own case number."""
    return uuid.uuid5(CASE_NAMESPACE, f"{source}\x1f{caseref}")


def subject_for(department: str, kind: str, action: Action | str) -> str:
    return f"{SUBJECT_PREFIX}.{department}.{kind}.{Action(action).value}"


# --------------------------------------------------------------------------- case-keyed subjects
def case_key(case_id: uuid.UUID) -> str:
    """The case key (案件键): the optional fifth subject token, ``city.<dept>.<kind>.<action>.<key>``.

    The first 8 hex digits of the hub's case id, because that id is the one identity every event of
    a case shares: a department's events derive it from (source, caseref), operator commands name
    it (``caseid``). uuid5 digits are uniformly spread, so keys spread evenly over partitions."""
    return case_id.hex[:8]


def case_key_of(event: Mapping[str, Any]) -> str | None:
    """The case key of a JSON-ready event (publishers), or None when it does not name its case
    well enough to compute one: such an event goes on the 4-token subject, and the intake
    dead-letters it with the exact schema error."""
    caseid = event.get("caseid")
    if caseid is not None:
        try:
            return case_key(uuid.UUID(str(caseid)))
        except ValueError:
            return None
    source, caseref = event.get("source"), event.get("caseref")
    if isinstance(source, str) and source and isinstance(caseref, str) and caseref:
        return case_key(case_id_for(source, caseref))
    return None


def keyed_subject(department: str, type_: str, case_id: uuid.UUID) -> str:
    """``city.<department>.<kind>.<action>.<casekey>``: the partitioned form of an event's subject."""
    return f"{SUBJECT_PREFIX}.{department}.{type_}.{case_key(case_id)}"


def partition_of(key: str, partitions: int = PARTITIONS) -> int:
    """The partition nats-server's ``{{partition(P,4)}}`` stream transform gives a case key: FNV-1a (32 bit)
    of the token, modulo P (the server's own function, checked against nats-server 2.15.1)."""
    h = 0x811C9DC5
    for byte in key.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % partitions


def public_subject(subject: str, raw: bytes = b"") -> str:
    """The subject as published, from the subject as stored: the server stores
    ``city.d.k.a.<key>`` as ``city.d.k.a.<partition>`` (ADR 0006), so the key is computed again from
    the event (``raw``, read leniently: this runs for dead letters, which may be malformed). An
    event that does not name its case well enough gets its 4-token subject; every other subject is
    returned as it is. Dead letters are filed and replayed under it, so a replay is partitioned
    again by the stream, and a publisher waiting for its event's fate hears of it."""
    if subject.count(".") != 4 or not subject.startswith(f"{SUBJECT_PREFIX}."):
        return subject
    base, _, tail = subject.rpartition(".")
    if not tail.isdigit():
        return subject
    try:
        event = msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        event = None
    key = case_key_of(event) if isinstance(event, dict) else None
    return f"{base}.{key}" if key else base


def _on_own_subject(subject: str, env: Envelope, case_id: uuid.UUID) -> bool:
    """``subject`` is the event's own subject, alone (4 tokens), plus its case key (as published) or
    plus its key's partition (as stored): anything else could put a case in a partition not its
    own. On the intake's hot path: ≈ 0.3 µs an event more than the 4-token check."""
    base = f"{SUBJECT_PREFIX}.{env.department}.{env.type}"
    if subject == base:
        return True
    stored, key = _key_tails(case_id)
    return subject == f"{base}.{stored}" or subject == f"{base}.{key}"


@lru_cache(maxsize=65_536)
def _key_tails(case_id: uuid.UUID) -> tuple[str, str]:
    """(``<partition>``, ``<key>``) of a case: computed once per case, not per event. Sized for the
    cases active in the last minutes (≈ 200 bytes each); a miss costs ≈ 2 µs."""
    key = case_key(case_id)
    return str(partition_of(key)), key


def dlq_subject_for(subject: str) -> str:
    return f"{DLQ_PREFIX}.{subject}"


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


def payload_dict(payload: _Payload) -> dict[str, Any]:
    """A payload as plain builtins (nested structs as dicts), e.g. to hand to the domain."""
    result: dict[str, Any] = msgspec.to_builtins(payload, builtin_types=(datetime, uuid.UUID))
    return result


# Headers the hub puts on dead letters (死信) so operators see what went wrong and where it came from.
H_REASON = "Hub-Dlq-Reason"
H_FIELD = "Hub-Dlq-Field"
H_DETAIL = "Hub-Dlq-Detail"
H_SUBJECT = "Hub-Dlq-Subject"
H_SEQ = "Hub-Dlq-Stream-Seq"
H_DELIVERIES = "Hub-Dlq-Deliveries"
H_MSG_ID = "Hub-Dlq-Msg-Id"
H_TIME = "Hub-Dlq-Time"
H_REPLAY_OF = "Hub-Replay-Of"
"""Set by ``hub dlq replay``: the CITY_DLQ sequence that a re-driven event came from."""
