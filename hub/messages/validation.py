"""Validation at the edge: one event's bytes in, :class:`Valid` or :class:`Invalid` out.

Why here, and why so careful: every event from every department passes :func:`validate` before
anything else looks at it (the NATS intake, HTTP ingest, file imports), so it is the intake's hot
path (≈ 4 µs an event, msgspec decoding and checking in one pass, the plausible-time window in two
float comparisons) and the one place a poison message is caught. Whatever the bytes, the answer
names the rule broken and the field at fault (:class:`Reason` codes for the dead letters), and
never raises: one bad message must not stop the intake nor fail an HTTP batch. The slow search for
*where* undecodable bytes lie is :mod:`hub.messages.forensics`, run only for rejected events.
:func:`published_as` is the other edge check: who may publish as whom (HTTP ingest's tokens).
"""

from __future__ import annotations

import re
import time as _time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from hub.messages.actions import ACTION_OF, ACTIONS, Action
from hub.messages.catalogue import Catalogue
from hub.messages.dead_letters import Reason, printable
from hub.messages.envelope import Envelope
from hub.messages.forensics import (
    MAX_DEPTH,
    as_bytes,
    deep_path,
    non_utf8_path,
    nul_path,
    undecodable_member_path,
    undecodable_path,
)
from hub.messages.payloads import PAYLOADS, Payload
from hub.messages.subjects import COMMAND_DEPARTMENT, case_key, on_own_subject
from hub.messages.time_window import TimeWindow

_DECODER = msgspec.json.Decoder(Envelope)


@dataclass(frozen=True, slots=True)
class Invalid:
    """A rejected event: ``reason`` is the code, ``field`` the JSON path, ``detail`` the rule broken."""

    reason: Reason
    field: str
    detail: str

    def __post_init__(self) -> None:
        # Both end up in NATS headers and log lines: one printable line each, whatever the input
        # held (a field name with CR/LF, a lone surrogate), and bounded.
        object.__setattr__(self, "field", printable(self.field, 300))
        object.__setattr__(self, "detail", printable(self.detail, 2000))

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        return f"{self.reason.value}{where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Valid:
    envelope: Envelope
    payload: Payload
    case_id: uuid.UUID
    """Computed once: deriving it (uuid5) costs more than validating the whole event."""
    raw: bytes | str = b""
    """The event as received: what a store-writer process is handed (it keeps the source's offsets)."""

    @property
    def action(self) -> Action:
        return ACTION_OF[self.envelope.type.rsplit(".", 1)[1]]


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
    if rule.startswith("Number out of range"):
        rule = (
            "number out of range (larger than a 64-bit integer or float can hold); send a number "
            "within the field's range (see the JSON schema for this action)"
        )
    field_path = f"{prefix}{path}" if path else prefix.rstrip(".")
    return field_path, rule


def validate(raw: bytes | str, catalogue: Catalogue, subject: str | None = None) -> Valid | Invalid:
    """Parse and check one event; never raises. ``subject`` is the NATS subject it arrived on.

    Whatever the bytes, the answer is :class:`Valid` or :class:`Invalid` naming the field at fault:
    one poison message must never stop the intake (it is dead-lettered, its neighbours stored) nor
    an HTTP request (it is answered per record). Each failure the decoder can raise is handled
    where it can be explained (bad UTF-8, nesting too deep, numbers out of range, NUL characters,
    times out of the window); the last ``except`` only guards against what nobody foresaw, and it
    still names the exception.
    """
    try:
        return _validate(raw, catalogue, subject)
    except Exception as exc:  # defence in depth: validation must never stop its caller
        return Invalid(
            Reason.SCHEMA,
            "",
            f"the event could not be checked ({exc.__class__.__name__}: {exc}); send one CloudEvents "
            "JSON object in UTF-8 (see docs/connectors.md)",
        )


