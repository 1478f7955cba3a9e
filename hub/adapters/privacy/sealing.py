"""个人信息保护 by sealing: personal fields sealed with per-person keys before they are recorded.

Why crypto-shredding: the event store is append-only and its history is hash-chained
(hub.adapters.audit), so personal data can never be deleted from it by editing rows. Instead every
personal field (the policy, ``policy``) is sealed with AES-256-GCM under a key of its own *person*
(``keys``) before the event is recorded. Erasing the person (``erasure``) deletes that key: the
fields then read as ``[erased]`` in the store, in replays, in projections rebuilt from it, in
exports and in as-of views, while every other field, every count and the audit chain stay exactly
as they were.

Why in the mapper: the aggregate keeps plain values in memory (the domain never sees keys) and the
library's ``Mapper`` is the one place every stored event passes through, both ways. A sealed event
keeps its shape: the personal fields are ``null`` and one ``_pii_`` entry carries the key id, the
field paths and the ciphertext, so readers without keys still see the structure.

Cost: only events of a sealed topic (reports) pay: one HMAC, one AES-GCM seal (≈ 5 µs); the
batch's new keys are prepared in one transaction by the sealing event store before it records.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from eventsourcing.persistence import EventStore, Mapper, Recording, StoredEvent
from eventsourcing.utils import get_topic

from hub.adapters.privacy.keys import Keyring
from hub.adapters.privacy.policy import PrivacyPolicy, get_path, load_policy, normalise, set_path
from hub.adapters.store.tables import StoreTables
from hub.views import ERASED

__all__ = ["SEALED_KEY", "SEALED_MARK", "PrivacyMapper", "Sealer", "SealingEventStore", "install"]

SEALED_KEY = "_pii_"
"""The entry of a sealed state that holds the key id, the sealed paths and the ciphertext."""
SEALED_MARK = b'"_pii_"'
"""Its bytes: a stored state without them has nothing sealed (checked before any JSON is parsed)."""
_ERASURE_MARK = b'"erased_kids"'
_LISTS = frozenset({"attachments"})
"""Sealed paths holding lists: an erased list reads as empty (the field keeps its type)."""
_NONCE = 12


class Sealer:
    """Seals and opens the personal fields of one stored event state (a JSON-ready dict)."""

    def __init__(self, policy: PrivacyPolicy, keyring: Keyring) -> None:
        self.policy = policy
        self.keyring = keyring

    def _subject(self, topic: str, state: Mapping[str, Any], originator_id: Any) -> str:
        """A report is sealed under its person's key; every later event of the case (and an
        anonymous report) under the case's own key."""
        person = self.policy.subject_of(state) if self.policy.names_person(topic) else None
        return person or f"case:{originator_id}"

    def kid_for(self, topic: str, state: Mapping[str, Any], originator_id: Any) -> str | None:
        paths = self.policy.paths(topic, state)
        if not paths or all(get_path(state, p) in (None, "", []) for p in paths):
            return None
        return self.keyring.kid(self._subject(topic, state, originator_id))

    def seal(self, topic: str, state: dict[str, Any], originator_id: Any) -> None:
        paths = self.policy.paths(topic, state)
        values = {p: v for p in paths if (v := get_path(state, p)) not in (None, "", [])}
        if not values:
            return
        kid = self.keyring.kid(self._subject(topic, state, originator_id))
        cipher = self.keyring.for_writing(kid)
        for p in values:
            set_path(state, p, None)
        nonce = os.urandom(_NONCE)
        blob = nonce + cipher.encrypt(nonce, orjson.dumps(values), kid.encode())
        state[SEALED_KEY] = {"k": kid, "p": list(values), "c": base64.b64encode(blob).decode()}

    def open(self, sealed: Mapping[str, Any]) -> dict[str, Any] | None:
        """The sealed values, or None when the key is gone (erased)."""
        kid = str(sealed["k"])
        cipher = self.keyring.for_reading(kid)
        if cipher is None:
            return None
        blob = base64.b64decode(sealed["c"])
        try:
            values: dict[str, Any] = orjson.loads(cipher.decrypt(blob[:_NONCE], blob[_NONCE:], kid.encode()))
        except InvalidTag:  # sealed under a key erased since (the person reported again later)
            return None
        return values

    def unseal(self, state: dict[str, Any]) -> None:
        """Put the personal values back in place of ``_pii_`` (``[erased]`` when the key is gone)."""
        sealed = state.pop(SEALED_KEY, None)
        if sealed is None:
            return
        values = self.open(sealed)
        for p in sealed["p"]:
            if values is None:
                set_path(state, p, [] if p in _LISTS else ERASED)
            else:
                set_path(state, p, values.get(p))

    def reveal_json(self, data: bytes) -> bytes:
        """Stored JSON → JSON with personal fields opened (the projector's decoder; cheap when unsealed).

        An erasure record met in the log drops its keys from this process's cache at once, so
        every event decoded after it reads those persons as erased (the log's order is the
        order of truth; the key table's refresh is only the safety net)."""
        if SEALED_MARK not in data:
            if _ERASURE_MARK in data:
                record = orjson.loads(data)
                if isinstance(record, dict) and isinstance(record.get("erased_kids"), list):
                    self.keyring.forget(str(k) for k in record["erased_kids"])
            return data
        state = orjson.loads(data)
        self.unseal(state)
        return orjson.dumps(state)

    def subjects(self, state: Mapping[str, Any]) -> Iterator[str]:
        """The normalised personal values of a sealed state (to find a person's key by value)."""
        sealed = state.get(SEALED_KEY)
        if not sealed:
            return
        values = self.open(sealed)
        for v in (values or {}).values():
            if isinstance(v, str):
                yield normalise(v)


