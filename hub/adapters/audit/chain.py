"""The audit chain (审计链): sha256 over every stored event, chained in notification order.

Why: auditors must be able to prove the history is complete and unaltered. Each event's link is
``sha256(previous link ‖ notification id ‖ version ‖ originator id ‖ topic ‖ stored state)`` over
the bytes exactly as stored (ciphertext when the store is encrypted, so verifying needs no key).
The chain is kept in the store's database, one row per block (a batch of consecutive events):
the notification ids actually present (PostgreSQL ids may have gaps: the chain follows the ids
that exist, and a row deleted later is missed by id), the first 16 bytes of each link (enough to
name the exact position of a change), the block's full head and the running count. The head is
also anchored *outside* the store (a NATS KV bucket, or printed for a notary): someone able to
rewrite both the events and the chain table still cannot make them match an anchored head.

Who chains, and when: a process of its own. In a running hub the chain follower
(``hub.adapters.store.chain_follower``, process ``hub-audit-chain``), a sibling of the store writer
started and stopped with it by ``RemoteLedger``, calls :func:`follower`'s function every 0.2 s:
it reads the rows committed since the chain's head (bulk: one read of the new rows and one insert
per block) and appends their blocks in its own transaction; the writer and its recorder do no chain
work at all. ``hub audit chain`` and anyone else call :meth:`AuditChain.extend` the same way.
Why a follower of the log and not a hook inside the recorder's transaction: it works for every
writer (intake workers, access-log writers, imports) without overriding library internals, and a
failure to chain never fails a committed batch; the cost is a window between commit and chain of
about one poll, closed by the next poll, by ``hub audit chain`` or at the next start (on stop the
follower chains what is left). ADR 0005. New events
are read through the hub's one log follower (``hub.adapters.store.follower``): on PostgreSQL a lower
id can become visible after a higher one, and chaining past it would make ``verify`` report the
late event as "inserted" (a false tamper alarm); the follower's gap rule waits for it instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification

from hub.adapters.store.follower import LogFollower
from hub.adapters.store.tables import StoreTables

log = logging.getLogger(__name__)

GENESIS = hashlib.sha256(b"citybrain-hub audit chain v1").digest()
LINK_BYTES = 16
_HEADER = struct.Struct(">qqHHI")
TABLE = "hub_audit_chain"


def link(previous: bytes, n: Notification) -> bytes:
    """The chain link of one stored event (full 32-byte sha256)."""
    oid = n.originator_id
    oid_bytes = oid.bytes if isinstance(oid, UUID) else str(oid).encode()
    return _link(previous, n.id, n.originator_version, oid_bytes, n.topic, n.state)


def _link(previous: bytes, position: int, version: int, oid_bytes: bytes, topic_text: str, raw: Any) -> bytes:
    topic = topic_text.encode()
    state = (
        raw.encode() if isinstance(raw, str) else bytes(raw)
    )  # a tampered SQLite row may come back as TEXT
    h = hashlib.sha256(previous)
    h.update(_HEADER.pack(position, version, len(oid_bytes), len(topic), len(state)))
    h.update(oid_bytes)
    h.update(topic)
    h.update(state)
    return h.digest()


class _Row(NamedTuple):
    """One stored event as the chain reads it: the columns, not the library's ``Notification``
    (building those, with a ``UUID`` per row, cost ≈ 6 of the ≈ 7 µs an event the chain took)."""

    id: int
    originator_id: Any
    """As stored: hex text on SQLite, a ``UUID`` on PostgreSQL (see :meth:`AuditChain._row_link`)."""
    originator_version: int
    topic: str
    state: Any


@dataclass(frozen=True, slots=True)
class Head:
    """Where the chain stands: the last chained position, how many events, and the head link."""

    position: int
    count: int
    head: str  # hex of the full sha256 link
    block: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "count": self.count, "head": self.head, "block": self.block}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Head:
        return cls(int(data["position"]), int(data["count"]), str(data["head"]), int(data.get("block", 0)))


EMPTY = Head(0, 0, GENESIS.hex(), 0)


@dataclass(frozen=True, slots=True)
class Finding:
    """The first place where the store and the chain disagree."""

    position: int
    kind: str  # modified | deleted | inserted | chain-tampered | anchor-mismatch | unchained
    detail: str


@dataclass(slots=True)
class Report:
    checked: int = 0
    head: Head = EMPTY
    finding: Finding | None = None
    unchained: int = 0
    anchor: Head | None = None
    anchor_checked: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.finding is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head": self.head.to_dict(),
            "finding": None
            if self.finding is None
            else {
                "position": self.finding.position,
                "kind": self.finding.kind,
                "detail": self.finding.detail,
            },
            "unchained": self.unchained,
            "anchor": None if self.anchor is None else self.anchor.to_dict(),
            "anchor_checked": self.anchor_checked,
            "notes": self.notes,
        }


class AuditChain:
    """Maintains and verifies the chain of one event store (SQLite or PostgreSQL)."""

    def __init__(self, recorder: Any, *, batch_size: int = 5000) -> None:
        self.recorder = recorder
        self.tables = StoreTables(recorder)
        self.batch_size = batch_size
        self._tip: Head | None = None  # cached by extend(): the follower need not re-read it per poll
        self._uuid_ids = getattr(self.tables.datastore, "originator_id_type", "uuid") == "uuid"
        self._new = LogFollower(recorder, select=self._section)
        """New events to chain: never past an id that may still become visible (the gap rule)."""
        t = self.tables.table(TABLE)
        blob = self.tables.blob
        self.tables.ddl(
            f"CREATE TABLE IF NOT EXISTS {t} (block BIGINT PRIMARY KEY, first_id BIGINT NOT NULL,"
            f" last_id BIGINT NOT NULL, n INTEGER NOT NULL, total BIGINT NOT NULL, ids {blob} NOT NULL,"
            f" links {blob} NOT NULL, head {blob} NOT NULL, chained_at TEXT NOT NULL)"
        )

    # ------------------------------------------------------------------------------ appending
    def head(self) -> Head:
        rows = self.tables.query(
            f"SELECT block, last_id, total, head FROM {self.tables.table(TABLE)} ORDER BY block DESC LIMIT 1"
        )
        if not rows:
            return EMPTY
        r = rows[0]
        return Head(int(r["last_id"]), int(r["total"]), bytes(r["head"]).hex(), int(r["block"]))

    def extend(self, limit: int | None = None) -> int:
        """Chain every event recorded after the chain's head (one block per read); returns how many.

        Safe to call from several processes: a block another process appended first makes this
        call stop (primary key on the block number), and the next call continues from there.
        """
        tip = self._tip or self.head()
        previous, position, total, block = bytes.fromhex(tip.head), tip.position, tip.count, tip.block
        chained = 0
        while limit is None or chained < limit:
            section = self._new.read(position, self.batch_size)
            if not section:
                break
            ids: list[int] = []
            links = bytearray()
            row_link = self._row_link
            for n in section:
                previous = row_link(previous, n)
                ids.append(n.id)
                links += previous[:LINK_BYTES]
            block += 1
            total += len(section)
            try:
                with self.tables.transaction() as cur:
                    self.tables.execute(
                        cur,
                        f"INSERT INTO {self.tables.table(TABLE)} (block, first_id, last_id, n, total, ids,"
                        " links, head, chained_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            block,
                            ids[0],
                            ids[-1],
                            len(ids),
                            total,
                            _pack_ids(ids),
                            bytes(links),
                            previous,
                            datetime.now(UTC).isoformat(),
                        ),
                    )
            except Exception as exc:  # a unique violation: another process chained these first
                self._tip = None
                if isinstance(exc, IntegrityError) or "unique" in str(exc).lower():
                    break
                raise
            chained += len(section)
            position = ids[-1]
            self._tip = Head(position, total, previous.hex(), block)
        return chained

    # ------------------------------------------------------------------------------ verifying
    def _blocks(self) -> Iterator[Any]:
        t = self.tables.table(TABLE)
        after = 0
        while True:
            rows = self.tables.query(
                f"SELECT block, first_id, last_id, n, total, ids, links, head FROM {t} WHERE block > ?"
                " ORDER BY block LIMIT 200",
                (after,),
            )
            if not rows:
                return
            yield from rows
            after = int(rows[-1]["block"])

    def _rows(self) -> Iterator[_Row]:
        """Every stored event from the start, through the log follower: on PostgreSQL a row whose
        lower id commits after a higher one is waited for, never taken for one deleted from a block
        chained meanwhile (a false alarm of :meth:`verify` on a live store)."""
        for section in self._new.batches(0, self.batch_size):
            yield from section

    def _section(self, after: int, limit: int) -> list[_Row]:
        """Up to ``limit`` stored events after position ``after``, in position order."""
        t = self.tables
        rows = t.query(
            f"SELECT {t.id_column} AS position, originator_id, originator_version, topic, state"
            f" FROM {t.events} WHERE {t.id_column} > ? ORDER BY {t.id_column} LIMIT ?",
            (after, limit),
        )
        # By name: SQLite's rows are sqlite3.Row, PostgreSQL's are dicts.
        return [
            _Row(r["position"], r["originator_id"], r["originator_version"], r["topic"], r["state"])
            for r in rows
        ]

    def _case_id(self, oid: Any) -> Any:
        """The id as the library shows it (a ``UUID`` for hex text), for findings."""
        if self._uuid_ids and isinstance(oid, str):
            with contextlib.suppress(ValueError):
                return UUID(oid)
        return oid

    def _row_link(self, previous: bytes, row: _Row) -> bytes:
        """:func:`link` of a row as read: the id hashed as the library's converted id would be, a
        ``UUID``'s 16 bytes (SQLite stores its 32-digit hex), otherwise a text-typed id's text."""
        oid = row.originator_id
        if isinstance(oid, UUID):
            oid_bytes = oid.bytes
        elif self._uuid_ids:
            oid_bytes = bytes.fromhex(oid) if len(oid) == 32 else UUID(oid).bytes
        else:
            oid_bytes = str(oid).encode()
        return _link(previous, row.id, row.originator_version, oid_bytes, row.topic, row.state)

    def verify(self, anchor: Head | None = None, progress: Callable[[int], None] | None = None) -> Report:
        """Recompute the chain from the store; the report names the FIRST disagreement."""
        report = Report(anchor=anchor)
        rows = self._rows()
        pending: _Row | None = next(rows, None)
        previous, count, expected_block = GENESIS, 0, 1
        last_position = 0

        def stop(position: int, kind: str, detail: str) -> Report:
            report.finding = Finding(position, kind, detail)
            report.checked = count
            report.head = Head(last_position, count, previous.hex())
            return report

        for block in self._blocks():
            number, n = int(block["block"]), int(block["n"])
            ids = _unpack_ids(bytes(block["ids"]))
            links = bytes(block["links"])
            if number != expected_block or len(ids) != n or len(links) != n * LINK_BYTES:
                return stop(
                    ids[0] if ids else last_position + 1,
                    "chain-tampered",
                    f"chain block {number} is malformed or out of sequence (expected block {expected_block})",
                )
            if ids[0] != int(block["first_id"]) or ids[-1] != int(block["last_id"]):
                return stop(
                    ids[0],
                    "chain-tampered",
                    f"chain block {number}: first/last ids disagree with its id list",
                )
            for i, expected_id in enumerate(ids):
                if pending is not None and pending.id < expected_id:
                    return stop(
                        pending.id,
                        "inserted",
                        f"position {pending.id} is in the store but not in the chain (a row was inserted)",
                    )
                if pending is None or pending.id > expected_id:
                    return stop(
                        expected_id,
                        "deleted",
                        f"position {expected_id} is in the chain but missing from the store"
                        " (a row was deleted)",
                    )
                current = self._row_link(previous, pending)
                if current[:LINK_BYTES] != links[i * LINK_BYTES : (i + 1) * LINK_BYTES]:
                    return stop(
                        expected_id,
                        "modified",
                        f"position {expected_id} (case {self._case_id(pending.originator_id)}"
                        f" v{pending.originator_version},"
                        f" {pending.topic}) differs from what was chained: modified or reordered",
                    )
                previous = current
                count += 1
                last_position = expected_id
                if anchor is not None and expected_id == anchor.position:
                    report.anchor_checked = True
                    if previous.hex() != anchor.head or count != anchor.count:
                        return stop(
                            expected_id,
                            "anchor-mismatch",
                            f"the recomputed chain at position {expected_id} ({count} events) does not match "
                            f"the anchored head ({anchor.count} events, {anchor.head[:16]}…): history up to "
                            f"here was rewritten together with the chain table",
                        )
                pending = next(rows, None)
            if previous != bytes(block["head"]) or count != int(block["total"]):
                return stop(
                    last_position,
                    "chain-tampered",
                    f"chain block {number}: its stored head or count does not match its links",
                )
            expected_block += 1
            if progress is not None:
                progress(count)
        report.checked = count
        report.head = Head(last_position, count, previous.hex(), expected_block - 1)
        if anchor is not None and not report.anchor_checked and anchor.position > 0:
            return stop(
                last_position,
                "anchor-mismatch",
                f"the anchored head is at position {anchor.position} ({anchor.count} events) but the chain "
                f"ends at {last_position} ({count} events): events or chain blocks were removed",
            )
        while pending is not None:
            if report.unchained == 0:
                report.notes.append(f"first unchained position: {pending.id}")
                first = pending.id
            report.unchained += 1
            pending = next(rows, None)
        if report.unchained:
            report.finding = Finding(
                first,
                "unchained",
                f"{report.unchained} event(s) from position {first} are not in the chain yet: recorded after "
                f"the last block (a running hub chains them within about 0.2 s) or inserted behind its back",
            )
        return report


def follower(recorder: Any, backlog_per_call: int = 50_000) -> Callable[[], int]:
    """For the chain follower process (``hub.adapters.store.chain_follower``): call it every poll to
    chain what was committed since the last call (never raises).

    Each call chains at most ``backlog_per_call`` unchained events, so a store that predates the
    chain is caught up over the first polls without one call running for minutes.
    """
    chain = AuditChain(recorder)

    def follow() -> int:
        try:
            return chain.extend(limit=backlog_per_call)
        except Exception:  # the batch is committed; the next call (or a restart) chains it
            log.exception("audit chain: could not extend; will retry after the next batch")
            return 0

    return follow


def _pack_ids(ids: list[int]) -> bytes:
    return struct.pack(f"<{len(ids)}q", *ids)


def _unpack_ids(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 8}q", data))