def _validate(raw: bytes | str, catalogue: Catalogue, subject: str | None) -> Valid | Invalid:
    try:
        env = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        field_path, detail = _error_field(exc)
        if "[...]" in field_path or "number out of range" in detail:
            field_path = undecodable_member_path(as_bytes(raw)) or field_path
        return Invalid(Reason.SCHEMA, field_path, detail)
    except msgspec.DecodeError as exc:
        return Invalid(
            Reason.INVALID_JSON,
            undecodable_path(as_bytes(raw)),
            f"{exc}; send one CloudEvents JSON object (UTF-8) per message",
        )
    except UnicodeDecodeError as exc:  # a string holding bytes that are not UTF-8
        return _not_utf8(raw, exc)
    except UnicodeEncodeError as exc:  # str input holding a lone surrogate (cannot be UTF-8)
        return Invalid(
            Reason.INVALID_ENCODING,
            "",
            f"character {exc.start} is a lone surrogate {exc.object[exc.start : exc.end]!r}, which "
            "has no UTF-8 form; send the text as valid Unicode",
        )
    except RecursionError:
        return Invalid(
            Reason.SCHEMA,
            deep_path(as_bytes(raw)),
            f"nested too deeply (more than {MAX_DEPTH} levels of arrays/objects); an event's data "
            "is at most a few levels deep (see the JSON schema of its action)",
        )
    action = env.type.rsplit(".", 1)[1]
    if action not in ACTIONS:
        return Invalid(Reason.SCHEMA, "type", f"unknown action {action!r}; expected one of {sorted(ACTIONS)}")
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
    if subject is not None and not on_own_subject(subject, env.department, env.type, case_id):
        return Invalid(
            Reason.SUBJECT_MISMATCH,
            "type",
            f"published on {subject!r} but the event says {env.nats_subject!r}, optionally followed "
            f"by its case key .{case_key(case_id)} (ADR 0006)",
        )
    if env.department == COMMAND_DEPARTMENT and env.caseid is None:
        return Invalid(Reason.SCHEMA, "caseid", "operator commands must name the hub case id")
    model = PAYLOADS[ACTION_OF[action]]
    try:
        payload = msgspec.convert(env.data, model)
    except msgspec.ValidationError as exc:
        field_path, detail = _error_field(exc, "data.")
        return Invalid(Reason.SCHEMA, field_path, detail)
    if (b"\\u0000" in raw) if isinstance(raw, bytes) else ("\\u0000" in raw):  # rarely true
        nul = nul_path(raw)
        if nul is not None:
            return Invalid(
                Reason.SCHEMA,
                nul,
                "contains a NUL character (\\u0000), which PostgreSQL text and most tools cannot "
                "hold; remove it at the source",
            )
    return _check_times(env, payload, model, catalogue.window) or Valid(env, payload, case_id, raw)


def _check_times(env: Envelope, payload: Payload, model: type[Payload], window: TimeWindow) -> Invalid | None:
    """The event ``time`` and every deadline in ``data`` against the plausible-time window.

    On the intake's hot path: the common case is two float comparisons (≈ 0.3 µs); the messages
    are built only for an event outside the window."""
    now = _time.time()
    earliest = window.start if window.start_ago is None else now - window.start_ago
    latest = now + window.ahead
    try:
        at = env.time.timestamp()
    except (OverflowError, ValueError, OSError):  # beyond datetime's range once in UTC
        at = float("nan")
    if not earliest <= at <= latest:
        return Invalid(
            Reason.TIME_WINDOW, "time", window.problem(env.time, earliest, latest) or "out of range"
        )
    names = _TIME_FIELDS.get(model)
    if names:
        horizon = at + window.deadline_ahead
        for name in names:
            moment = getattr(payload, name)
            if moment is None:
                continue
            problem = window.problem(moment, earliest, horizon, deadline=True)
            if problem is not None:
                return Invalid(Reason.TIME_WINDOW, f"data.{name}", problem)
    return None


def _datetime_fields(model: type[Payload]) -> tuple[str, ...]:
    """Names of a payload's timestamp fields (optional ones included), found once at import."""
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    names = []
    for f in info.fields:
        options = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if any(isinstance(t, msgspec.inspect.DateTimeType) for t in options):
            names.append(f.name)
    return tuple(names)


_TIME_FIELDS: dict[type[Payload], tuple[str, ...]] = {
    model: names for model in PAYLOADS.values() if (names := _datetime_fields(model))
}


def _not_utf8(raw: bytes | str, exc: UnicodeDecodeError) -> Invalid:
    where = non_utf8_path(as_bytes(raw))
    bad = exc.object[exc.start : exc.end]
    return Invalid(
        Reason.INVALID_ENCODING,
        where,
        f"holds bytes that are not UTF-8 ({bytes(bad)!r}: {exc.reason}); the hub accepts UTF-8 "
        "only: convert the text at the source (e.g. from GBK/GB18030) or escape it as \\uXXXX",
    )


def published_as(event: Mapping[str, Any], department: str) -> str | None:
    """Why ``event`` may not be published by ``department`` (HTTP ingest: the token's), or None.

    Why at the edge: the hub publishes what HTTP ingest maps with its own NATS identity, so the
    subject no longer proves who sent it; the token does. An event must carry the token's
    department (``department``), and never the command centre's (operator commands arrive only
    through the API, with the operator's identity). Whether that department may act on the case it
    names is decided later, by the case (``not_permitted`` dead letters, hub.domain.authority).
    """
    claimed = event.get("department")
    if claimed == department and department != COMMAND_DEPARTMENT:
        return None
    if claimed == COMMAND_DEPARTMENT:
        return (
            f"a {department} token may not publish operator commands (department "
            f"{COMMAND_DEPARTMENT!r}); they arrive only through the API with the operator's identity"
        )
    return f"a {department} token may publish only as {department}, but the event says department {claimed!r}"
