"""The keyring (密钥表): one AES-256 key per person and per case, kept beside the events.

Why keys of their own: crypto-shredding (加密销毁) erases a person by deleting the key their
personal fields were sealed under, so each person (and each case's free text) needs a key that
can be deleted alone. The keys live in tables of the event store's own database
(``hub.adapters.store.tables``): one backup, one set of credentials, and an erasure is one
transaction beside the history it shreds.

Why the key id is an HMAC of the person (id number, else phone, else name) under a per-store
secret: the same person gets the same key across reports (one erasure covers all of them), and
the id stored beside the ciphertext reveals nothing about the person to someone without the
store's secret (a bare hash of an 11-digit phone number is brute-forced in minutes).

Why in bulk: new persons' keys are created one small transaction per batch, *before* the batch
is recorded (a crash after it leaves an unused key, never an event whose key was lost). The key
index (case → person key id) lets an erasure find a person's cases without reading the log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.adapters.store.tables import StoreTables

__all__ = ["Keyring"]


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
