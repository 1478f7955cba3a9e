"""个人信息删除 (right to erasure, and expiry of the retention period): crypto-shredding a person.

Why a plan before any key is deleted: a person is named by an id number, a phone or a name, and
holds more than their own key: the cases they reported (each case's own key seals its notes,
reasons and descriptions) and other cases whose free text names them (a crisis note with their
phone). The plan finds all of it by reading the log (an erasure is rare; the log is read, never
changed), and keeps the person's values in memory only, to find raw copies outside the store
(``streams``: the NATS streams).

Why an event: deleting the keys (``keys``) shreds the sealed fields (``sealing``) in the store,
and the ``Erasure`` record then tells every reader that follows the log — the running projector,
a projector that was down — in log order, exactly once; it is chained like every event, so the
proof of erasure is as tamper-evident as the history it erased.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import orjson
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore

from hub.adapters.privacy.keys import Keyring
from hub.adapters.privacy.policy import normalise
from hub.adapters.privacy.sealing import SEALED_KEY, SEALED_MARK, PrivacyMapper, Sealer
from hub.adapters.store.follower import LogFollower
from hub.adapters.store.state import stored_state, unwrap
from hub.views import ERASED, ERASURE_TOPIC

__all__ = [
    "ERASED",
    "ERASURE_TOPIC",
    "Erasure",
    "ErasurePlan",
    "case_kid",
    "erase",
    "find_person",
    "plan_erasure",
]


class Erasure(Aggregate):
    """The record of one erasure in the event store itself (删除记录), after its keys are deleted.

    Why an event: the read models follow the notification log, so an erasure recorded there is
    applied by the running hub's projector in log order, exactly once, and by a projector that
    was down at its next start, with no rebuild and no side channel. It is chained (hub.adapters.audit)
    like every event, so the proof of erasure is as tamper-evident as the history it erased.
    It holds no personal data: key ids are HMACs, cases are the hub's ids, paths are names.
    ``erased_cases``: every sealed path of these cases is masked; ``mentioned_cases``: only
    their free text (another person reported them).
    """

    TOPIC = "citybrain.privacy.erasure"

    class Event(Aggregate.Event):
        TOPIC = "citybrain.privacy.erasure.event"

    class Recorded(Aggregate.Created, Event):
        TOPIC = ERASURE_TOPIC
        erased_kids: list[str]
        erased_cases: list[str]
        mentioned_cases: list[str]
        sealed_paths: list[str]
        free_text_paths: list[str]
        reason: str

    def __init__(
        self,
        erased_kids: list[str],
        erased_cases: list[str],
        mentioned_cases: list[str],
        sealed_paths: list[str],
        free_text_paths: list[str],
        reason: str,
    ) -> None:
        self.erased_kids, self.erased_cases, self.mentioned_cases = erased_kids, erased_cases, mentioned_cases
        self.sealed_paths, self.free_text_paths, self.reason = sealed_paths, free_text_paths, reason


def erase(events: EventStore[UUID], sealer: Sealer, plan: ErasurePlan, reason: str) -> tuple[int, int]:
    """Delete the plan's keys, then record the ``Erasure`` event; returns how many keys existed
    (the person's, their cases' own).

    Keys first: once the record is in the log every reader must find them gone (a crash between
    the two leaves keys deleted and no record; running the erasure again records it)."""
    kids = plan.kids(sealer.keyring)
    erased = (
        sealer.keyring.erase(plan.person_kids, reason),
        sealer.keyring.erase(kids - plan.person_kids, reason),
    )
    policy = sealer.policy
    record = Erasure._create(
        Erasure.Recorded,
        id=uuid4(),
        erased_kids=sorted(kids),
        erased_cases=sorted(plan.cases),
        mentioned_cases=sorted(plan.mentioned - plan.cases),
        sealed_paths=list(policy.all_paths),
        free_text_paths=list(policy.free_text),
        reason=reason,
    )
    events.put(record.collect_events())
    return erased


def find_person(mapper: PrivacyMapper, recorder: Any, person: str) -> set[str]:
    """Key ids of a person given by id number, phone or name (derived, and found by value in reports)."""
    return plan_erasure(mapper, recorder, person=person, mentions=False).person_kids


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    """What erasing one person (or the reporter of one case) covers, found before any key is deleted.

    ``person_kids``: the person's own keys (their reports). ``cases``: every case they reported
    (the key index) — each case's own key goes too, so its notes, reasons and descriptions read
    ``[erased]``. ``mentioned``: other cases whose sealed free text names one of the person's values
    (a crisis note with their phone): those cases' own keys go too (not their reporters'). ``values``:
    the person's name, phone and id number as reported — held in memory only, to find raw copies
    outside the store (the NATS streams) — never stored.
    """

    person_kids: set[str]
    cases: set[str]
    mentioned: set[str]
    values: set[str]

    def kids(self, keyring: Keyring) -> set[str]:
        """Every key to delete: the person's and each covered case's own."""
        return self.person_kids | {keyring.case_kid(c) for c in self.cases | self.mentioned}


def plan_erasure(
    mapper: PrivacyMapper,
    recorder: Any,
    person: str | None = None,
    case_id: UUID | None = None,
    *,
    mentions: bool = True,
) -> ErasurePlan:
    """Find a person's keys, cases and values (by id number, phone or name, or by one of their cases).

    Two passes over the sealed events (an erasure is rare; the log is read, never changed): the
    reports identify the person and their values, then (``mentions``) every sealed free text is
    searched for those values. Values shorter than 2 characters never match free text."""
    sealer = mapper.sealer
    assert sealer is not None
    keyring, policy = sealer.keyring, sealer.policy
    wanted = normalise(person) if person else None
    kids: set[str] = set()
    cases: set[str] = set()
    if wanted:
        kids |= {keyring.kid(f"{kind}:{wanted}") for kind in policy.subject_kinds}
    if case_id is not None:
        cases.add(str(case_id))
        kid = case_kid(mapper, recorder, case_id)
        if kid is not None and kid != keyring.case_kid(case_id):
            kids.add(kid)
    values: set[str] = {person} if person else set()
    reports = list(policy.sealed)
    for originator, state in _sealed_states(mapper, recorder, reports):
        sealed = state[SEALED_KEY]
        opened = sealer.open(sealed)
        if opened is None:
            continue
        found = {normalise(v) for v in opened.values() if isinstance(v, str)}
        if str(sealed["k"]) in kids or (wanted is not None and wanted in found):
            kids.add(str(sealed["k"]))
            cases.add(str(originator))
            values |= {str(v) for p, v in opened.items() if p in policy.subject and v}
    cases |= set(keyring.cases_of(kids))
    mentioned: set[str] = set()
    needles = {normalise(v) for v in values if len(normalise(v)) >= 2}
    if mentions and needles:
        for originator, state in _sealed_states(mapper, recorder, None):
            if str(originator) in cases:
                continue
            opened = sealer.open(state[SEALED_KEY])
            text = " ".join(normalise(v) for v in (opened or {}).values() if isinstance(v, str))
            if any(n in text for n in needles):
                mentioned.add(str(originator))
    return ErasurePlan(kids, cases, mentioned, values)


def _sealed_states(
    mapper: PrivacyMapper, recorder: Any, topics: list[str] | None
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each sealed state in the log (of ``topics``; all when ``None``), personal fields still sealed."""
    for section in LogFollower(recorder, topics or ()).batches():
        for n in section:
            data = unwrap(mapper, n.state)
            if SEALED_MARK in data:
                yield n.originator_id, orjson.loads(data)


def case_kid(mapper: PrivacyMapper, recorder: Any, case_id: UUID) -> str | None:
    """The key id that seals a case's report (to erase the person behind one case)."""
    for stored in recorder.select_events(case_id, limit=1):
        sealed = stored_state(mapper, stored.state).get(SEALED_KEY)
        return str(sealed["k"]) if sealed else None
    return None
