"""个人信息保护: personal fields sealed with per-person keys (crypto-shredding), erasable at will.

Why crypto-shredding: the event store is append-only and its history is hash-chained (hub.adapters.audit),
so personal data can never be deleted from it by editing rows. Instead every personal field
(the policy in ``privacy.toml``: the reporter's name, phone and id number, and the free text of
psychological-crisis and court cases) is sealed with AES-256-GCM under a key of its own *person*
before the event is recorded. Erasing the person (right to erasure, or retention expiry) deletes
that key: the fields then read as ``[erased]`` in the store, in replays, in projections rebuilt
from it, in exports and in as-of views, while every other field, every count and the audit chain
stay exactly as they were.

Why in the mapper: the aggregate keeps plain values in memory (the domain never sees keys) and the
library's ``Mapper`` is the one place every stored event passes through, both ways. A sealed event
keeps its shape: the personal fields are ``null`` and one ``_pii_`` entry carries the key id, the
field paths and the ciphertext, so readers without keys still see the structure.

Why the key id is an HMAC of the person (id number, else phone, else name) under a per-store
secret: the same person gets the same key across reports (one erasure covers all of them), and
the id stored beside the ciphertext reveals nothing about the person to someone without the
store's secret (a bare hash of an 11-digit phone number is brute-forced in minutes).

Cost: only events of a sealed topic (reports) pay: one HMAC, one AES-GCM seal (≈ 5 µs). New
persons' keys are created in bulk, one small transaction per batch, *before* the batch is recorded
(a crash after it leaves an unused key, never an event whose key was lost).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore, Mapper, Recording, StoredEvent
from eventsourcing.utils import get_topic

from hub.adapters.audit.sql import StoreTables
from hub.adapters.config.loading import ConfigError, config_file
from hub.adapters.store.follower import LogFollower
from hub.adapters.store.state import stored_state, unwrap
from hub.views import ERASED, ERASURE_TOPIC

__all__ = ["ERASED", "ERASURE_TOPIC", "Erasure", "Keyring", "PrivacyMapper", "Sealer", "load_policy"]

SEALED_KEY = "_pii_"
_MARK = b'"_pii_"'
_ERASURE_MARK = b'"erased_kids"'
_LISTS = frozenset({"attachments"})
"""Sealed paths holding lists: an erased list reads as empty (the field keeps its type)."""
_NONCE = 12


# ---------------------------------------------------------------------------------------- policy
@dataclass(frozen=True, slots=True)
class PrivacyPolicy:
    """Which fields of which stored events are personal data, and how a person is recognised."""

    sealed: Mapping[str, tuple[str, ...]]
    sensitive_kinds: Mapping[str, tuple[str, ...]]
    subject: tuple[str, ...]
    retention_days: int = 0
    free_text: tuple[str, ...] = ()
    free_text_prefix: str = ""

    def covers(self, topic: str) -> bool:
        """True when events of ``topic`` may have sealed fields (cheap: the mapper asks per event)."""
        return topic in self.sealed or bool(
            self.free_text and self.free_text_prefix and topic.startswith(self.free_text_prefix)
        )

    def names_person(self, topic: str) -> bool:
        """Events of ``topic`` are sealed under the key of the person they name (reports)."""
        return topic in self.sealed

    def paths(self, topic: str, state: Mapping[str, Any]) -> tuple[str, ...]:
        base = self.sealed.get(topic, ())
        if self.free_text and self.free_text_prefix and topic.startswith(self.free_text_prefix):
            base = base + tuple(p for p in self.free_text if p not in base)
        if topic in self.sealed:
            extra = self.sensitive_kinds.get(str(state.get("kind")))
            if extra:
                base = base + tuple(p for p in extra if p not in base)
        return base

    @property
    def all_paths(self) -> tuple[str, ...]:
        """Every path any event may have sealed (what the read models mask after an erasure)."""
        out: list[str] = []
        for group in (*self.sealed.values(), self.free_text, *self.sensitive_kinds.values()):
            out.extend(p for p in group if p not in out)
        return tuple(out)

    def subject_of(self, state: Mapping[str, Any]) -> str | None:
        """The person an event is about (``leaf:normalised value``), or None when anonymous."""
        for path in self.subject:
            value = get_path(state, path)
            if isinstance(value, str) and value.strip():
                return f"{path.rsplit('.', 1)[-1]}:{normalise(value)}"
        return None

    @property
    def subject_kinds(self) -> tuple[str, ...]:
        return tuple(p.rsplit(".", 1)[-1] for p in self.subject)


def normalise(value: str) -> str:
    """Spaces and dashes do not make another person (``138-0000 0000`` is ``13800000000``)."""
    return "".join(value.split()).replace("-", "").upper()


def load_policy(config_dir: Path | None = None) -> PrivacyPolicy:
    path = config_file("privacy.toml", config_dir)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc

    def paths(table: str) -> dict[str, tuple[str, ...]]:
        entries = raw.get(table, {})
        if not isinstance(entries, dict) or not all(
            isinstance(v, list) and all(isinstance(p, str) and p for p in v) for v in entries.values()
        ):
            raise ConfigError(f"{path}: [{table}] maps names to lists of dotted field paths")
        return {k: tuple(v) for k, v in entries.items()}

    subject = raw.get("subject", {}).get("paths", [])
    days = raw.get("retention", {}).get("days", 0)
    if not isinstance(days, int) or days < 0:
        raise ConfigError(f"{path}: [retention] days must be a whole number ≥ 0 (0 = keep until erased)")
    free = raw.get("free_text", {})
    free_paths, prefix = free.get("paths", []), free.get("prefix", "")
    if not (
        isinstance(free, dict)
        and isinstance(prefix, str)
        and isinstance(free_paths, list)
        and all(isinstance(p, str) and p for p in free_paths)
        and (prefix or not free_paths)
    ):
        raise ConfigError(
            f'{path}: [free_text] needs prefix = "<topic prefix>" and paths = [dotted field paths]'
        )
    return PrivacyPolicy(
        paths("sealed"), paths("sensitive_kinds"), tuple(subject), days, tuple(free_paths), prefix
    )


def get_path(state: Mapping[str, Any], path: str) -> Any:
    node: Any = state
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _set_path(state: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, copying the nested dicts on the way (the domain event keeps its own)."""
    parts = path.split(".")
    node = state
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        child = dict(child)
        node[part] = child
        node = child
    node[parts[-1]] = value