class PrivacyMapper(Mapper[UUID]):
    """The library's mapper, sealing personal fields on the way in and opening them on the way out."""

    sealer: Sealer | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        sealer = self.sealer
        topic = get_topic(type(domain_event))
        if sealer is None or not sealer.policy.covers(topic):
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        sealer.seal(topic, state, originator_id)
        stored = self.transcoder.encode(state)
        if self.compressor:
            stored = self.compressor.compress(stored)
        if self.cipher:
            stored = self.cipher.encrypt(stored)
        return StoredEvent(
            originator_id=originator_id, originator_version=originator_version, topic=topic, state=stored
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        state = event.__dict__
        if SEALED_KEY in state and self.sealer is not None:
            self.sealer.unseal(state)
        return event

    def prepare(self, domain_events: Sequence[Any]) -> None:
        """Create the keys of every new person of a batch in one transaction, before it is recorded."""
        sealer = self.sealer
        if sealer is None:
            return
        kids = []
        cases = []
        policy = sealer.policy
        for event in domain_events:
            topic = get_topic(type(event))
            if policy.covers(topic):
                state = vars(event)
                kid = sealer.kid_for(topic, state, event.originator_id)
                if kid is not None:
                    kids.append(kid)
                    if policy.names_person(topic) and policy.subject_of(state) is not None:
                        cases.append((str(event.originator_id), kid))
        if kids:
            sealer.keyring.ensure(kids, cases)


class SealingEventStore(EventStore[UUID]):
    """The library's event store, preparing the batch's keys before the batch is mapped and recorded."""

    def put(self, domain_events: Sequence[Any], **kwargs: Any) -> list[Recording[UUID]]:
        if isinstance(self.mapper, PrivacyMapper):
            self.mapper.prepare(domain_events)
        return super().put(domain_events, **kwargs)

    def to_stored(self, domain_events: Sequence[Any]) -> list[StoredEvent]:
        """What :meth:`put` would record, without recording it (the store writer hands the rows to
        its recorder process, hub/adapters/store/): the batch's keys prepared, each event mapped."""
        if isinstance(self.mapper, PrivacyMapper):
            self.mapper.prepare(domain_events)
        return [self.mapper.to_stored_event(event) for event in domain_events]


def install(mapper: Mapper[UUID], recorder: Any, config_dir: Path | None) -> EventStore[UUID]:
    """Give the application's mapper its keyring and return the sealing event store (CaseLedger).

    ``config_dir`` (``HUB_CONFIG_DIR``, read by ops and passed in) may hold ``privacy.toml``."""
    if isinstance(mapper, PrivacyMapper):
        policy = load_policy(config_dir)
        mapper.sealer = Sealer(policy, Keyring(_tables_for(recorder)))
    return SealingEventStore(mapper, recorder)


def _tables_for(recorder: Any) -> StoreTables:
    """The store's own database; an in-memory store (POPO, tests) gets an in-memory key table."""
    if hasattr(recorder, "datastore"):
        return StoreTables(recorder)
    from types import SimpleNamespace

    from eventsourcing.sqlite import SQLiteDatastore

    return StoreTables(
        SimpleNamespace(datastore=SQLiteDatastore(db_name=":memory:"), events_table_name="none")
    )
