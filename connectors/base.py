"""The connector contract (连接器契约): a department's native record → canonical events → one answer.

A connector is an anti-corruption layer (防腐层): it knows one department system's record format
and nothing of the hub's inside. It turns each native record into the closed-loop events of
design §4 with **stable event ids** (the same record sent twice yields the same ids, so JetStream's
``Nats-Msg-Id`` window and the case's idempotent receiver both drop the repeat), and it answers
every record: ``accepted``, ``duplicate`` or ``rejected`` with the field at fault.

Why validate here and not only in the intake: a department wants its rejection *now*, in the HTTP
response or the import report, naming its own field; the intake's dead-letter queue is the safety
net for what only the case can judge (a step the case's stage does not allow).

Connectors import only :mod:`hub.messages` (and nats, via :mod:`connectors.publisher`).
"""

from __future__ import annotations

import csv
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from hub import messages as m

DATA_DIR = Path(__file__).parent / "data"
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Department systems in China often send local times without an offset: they are read as UTC+8."""

PRIORITY_BY_LEVEL = {"1": "urgent", "2": "high", "3": "normal", "4": "low"}
"""The common 1–4 level scale (一级 most urgent) of police, 120 and 12345 systems."""


class RecordError(ValueError):
    """A native record the connector cannot map; ``field`` names the department's own field."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {detail}" if field else detail)


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The answer for one native record (its index in the request or file)."""

    index: int
    status: str  # "accepted" | "duplicate" | "rejected"
    event_ids: tuple[str, ...] = ()
    error: str = ""
    field: str = ""

    @property
    def event_id(self) -> str:
        """The record's first event id (its 上报 or stage event): what a department quotes back."""
        return self.event_ids[0] if self.event_ids else ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status, "event_id": self.event_id}
        if len(self.event_ids) > 1:
            out["event_ids"] = list(self.event_ids)
        if self.error:
            out["error"] = self.error
            out["field"] = self.field
        return out


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish function returns per event (connectors.publisher.Published has this shape)."""

    index: int
    event_id: str
    status: str
    seq: int = 0
    error: str = ""


PublishFn = Callable[[Sequence[dict[str, Any]]], Awaitable[Sequence[Any]]]
"""Publishes canonical events in order and answers one result (``.status``, ``.error``) per event."""


# --------------------------------------------------------------------------- field helpers
def text(record: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 8000) -> str:
    """A string field; numbers are accepted as their text (exports often turn ids into numbers)."""
    value = record.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordError(name, "field required")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordError(name, f"expected text, got {type(value).__name__}")
    out = str(value).strip()
    if len(out) > max_len:
        raise RecordError(name, f"longer than {max_len} characters")
    return out


def parse_time(value: Any, name: str, tz: timezone | Any = CHINA_TZ) -> datetime:
    """ISO 8601 (``2026-03-02T08:15:00+08:00``, ``2026-03-02 08:15:00``); naive times are ``tz``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(name, f"not an ISO 8601 time: {value!r}") from None
    elif value is None or value == "":
        raise RecordError(name, "field required")
    else:
        raise RecordError(name, f"expected an ISO 8601 time, got {type(value).__name__}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def time_field(record: Mapping[str, Any], name: str) -> datetime:
    return parse_time(record.get(name), name)


def location(
    record: Mapping[str, Any], lon: str = "lon", lat: str = "lat", address: str = "address"
) -> dict[str, Any] | None:
    """A WGS-84 point from two fields; absent coordinates mean no location (the hub may geocode)."""
    raw_lon, raw_lat = record.get(lon), record.get(lat)
    addr = record.get(address)
    if raw_lon in (None, "") and raw_lat in (None, ""):
        return None
    out: dict[str, Any] = {}
    for key, name, raw, limit in (("lon", lon, raw_lon, 180), ("lat", lat, raw_lat, 90)):
        try:
            number = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RecordError(name, f"expected a number, got {raw!r}") from None
        if not -limit <= number <= limit:
            raise RecordError(name, f"{number} is outside ±{limit}")
        out[key] = number
    if addr:
        out["address"] = str(addr)
    return out


def person(value: Any, name: str) -> dict[str, Any] | None:
    """A reporter or party object ``{name, phone, id_number}`` (个人信息, masked on screens)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RecordError(name, "expected an object with name / phone / id_number")
    unknown = set(value) - {"name", "phone", "id_number"}
    if unknown:
        raise RecordError(f"{name}.{sorted(unknown)[0]}", "unknown field (allowed: name, phone, id_number)")
    return {k: str(v) for k, v in value.items() if v not in (None, "")} or None


def url_list(record: Mapping[str, Any], name: str) -> list[str]:
    value = record.get(name)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(name, "expected a list of URLs")
    for i, url in enumerate(value):
        if not url.startswith(("http://", "https://")):
            raise RecordError(f"{name}.{i}", f"not an http(s) URL: {url!r}")
    return list(value)


def choice(record: Mapping[str, Any], name: str, allowed: Iterable[str]) -> str:
    value = text(record, name)
    options = tuple(allowed)
    if value not in options:
        raise RecordError(name, f"unknown value {value!r}; expected one of {', '.join(options)}")
    return value


@cache
def code_table(filename: str, key: str = "code", label: str = "name") -> dict[str, str]:
    """A category code list shipped as data (``connectors/data/*.csv``): code → label."""
    with (DATA_DIR / filename).open(encoding="utf-8", newline="") as fh:
        return {row[key].strip(): row[label].strip() for row in csv.DictReader(fh) if row.get(key)}


def code(record: Mapping[str, Any], name: str, table: Mapping[str, str], what: str) -> str:
    value = text(record, name)
    if value not in table:
        raise RecordError(name, f"unknown {what} code {value!r}")
    return value


def digest(*parts: Any) -> str:
    """A short stable digest for event ids of records that carry no sequence number of their own."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- the contract
@dataclass
class Connector(ABC):
    """One department system. Subclasses implement :meth:`map`; everything else is shared.

    ``source`` names the department's system (it is part of every hub case id, so it never
    changes once data flowed); ``department`` is the publishing department (subjects
    ``city.<department>.>``).
    """

    name: str = ""
    department: str = ""
    source: str = ""
    kinds: tuple[str, ...] = ()
    catalogue: m.Catalogue = field(init=False)

    def __post_init__(self) -> None:
        self.catalogue = m.Catalogue.of({self.department: self.kinds, m.COMMAND_DEPARTMENT: self.kinds})

    @abstractmethod
    def map(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Native record → canonical events, in the order the case must apply them.

        Raises :class:`RecordError` naming the native field when the record cannot be mapped.
        """

    # helpers for subclasses ------------------------------------------------------------
    def event(
        self,
        *,
        kind: str,
        action: m.Action,
        caseref: str,
        key: str,
        at: datetime,
        actor: str,
        data: Mapping[str, Any] | None = None,
        grid: str | None = None,
        actorrole: str | None = None,
    ) -> dict[str, Any]:
        """One canonical event; its id is ``<source>:<caseref>:<key>:<action>`` (stable per native step)."""
        return m.make_event(
            id=f"{self.source}:{caseref}:{key}:{action.value}",
            source=self.source,
            department=self.department,
            kind=kind,
            action=action,
            caseref=caseref,
            actor=actor,
            time=at,
            data=data,
            grid=grid,
            actorrole=actorrole,
        )

    def closing(
        self, *, kind: str, caseref: str, key: str, at: datetime, actor: str, unit: str, note: str = ""
    ) -> list[dict[str, Any]]:
        """处置反馈 → 核查通过 → 结案 in one native step (a department that closes its own case)."""
        common: dict[str, Any] = {"kind": kind, "caseref": caseref, "key": key, "at": at, "actor": actor}
        return [
            self.event(action=m.Action.HANDLED, data={"department": unit, "note": note}, **common),
            self.event(action=m.Action.VERIFIED, data={"passed": True, "note": note}, **common),
            self.event(action=m.Action.CLOSED, data={"note": note}, **common),
        ]

    # the shared path -------------------------------------------------------------------
    def check(self, event: dict[str, Any]) -> None:
        """Validate one produced event against the contract; a failure names the native-facing field."""
        verdict = m.validate(orjson.dumps(event), self.catalogue)
        if isinstance(verdict, m.Invalid):
            raise RecordError(verdict.field.removeprefix("data."), verdict.detail)

    def map_checked(self, record: Any) -> list[dict[str, Any]]:
        """:meth:`map` plus validation of every event; raises :class:`RecordError` only."""
        if not isinstance(record, Mapping):
            raise RecordError("", f"a record must be a JSON object, got {type(record).__name__}")
        try:
            events = self.map(record)
            for event in events:
                self.check(event)
        except RecordError:
            raise
        except Exception as exc:  # a mapping bug or a poison record must not sink the batch
            # KeyError/TypeError/ValueError of a mapping, OverflowError of a time at datetime's
            # edge (year 9999 with a negative offset), RecursionError of a nested record, a value
            # orjson cannot encode …: the record is rejected with the exception, its neighbours go on.
            raise RecordError("", f"cannot map record: {exc.__class__.__name__}: {exc}") from None
        return events


async def submit(
    connector: Connector,
    records: Iterable[Any],
    publish: PublishFn,
    *,
    start: int = 0,
    department: str | None = None,
) -> list[RecordResult]:
    """Map, validate and publish records; one :class:`RecordResult` per record, in input order.

    ``department``: the authenticated sender's (HTTP ingest: the token's); a record any of whose
    events would be published as another department is rejected ``not_permitted``, none of its
    events published (:func:`hub.messages.published_as`).

    A record is ``accepted`` when at least one of its events is new, ``duplicate`` when all of
    them were already in the stream, ``rejected`` when it could not be mapped or any event was
    refused by JetStream (then ``error`` says which).
    """
    results: dict[int, RecordResult] = {}
    events: list[dict[str, Any]] = []
    owners: list[tuple[int, int]] = []  # (record index, number of its events)
    for index, record in enumerate(records, start):
        try:
            mapped = connector.map_checked(record)
            if department is not None:
                for event in mapped:
                    problem = m.published_as(event, department)
                    if problem is not None:
                        raise RecordError("department", f"{m.Reason.NOT_PERMITTED.value}: {problem}")
        except RecordError as exc:
            results[index] = RecordResult(index, "rejected", error=str(exc), field=exc.field)
            continue
        if not mapped:
            results[index] = RecordResult(index, "duplicate", error="nothing to publish")
            continue
        owners.append((index, len(mapped)))
        events.extend(mapped)
    published = list(await publish(events)) if events else []
    pos = 0
    for index, count in owners:
        mine = published[pos : pos + count]
        pos += count
        ids = tuple(str(e["id"]) for e in events[pos - count : pos])
        failed = [p for p in mine if p.status == "rejected"]
        if failed:
            status, error = "rejected", f"event {failed[0].event_id}: {failed[0].error}"
        elif all(p.status == "duplicate" for p in mine):
            status, error = "duplicate", ""
        else:
            status, error = "accepted", ""
        results[index] = RecordResult(index, status, ids, error, "" if not error else "(publish)")
    return [results[i] for i in sorted(results)]