# ---------------------------------------------------------------------------------------- keys
class Keyring:
    """Per-person AES-256 keys in a table of the event store's database, cached in memory.

    Tables: ``hub_privacy_keys`` (key id, key, created, last report day), ``hub_privacy_erasures``
    (key id, when, why: the proof of erasure, holding no personal data) and ``hub_privacy_meta``
    (the store's HMAC secret). Erasures made by another process are noticed within
    ``refresh_seconds`` (a cached key of an erased person is then dropped).
    """

    def __init__(self, tables: StoreTables, refresh_seconds: float = 5.0) -> None:
        self.tables = tables
        self.refresh_seconds = refresh_seconds
        self._lock = threading.RLock()
        self._ciphers: dict[str, AESGCM] = {}
        self._seen: dict[str, str] = {}  # kid → last report day recorded in the table
        self._absent: set[str] = set()
        self._loaded = False
        self._erasures = -1
        self._checked = 0.0
        t, blob = tables.table, tables.blob
        tables.ddl(
            f"CREATE TABLE IF NOT EXISTS {t('hub_privacy_keys')} (kid TEXT PRIMARY KEY, key {blob} NOT NULL,"
            " created_at TEXT NOT NULL, last_seen TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t('hub_privacy_erasures')} (kid TEXT NOT NULL,"
            " erased_at TEXT NOT NULL,"
            " reason TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {t('hub_privacy_meta')} (name TEXT PRIMARY KEY,"
            f" value {blob} NOT NULL)",
            # the key index: which person's key seals the report of which case (no personal data:
            # a case id and an HMAC), so that erasing a person finds their cases at once
            f"CREATE TABLE IF NOT EXISTS {t('hub_privacy_cases')} (case_id TEXT PRIMARY KEY,"
            " kid TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS hub_privacy_cases_kid ON {t('hub_privacy_cases')} (kid)",
        )
        self._hmac = hmac.new(self._secret(), digestmod=hashlib.sha256)
        self._kids: dict[str, str] = {}

    def _secret(self) -> bytes:
        t = self.tables.table("hub_privacy_meta")
        with self.tables.transaction() as cur:
            self.tables.execute(
                cur,
                f"INSERT INTO {t} (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                ("kid_secret", os.urandom(32)),
            )
            self.tables.execute(cur, f"SELECT value FROM {t} WHERE name = ?", ("kid_secret",))
            row = cur.fetchone()
        return bytes(row["value"])

    def kid(self, subject: str) -> str:
        """The key id of a person (or ``case:<uuid>``: a case's own key). Cached: the writer asks
        for it twice an event (preparing the batch's keys, then sealing)."""
        kid = self._kids.get(subject)
        if kid is None:
            if len(self._kids) >= 65_536:  # the cases active lately; a miss costs one HMAC
                self._kids.clear()
            h = self._hmac.copy()
            h.update(subject.encode())
            kid = self._kids[subject] = h.hexdigest()[:32]
        return kid

    # -- writing -----------------------------------------------------------------------------
    def case_kid(self, case_id: Any) -> str:
        """The key id of a case's own key: its free text (notes, reasons, descriptions) is sealed
        under it, so one case can be shredded alone and a person's erasure shreds each of theirs."""
        return self.kid(f"case:{case_id}")

    def ensure(self, kids: Iterable[str], cases: Iterable[tuple[str, str]] = ()) -> None:
        """Make sure every key exists (created in ONE transaction) and note today's report;
        ``cases``: (case id, person key id) pairs of new reports for the key index."""
        self._refresh()
        today = datetime.now(UTC).date().isoformat()
        wanted = set(kids)
        index = [(c, k) for c, k in dict(cases).items()]
        with self._lock:
            missing = [k for k in wanted if k not in self._ciphers]
            stale = [k for k in wanted if k in self._ciphers and self._seen.get(k, "") < today]
        if not missing and not stale and not index:
            return
        t = self.tables.table("hub_privacy_keys")
        now = datetime.now(UTC).isoformat()
        with self.tables.transaction() as cur:
            if index:
                self.tables.executemany(
                    cur,
                    f"INSERT INTO {self.tables.table('hub_privacy_cases')} (case_id, kid) VALUES (?, ?)"
                    " ON CONFLICT (case_id) DO NOTHING",
                    index,
                )
            self.tables.executemany(
                cur,
                f"INSERT INTO {t} (kid, key, created_at, last_seen) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kid) DO NOTHING",
                [(k, AESGCM.generate_key(256), now, today) for k in missing],
            )
            self.tables.executemany(
                cur, f"UPDATE {t} SET last_seen = ? WHERE kid = ?", [(today, k) for k in stale]
            )
            rows = self._select(cur, missing)
        with self._lock:
            for row in rows:
                self._ciphers[row["kid"]] = AESGCM(bytes(row["key"]))
                self._absent.discard(row["kid"])
            for k in [*missing, *stale]:
                self._seen[k] = today

    def _select(self, cur: Any, kids: Sequence[str]) -> list[Any]:
        rows: list[Any] = []
        t = self.tables.table("hub_privacy_keys")
        for i in range(0, len(kids), 500):
            chunk = kids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            self.tables.execute(cur, f"SELECT kid, key, last_seen FROM {t} WHERE kid IN ({marks})", chunk)
            rows.extend(cur.fetchall())
        return rows

    def for_writing(self, kid: str) -> AESGCM:
        cipher = self._ciphers.get(kid)
        if cipher is None:  # not prepared in bulk (e.g. a single save): one transaction
            self.ensure([kid])
            cipher = self._ciphers[kid]
        return cipher

    # -- reading -----------------------------------------------------------------------------
    def for_reading(self, kid: str) -> AESGCM | None:
        """The key, or None when the person was erased."""
        self._refresh()
        cipher = self._ciphers.get(kid)
        if cipher is not None:
            return cipher
        with self._lock:
            if not self._loaded:
                self._load_all()
                cipher = self._ciphers.get(kid)
                if cipher is not None:
                    return cipher
            if kid in self._absent:
                return None
            with self.tables.transaction(commit=False) as cur:
                rows = self._select(cur, [kid])
            if not rows:
                self._absent.add(kid)
                return None
            cipher = self._ciphers[kid] = AESGCM(bytes(rows[0]["key"]))
            return cipher

    def _load_all(self) -> None:
        """One query for every key (replays and projections touch most persons)."""
        for row in self.tables.query(
            f"SELECT kid, key, last_seen FROM {self.tables.table('hub_privacy_keys')}"
        ):
            self._ciphers.setdefault(row["kid"], AESGCM(bytes(row["key"])))
            self._seen.setdefault(row["kid"], row["last_seen"])
        self._loaded = True

    def _refresh(self) -> None:
        """Notice erasures made by other processes (at most every ``refresh_seconds``)."""
        now = time.monotonic()
        if now - self._checked < self.refresh_seconds:
            return
        self._checked = now
        t = self.tables.table("hub_privacy_erasures")
        count = int(self.tables.query(f"SELECT count(*) AS n FROM {t}")[0]["n"])
        if count == self._erasures:
            return
        erased = {row["kid"] for row in self.tables.query(f"SELECT kid FROM {t}")}
        with self._lock:
            for kid in erased:
                self._ciphers.pop(kid, None)
                self._seen.pop(kid, None)
            self._absent.clear()
            self._loaded = False  # re-read: an erased person who reported again has a new key
            self._erasures = count

    # -- erasing -----------------------------------------------------------------------------
    def erase(self, kids: Iterable[str], reason: str) -> int:
        """Delete the keys (and their bytes: SQLite secure_delete + WAL checkpoint, PostgreSQL
        VACUUM FULL of the key table); returns how many keys existed."""
        kids = sorted(set(kids))
        if not kids:
            return 0
        keys, erasures = self.tables.table("hub_privacy_keys"), self.tables.table("hub_privacy_erasures")
        now = datetime.now(UTC).isoformat()
        with self.tables.transaction() as cur:
            if self.tables.dialect == "sqlite":
                cur.execute("PRAGMA secure_delete = ON")
            existing = [row["kid"] for row in self._select(cur, kids)]
            for i in range(0, len(kids), 500):
                chunk = kids[i : i + 500]
                self.tables.execute(
                    cur, f"DELETE FROM {keys} WHERE kid IN ({', '.join('?' * len(chunk))})", chunk
                )
            self.tables.executemany(
                cur,
                f"INSERT INTO {erasures} (kid, erased_at, reason) VALUES (?, ?, ?)",
                [(k, now, reason) for k in kids],
            )
        self._scrub()
        with self._lock:
            for kid in kids:
                self._ciphers.pop(kid, None)
                self._absent.add(kid)
        self._checked = 0.0
        return len(existing)

    def _scrub(self) -> None:
        """Make the deleted key bytes unrecoverable from the database files (best effort)."""
        if self.tables.dialect == "sqlite":
            with self.tables.transaction(commit=False) as cur:
                cur.execute("SELECT 1")
            with self.tables.datastore.get_connection(commit=True) as conn:
                conn._sqlite_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            with self.tables.datastore.get_connection() as conn:
                conn.commit()
                conn.autocommit = True
                try:
                    conn.execute(f"VACUUM FULL {self.tables.table('hub_privacy_keys')}")
                finally:
                    conn.autocommit = False

    def expired(self, retention_days: int, now: datetime) -> list[str]:
        """Key ids of persons whose last report is older than the retention period."""
        if retention_days <= 0:
            return []
        cutoff = (now - timedelta(days=retention_days)).date().isoformat()
        t = self.tables.table("hub_privacy_keys")
        return [
            row["kid"] for row in self.tables.query(f"SELECT kid FROM {t} WHERE last_seen < ?", (cutoff,))
        ]

    def cases_of(self, kids: Iterable[str]) -> dict[str, str]:
        """Case id → person key id of every case reported under one of ``kids`` (the key index)."""
        kids = sorted(set(kids))
        out: dict[str, str] = {}
        t = self.tables.table("hub_privacy_cases")
        for i in range(0, len(kids), 500):
            chunk = kids[i : i + 500]
            rows = self.tables.query(
                f"SELECT case_id, kid FROM {t} WHERE kid IN ({', '.join('?' * len(chunk))})", chunk
            )
            out.update((str(r["case_id"]), str(r["kid"])) for r in rows)
        return out

    def forget(self, kids: Iterable[str]) -> None:
        """Drop cached keys at once (the projector's decoder meets an erasure record in the log:
        every event after it must read those keys as erased, not wait for ``refresh_seconds``)."""
        with self._lock:
            for kid in kids:
                self._ciphers.pop(kid, None)
                self._seen.pop(kid, None)
        self._checked = 0.0

    def erasures(self) -> list[tuple[str, str, str]]:
        t = self.tables.table("hub_privacy_erasures")
        rows = self.tables.query(f"SELECT kid, erased_at, reason FROM {t} ORDER BY erased_at")
        return [(r["kid"], r["erased_at"], r["reason"]) for r in rows]


# ---------------------------------------------------------------------------------------- sealing
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
            _set_path(state, p, None)
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
                _set_path(state, p, [] if p in _LISTS else ERASED)
            else:
                _set_path(state, p, values.get(p))

    def reveal_json(self, data: bytes) -> bytes:
        """Stored JSON → JSON with personal fields opened (the projector's decoder; cheap when unsealed).

        An erasure record met in the log drops its keys from this process's cache at once, so
        every event decoded after it reads those persons as erased (the log's order is the
        order of truth; the key table's refresh is only the safety net)."""
        if _MARK not in data:
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


# ---------------------------------------------------------------------------------------- erasure
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
            if _MARK in data:
                yield n.originator_id, orjson.loads(data)


def case_kid(mapper: PrivacyMapper, recorder: Any, case_id: UUID) -> str | None:
    """The key id that seals a case's report (to erase the person behind one case)."""
    for stored in recorder.select_events(case_id, limit=1):
        sealed = stored_state(mapper, stored.state).get(SEALED_KEY)
        return str(sealed["k"]) if sealed else None
    return None
