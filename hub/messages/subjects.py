"""Where events travel and which case they belong to: subjects (主题), streams, case ids and partitions.

Subjects are ``city.<department>.<kind>.<action>``, optionally followed by the case key (案件键),
the first 8 hex digits of the hub's case id (案件编号): the ``CITY`` stream maps that key onto one of
:data:`PARTITIONS` case partitions (案件分区, ADR 0006), so every event of a case is applied in order
by one worker while different cases go in parallel. The case id is derived deterministically from
the source system and its own case number, so a department never has to learn the hub's id.

Why together: the subject a publisher chooses, the partition the server stores it under, and the
check that an event arrived on its own subject all compute the same case key from the same id;
written once here, publishers (connectors), the intake and the dead-letter tools cannot disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgspec

from hub.messages.actions import Action

SUBJECT_PREFIX = "city"
STREAM = "CITY"
"""The JetStream stream holding every canonical event (subjects ``city.>``)."""
COMMAND_DEPARTMENT = "command"
"""Pseudo-department of the command centre: operator actions enter as ``city.command.case.*``."""
PARTITIONS = 12
"""Case partitions (案件分区) of the ``CITY`` stream (ADR 0006). Fixed for the life of a deployment:
a case's partition is its key's hash modulo this number, so changing it would move cases between
partitions while their earlier events still wait in the old ones. Workers come and go; this stays."""

CASE_NAMESPACE = uuid.UUID("6f1c3a52-6a8e-5b43-9d1e-2f4c1b7e8a90")
"""Namespace of the deterministic case id; never change it (every stored case id depends on it)."""


@lru_cache(maxsize=262_144)
def case_id_for(source: str, caseref: str) -> uuid.UUID:
    """Deterministic hub case id (案件编号) from the source system and its own case number."""
    return uuid.uuid5(CASE_NAMESPACE, f"{source}\x1f{caseref}")


def subject_for(department: str, kind: str, action: Action | str) -> str:
    return f"{SUBJECT_PREFIX}.{department}.{kind}.{Action(action).value}"


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
    case_id = case_id_of(event)
    return case_key(case_id) if case_id is not None else None


def case_id_of(event: Mapping[str, Any]) -> uuid.UUID | None:
    """The case id a JSON-ready event names, read leniently (it has not been validated): its
    ``caseid`` (operator commands), else derived from ``source`` and ``caseref``; None when it names
    neither well enough."""
    caseid = event.get("caseid")
    if caseid is not None:
        try:
            return uuid.UUID(str(caseid))
        except ValueError:
            return None
    source, caseref = event.get("source"), event.get("caseref")
    if isinstance(source, str) and source and isinstance(caseref, str) and caseref:
        return case_id_for(source, caseref)
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
    except Exception:  # a dead letter may hold anything: bad UTF-8, deep nesting, huge numbers
        event = None
    key = case_key_of(event) if isinstance(event, dict) else None
    return f"{base}.{key}" if key else base


def on_own_subject(subject: str, department: str, type_: str, case_id: uuid.UUID) -> bool:
    """``subject`` is the event's own subject, alone (4 tokens), plus its case key (as published) or
    plus its key's partition (as stored): anything else could put a case in a partition not its
    own. On the intake's hot path: ≈ 0.3 µs an event more than the 4-token check."""
    base = f"{SUBJECT_PREFIX}.{department}.{type_}"
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


DONE_PREFIX = "hub.done"
"""Core-NATS notices (not stored) that an operator command was already done (the domain's
``AlreadyDone``: another source or operator took the step first): acked as a duplicate, it is
neither recorded nor dead-lettered, so the mutation waiting for it learns its fate only here."""


def done_subject_for(subject: str) -> str:
    return f"{DONE_PREFIX}.{subject}"
