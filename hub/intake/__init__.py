"""Intake (接入): JetStream ``CITY`` → validate → cases → one store transaction → ack.

The exactly-once argument, step by step:

1. A durable pull consumer hands out a batch; nothing is acknowledged yet.
2. Every event is validated; each valid one is decided against its case in memory.
3. All new case events of the batch are recorded in **one** store transaction.
4. Only then are the messages acknowledged. A crash before the ack makes JetStream redeliver;
   the case recognises the event id it already holds (idempotent receiver) and the redelivered
   message is simply acknowledged. Publishers' retries are deduplicated earlier still, by the
   stream's ``Nats-Msg-Id`` window.

Bad input never blocks the stream and is never dropped: an invalid event is copied to
``CITY_DLQ`` with headers naming the reason, the field, the original subject and sequence, and
only then terminated. An event its case cannot take *yet* (its report is still on the way, or an
earlier step is) is negatively acknowledged with a growing delay and dead-lettered only when the
retries run out. ``hub dlq replay`` re-drives dead letters; the dead letter is deleted only once
its replay has been applied or dead-lettered again.

Why a hand-written pull: nats-py's ``fetch()`` costs ≈ 40 µs a message; a pull request on our own
inbox, its messages taken straight from nats-py's parser, is several times cheaper, and lets the
next batch stream in while the current one is being committed by the writer (a process of its own
fed over a pipe without waiting, ``ops/writer.py``; or a thread when the ledger is in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    MsgAlreadyAckdError,
    NotJSMessageError,
    OutboundBufferLimitError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import BadRequestError, NotFoundError

from hub import messages as m
from hub.adapters.process import GC_THRESHOLDS as GC_THRESHOLDS
from hub.adapters.process import tune_gc as tune_gc
from hub.application.outcome import Outcome, Verdict
from hub.application.ports import Ledger

log = logging.getLogger(__name__)

DURABLE = "intake"
"""The legacy durable (4-token subjects, and everything not partitioned); partition *k*'s durable
is ``intake-p<k>`` (ADR 0006)."""
PARTITIONS = m.PARTITIONS
PARTITION_TRANSFORM = SubjectTransform(
    src=f"{m.SUBJECT_PREFIX}.*.*.*.*",
    dest=f"{m.SUBJECT_PREFIX}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}"
    f".{{{{partition({PARTITIONS},4)}}}}",
)
"""``city.d.k.a.<casekey>`` is stored as ``city.d.k.a.<partition>``: the server, not each publisher,
computes the partition (nats-server ≥ 2.10 stream subject transform), and the key itself is not
kept. Why drop it: with the key every case is a subject of its own, and JetStream keeps state per
subject and scans them for wildcard filters — measured ≈ 22 µs of server CPU an event with the key
kept, against ≈ 15 without, and per-subject memory that grows with every case ever seen."""
LEGACY_FILTERS = tuple(f"{m.SUBJECT_PREFIX}.{tail}" for tail in ("*", "*.*", "*.*.*", "*.*.*.*.*.>"))
"""What the legacy durable takes: every stored subject except the partitioned five-token ones, so
4-token events keep working and malformed subjects still reach the intake and are dead-lettered.
(A 5-token subject stored before the transform existed, and not ending in a partition number,
would match no durable: the hub never published one — the 5-token form came with the transform.)"""
PIPELINE = 4
"""Batches handed to the writer before the oldest is settled: its recorder commits some while the
writer decides the next one on top of them (ops/writer.py ``WINDOW``), and one more waits in the
pipe, so that neither idles while this loop acks (2 → 4 measured ≈ +15 % with the recorder)."""
T = TypeVar("T")


# --------------------------------------------------------------------------- streams
DEFAULT_MAX_AGE_S = 30 * 86400.0
"""How long ``CITY`` and ``CITY_DLQ`` keep a message unless configured: 30 days. Why bounded: the
raw stream holds personal data (names, phone numbers, ID numbers in clear) that erasure seals in
the event store; the stream is a buffer in front of the store, not the record, so it must forget
within a bounded time. Why 30 days: it outlasts any outage the intake catches up from, and leaves
an operator a month to replay dead letters (``hub dlq replay``)."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The hub's streams; replicas 3 on a cluster (design §9), 1 on the embedded server.

    Retention (``max_age_s``, ``max_bytes``; ``HUB_STREAM_MAX_AGE`` / ``HUB_STREAM_MAX_BYTES``)
    applies to ``CITY`` and ``CITY_DLQ`` alike. The rule at every start (:func:`ensure_streams`):
    a configured value is applied (the configuration is the truth; change it there); an unset one
    keeps what the stream has, so a limit an operator set on the stream (``nats stream edit``)
    survives restarts — except an unbounded age, which becomes :data:`DEFAULT_MAX_AGE_S` (a new
    stream, or one an earlier version reset to "keep forever"). To keep messages forever, say so:
    ``HUB_STREAM_MAX_AGE=unlimited``.
    """

    replicas: int = 1
    duplicate_window_s: float = 120.0
    max_age_s: float | None = None
    """Seconds a message is kept; 0 = unbounded; ``None`` = not configured (see above)."""
    max_bytes: int | None = None
    """Bytes each stream may hold, oldest discarded first; -1 = unbounded; ``None`` = not configured
    (the stream's own, unbounded for a new one)."""

    def __post_init__(self) -> None:
        if self.max_age_s is not None and 0 < self.max_age_s < self.duplicate_window_s:
            raise ValueError(
                f"stream max age {self.max_age_s:g}s is shorter than the duplicate window "
                f"({self.duplicate_window_s:g}s); JetStream refuses that: keep messages longer"
            )

    def retention(self, current: StreamConfig | None = None) -> tuple[float, int]:
        """(max_age, max_bytes) for a stream whose configuration is ``current`` (``None``: new)."""
        age = self.max_age_s
        if age is None:
            kept = (current.max_age or 0.0) if current is not None else 0.0
            age = kept if kept > 0 else DEFAULT_MAX_AGE_S
        size = self.max_bytes
        if size is None:
            size = current.max_bytes if current is not None and current.max_bytes is not None else -1
        return age, size


def city_stream_config(s: StreamSettings, current: StreamConfig | None = None) -> StreamConfig:
    max_age, max_bytes = s.retention(current)
    return StreamConfig(
        name=m.STREAM,
        description="citybrain-hub canonical department events (city.<department>.<kind>.<action>)",
        subjects=[f"{m.SUBJECT_PREFIX}.>"],
        subject_transform=PARTITION_TRANSFORM,
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        duplicate_window=s.duplicate_window_s,
        max_age=max_age,
        max_bytes=max_bytes,
        num_replicas=s.replicas,
    )


def dlq_stream_config(s: StreamSettings, current: StreamConfig | None = None) -> StreamConfig:
    max_age, max_bytes = s.retention(current)
    return StreamConfig(
        name=m.DLQ_STREAM,
        description="citybrain-hub dead letters: events the hub could not apply, with the reason in headers",
        subjects=[f"{m.DLQ_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=s.duplicate_window_s,
        # Stated always: left unset they read back as 0 / -1 and every start of every worker would
        # "update" the stream.
        max_age=max_age,
        max_bytes=max_bytes,
        num_replicas=s.replicas,
    )


async def ensure_streams(js: JetStreamContext, settings: StreamSettings | None = None) -> None:
    """Create the streams, or bring an existing one to the wanted configuration (idempotent).

    An existing ``CITY`` stream of an earlier version gains the partition transform here; what it
    stored before keeps its subjects and is taken by the legacy durable. Retention follows the
    rule of :class:`StreamSettings`: configured values are applied, unset ones keep the stream's."""
    settings = settings or StreamSettings()
    for build in (city_stream_config, dlq_stream_config):
        name = build(settings).name
        try:
            info = await js.stream_info(name)  # type: ignore[arg-type]
        except NotFoundError:
            config = build(settings)
            await js.add_stream(config)
            log.info("created stream %s (%s)", name, _retention_text(config))
            continue
        current = info.config
        config = build(settings, current)
        if (
            current.subjects != config.subjects
            or current.subject_transform != config.subject_transform
            or current.duplicate_window != config.duplicate_window
            or current.max_age != config.max_age
            or current.max_bytes != config.max_bytes
            or current.num_replicas != config.num_replicas
            or current.description != config.description
        ):
            await js.update_stream(config)
            log.info("updated stream %s (%s)", name, _retention_text(config))


def _retention_text(config: StreamConfig) -> str:
    age = f"messages kept {config.max_age / 86400:g} days" if config.max_age else "messages kept forever"
    size = f"at most {config.max_bytes} bytes" if (config.max_bytes or -1) > 0 else "no size limit"
    return f"{age}, {size}"


# --------------------------------------------------------------------------- settings + stats
@dataclass(frozen=True, slots=True)
class IntakeSettings:
    batch_size: int = 500
    """Messages per pull request, decided and saved in one transaction."""
    linger_s: float = 0.02
    """How long to wait for a batch to fill once its first message arrived (latency bound)."""
    expires_s: float = 1.0
    """Lifetime of one pull request on the server."""
    retry_delays_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    """Backoff for events their case cannot take yet; when exhausted they are dead-lettered."""
    ack_wait_s: float = 30.0
    """How long JetStream waits for an ack before redelivering (e.g. after an intake crash)."""
    max_ack_pending: int = 20_000
    """Per durable."""
    durable: str = DURABLE
    """Name of the legacy durable, and the stem of the partitions' (``<durable>-p<k>``)."""
    worker: int = 0
    """This worker's number, 0 ≤ worker < workers: it pulls the partitions k ≡ worker (mod workers);
    worker 0 also pulls the legacy durable. ``hub up`` is worker 0 of 1 (every partition)."""
    workers: int = 1
    tune_gc: bool = True
    """Freeze the startup heap and make cyclic GC rarer in this process (see :func:`tune_gc`)."""
    direct_delivery: bool = True
    """Take the intake's messages straight from nats-py's parser (see :func:`_route_directly`)."""

    def __post_init__(self) -> None:
        # After a crash the dead intake's unacked events come back only after ack_wait, while later
        # events of the same cases arrive at once and wait for them: their retries must outlast it.
        budget = sum(self.retry_delays_s)
        if budget < 2 * self.ack_wait_s:
            raise ValueError(
                f"retry delays add up to {budget:g}s but must be at least twice the ack wait "
                f"({self.ack_wait_s:g}s), or events waiting for a redelivered predecessor after a "
                f"crash are dead-lettered too early; lengthen the delays or shorten the ack wait"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if not 1 <= self.workers <= PARTITIONS:
            raise ValueError(
                f"--workers must be between 1 and {PARTITIONS} (the stream's case partitions), "
                f"not {self.workers}: more workers than partitions would have nothing to do"
            )
        if not 0 <= self.worker < self.workers:
            raise ValueError(
                f"--worker must be between 0 and {self.workers - 1} for {self.workers} workers, "
                f"not {self.worker} (workers are numbered from 0)"
            )

    @property
    def partitions(self) -> tuple[int, ...]:
        """The partitions this worker pulls (see :func:`assigned_partitions`)."""
        return assigned_partitions(self.worker, self.workers)

    def consumers(self) -> list[tuple[str, tuple[str, ...]]]:
        """(durable, filter subjects) of every consumer this worker pulls from, legacy first."""
        plan = [(self.durable, LEGACY_FILTERS)] if self.worker == 0 else []
        for k in self.partitions:
            plan.append((partition_durable(self.durable, k), (partition_filter(k),)))
        return plan


def assigned_partitions(worker: int, workers: int, partitions: int = PARTITIONS) -> tuple[int, ...]:
    """Worker ``worker`` of ``workers`` owns the partitions k ≡ worker (mod workers).

    Why a fixed rule and not a negotiation: the partitions' durables keep their positions whoever
    pulls them, so scaling from 1 to 3 workers (restart each with its number) moves no position
    and loses nothing; each worker knows its share from two numbers."""
    return tuple(k for k in range(partitions) if k % workers == worker)


def partition_durable(stem: str, k: int) -> str:
    return f"{stem}-p{k}"


def partition_filter(k: int) -> str:
    return f"{m.SUBJECT_PREFIX}.*.*.*.{k}"


@dataclass
class IntakeStats:
    """Counters an operator watches (exported on ``/metrics``)."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    batches: int = 0
    replays_cleared: int = 0
    last_batch_seconds: float = 0.0
    batch_seconds_total: float = 0.0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


async def ensure_consumer(js: JetStreamContext, settings: IntakeSettings) -> None:
    """Create this worker's durables, or update existing ones in place (positions are kept).

    An earlier version's single durable ``intake`` (filter ``city.>``) becomes the legacy durable
    here: re-filtered, it keeps its position and takes what it had not yet consumed."""
    for durable, filters in settings.consumers():
        config = ConsumerConfig(
            durable_name=durable,
            description="citybrain-hub intake: applies canonical events to the event store",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_s,
            max_deliver=-1,  # the intake counts deliveries itself and dead-letters with a reason
            max_ack_pending=settings.max_ack_pending,
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=list(filters) if len(filters) > 1 else None,
        )
        await js.add_consumer(m.STREAM, config)  # creates, or updates an existing durable's settings


# --------------------------------------------------------------------------- the intake
@dataclass(slots=True)
class _Prepared:
    msgs: list[Msg]
    valid_msgs: list[Msg]
    valids: list[m.Valid]
    letters: list[_Letter]
    started: float


@dataclass(slots=True, eq=False)
class _Pull:
    """One durable this worker pulls from: its own inbox, and how much of its request is still due."""

    durable: str
    next_subject: str
    """``$JS.API.CONSUMER.MSG.NEXT.CITY.<durable>``"""
    inbox: str = ""
    outstanding: int = 0
    deadline: float = 0.0


@dataclass(slots=True)
class _Letter:
    msg: Msg
    reason: m.Reason
    field: str
    detail: str


_COMMAND_SUBJECT = f"{m.SUBJECT_PREFIX}.{m.COMMAND_DEPARTMENT}."
"""Operator commands' subjects: the only events whose already-done answer someone waits for."""

_LATE_REASONS: dict[Verdict, tuple[m.Reason, str]] = {
    Verdict.NOT_FOUND: (m.Reason.NOT_FOUND, "caseref"),
    Verdict.NOT_PERMITTED_YET: (m.Reason.NOT_PERMITTED, "department"),
}
"""What an event its case could not take *yet* is dead-lettered as once its retries ran out, and
the field named when the outcome names none (the rest: ``refused``, at ``type``)."""


RawHandler = Callable[[int, bytes, bytes, bytes, "bytes | None"], None]


def _route_directly(nc: NATS, sub: Any, handler: RawHandler) -> Callable[[], None] | None:
    """Deliver ``sub``'s messages to ``handler`` straight from nats-py's protocol parser.

    Why: nats-py hands every message through a coroutine that parses its headers, a ``Msg``, an
    ``asyncio.Queue`` and a per-subscription task that awaits the callback: ≈ 11 µs a message
    with the ack, on the event loop the intake shares with validation. The intake's own inbox
    needs none of it (its own buffer is the queue). Other subscriptions of the client are
    untouched. This relies on nats-py's internal ``Client._process_msg(sid, subject, reply,
    data, headers)`` (pinned < 3); when it is missing the subscription's callback is used as
    before. Returns the function that removes the route (before unsubscribing).
    """
    process = getattr(nc, "_process_msg", None)
    sid = getattr(sub, "_id", None)
    if process is None or not isinstance(sid, int):
        return None
    routes: dict[int, RawHandler] | None = getattr(nc, "_hub_direct_routes", None)
    if routes is None:
        table: dict[int, RawHandler] = {}

        async def process_msg(
            sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
        ) -> None:
            direct = table.get(sid)
            if direct is None:
                await process(sid, subject, reply, data, headers)
                return
            stats = nc.stats
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            direct(sid, subject, reply, data, headers)

        nc._process_msg = process_msg  # type: ignore[method-assign]
        nc._hub_direct_routes = routes = table  # type: ignore[attr-defined]
    routes[sid] = handler
    return lambda: routes.pop(sid, None) and None


_ONLY_MSG_ID = b"NATS/1.0\r\nNats-Msg-Id:"


def _parse_headers(raw: bytes) -> dict[str, str]:
    """``NATS/1.0[ status]\r\nName: value\r\n…\r\n\r\n`` → {name: value} (as nats-py does;
    a status line becomes ``Status``/``Description``).

    Nearly every event carries one header, its ``Nats-Msg-Id``: that block is read without
    splitting (≈ 1.5 µs an event less on the intake's event loop)."""
    if raw.startswith(_ONLY_MSG_ID) and raw.count(b"\r\n") == 3 and raw.endswith(b"\r\n\r\n"):
        return {"Nats-Msg-Id": raw[len(_ONLY_MSG_ID) : -4].decode("utf-8", "replace").strip()}
    lines = raw.decode("utf-8", "replace").split("\r\n")
    out: dict[str, str] = {}
    first = lines[0]
    if len(first) > 8 and first[8] == " ":
        code, _, description = first[9:].partition(" ")
        if code.isdigit():
            out["Status"] = code
        if description:
            out["Description"] = description
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.strip()
        if sep and name and " " not in name and "\t" not in name:
            out[name] = value.strip()
    return out


async def ack_all(nc: NATS, msgs: Sequence[Msg]) -> None:
    """Acknowledge each message, as ``Msg.ack()`` does, with one buffered write for all of them.

    Why: ``Msg.ack()`` is two coroutines and a formatted command per message (≈ 3 µs each on the
    event loop the intake shares with validation); a batch of 500 acks is one ``PUB <reply> 0``
    per message joined into one command. Still one ack per message (``AckExplicit``): a batch
    mixes acks with naks and terms, which an ``AckAll`` of the last message would swallow. The
    same guards as ``publish`` (closed, draining, full reconnect buffer) raise the same errors, so
    the caller's failure path is unchanged; relies on nats-py's ``Client._send_command`` (pinned
    < 3) and falls back to ``Msg.ack()`` without it.
    """
    if not msgs:
        return
    send = getattr(nc, "_send_command", None)
    if send is None:
        for msg in msgs:
            await msg.ack()
        return
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    for msg in msgs:
        if not msg.reply:
            raise NotJSMessageError
        if msg._ackd:
            raise MsgAlreadyAckdError(msg)
    command = b"".join([b"PUB " + msg.reply.encode() + b" 0\r\n\r\n" for msg in msgs])
    if not nc.is_connected:
        limit = nc._max_pending_size
        if limit <= 0 or len(command) + nc._pending_data_size > limit:
            raise OutboundBufferLimitError
    for msg in msgs:
        msg._ackd = True
    nc.stats["out_msgs"] += len(msgs)
    await send(command)
    flush_queue = nc._flush_queue
    if flush_queue is not None and flush_queue.empty():
        await nc._flush_pending()


class Intake:
    """The durable consumer that turns the ``CITY`` stream into stored case history."""

    def __init__(
        self,
        nc: NATS,
        ledger: Ledger,
        catalogue: m.Catalogue,
        settings: IntakeSettings | None = None,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10)
        self.ledger = ledger
        self.catalogue = catalogue
        self.settings = settings or IntakeSettings()
        self.stats = IntakeStats()
        self._buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._pulls = [
            _Pull(durable, f"$JS.API.CONSUMER.MSG.NEXT.{m.STREAM}.{durable}")
            for durable, _ in self.settings.consumers()
        ]
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._stopping = asyncio.Event()
        self.on_committed: Callable[[], None] | None = None
        """Called after each batch is recorded (e.g. to wake an in-process projector)."""
        self.store_ok = True
        """False from a batch the store failed to record until one is recorded (readiness)."""
        self.store_error = ""
        self._in_store = 0
        self._store_busy_since: float | None = None

    @property
    def durables(self) -> list[str]:
        """The durable consumers this worker pulls from (its partitions, and the legacy one on 0)."""
        return [pull.durable for pull in self._pulls]

    # ------------------------------------------------------------------ receiving
    def _on_raw(
        self, pull: _Pull, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        """A message of one pull's inbox as nats-py's parser hands it over (direct delivery)."""
        if not reply:
            # Only the server's status messages come without a reply subject here (408 request
            # expired, 409 leadership change / limits): the pull request has ended.
            pull.outstanding = 0
            self._arrived.set()
            return
        self._receive(
            pull,
            Msg(
                self.nc,
                # The server stores any bytes as a subject: one that is not UTF-8 must not
                # end the read loop (it used to wedge the connection); it is dead-lettered.
                subject.decode("utf-8", "replace"),
                reply.decode(),
                data,
                _parse_headers(headers) if headers else None,
                _sid=sid,
            ),
        )

    def _receive(self, pull: _Pull, msg: Msg) -> None:
        if msg.headers and "Status" in msg.headers and not msg.reply:
            # 408 request expired, 409 leadership change / limits: the pull request has ended.
            pull.outstanding = 0
            self._arrived.set()
            return
        pull.outstanding -= 1
        buffered = len(self._buffer) + 1
        self._buffer.append(msg)
        # Wake the collector only when it matters: first message, a full batch, request fulfilled.
        if buffered == 1 or buffered >= self.settings.batch_size or pull.outstanding <= 0:
            self._arrived.set()

    async def _request(self, pull: _Pull) -> None:
        settings = self.settings
        body = orjson.dumps({"batch": settings.batch_size, "expires": int(settings.expires_s * 1e9)})
        await self.nc.publish(pull.next_subject, body, reply=pull.inbox)
        pull.outstanding = settings.batch_size
        pull.deadline = time.monotonic() + settings.expires_s + 0.5

    async def _request_due(self) -> None:
        """A new pull request to every durable whose last one is fulfilled or expired, unless a
        batch is already waiting: with each request at most one batch, the buffer stays below
        (1 + durables) batches however the load is spread over the partitions."""
        if len(self._buffer) >= self.settings.batch_size:
            return
        now = time.monotonic()
        for pull in self._pulls:
            if pull.outstanding <= 0 or now > pull.deadline:
                await self._request(pull)

    def _awaiting(self) -> bool:
        return any(pull.outstanding > 0 for pull in self._pulls)

    async def _wait_arrival(self, timeout: float, commit: asyncio.Future[Any] | None = None) -> None:
        """Sleep until messages arrive, the in-flight commit completes, or ``timeout``."""
        self._arrived.clear()
        if commit is not None and commit.done():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._arrived.wait()

    async def _collect(self, commit: asyncio.Future[Any] | None = None) -> list[Msg]:
        """Up to one batch: wait for a first message, then linger briefly for the batch to fill.

        Returns early (possibly empty) when the previous batch's ``commit`` completes, so that its
        acks never wait for the next batch.
        """
        settings = self.settings
        while not self._buffer:
            if self._stopping.is_set() or (commit is not None and commit.done()):
                return []
            await self._request_due()
            await self._wait_arrival(settings.expires_s, commit)
        if len(self._buffer) < settings.batch_size and self._awaiting():
            await self._wait_arrival(settings.linger_s)
        count = min(len(self._buffer), settings.batch_size)
        batch = [self._buffer.popleft() for _ in range(count)]
        if not self._stopping.is_set():
            await self._request_due()  # the next batch streams in while this one is committed
        return batch

    # ------------------------------------------------------------------ processing
    def _prepare(self, msgs: Sequence[Msg]) -> _Prepared:
        """Validate a batch (on the event loop, while the writer may still commit the previous one)."""
        prepared = _Prepared(list(msgs), [], [], [], time.perf_counter())
        catalogue = self.catalogue
        for msg in msgs:
            result = m.validate(msg.data, catalogue, msg.subject)
            if type(result) is m.Valid:
                prepared.valid_msgs.append(msg)
                prepared.valids.append(result)
            else:
                assert isinstance(result, m.Invalid)
                prepared.letters.append(_Letter(msg, result.reason, result.field, result.detail))
        return prepared

    def _apply(self, prepared: _Prepared) -> asyncio.Future[list[Outcome]]:
        """Decide and record on the single writer thread; batches are applied in submission order."""
        loop = asyncio.get_running_loop()
        if not prepared.valids:
            done: asyncio.Future[list[Outcome]] = loop.create_future()
            done.set_result([])
            return done
        submit = getattr(self.ledger, "submit_batch", None)
        commit: asyncio.Future[list[Outcome]]
        if submit is not None:  # a writer process: pipelined over its pipe, no thread in between
            commit = submit(prepared.valids)
        else:
            commit = loop.run_in_executor(self._writer, self.ledger.apply_batch, prepared.valids)
        if self._in_store == 0:
            self._store_busy_since = time.monotonic()
        self._in_store += 1
        commit.add_done_callback(self._committed)
        return commit

    def _committed(self, _: asyncio.Future[Any]) -> None:
        self._in_store -= 1
        self._store_busy_since = time.monotonic() if self._in_store else None
        self._arrived.set()  # wakes a collector waiting for messages

    def store_healthy(self, stall_s: float = 5.0) -> bool:
        """Readiness of the store as the intake sees it: the last batch was recorded, and no commit
        has been waiting longer than ``stall_s`` (an unreachable PostgreSQL blocks, retrying, for
        minutes before it fails: a failure alone would report the outage far too late)."""
        since = self._store_busy_since
        return self.store_ok and (since is None or time.monotonic() - since <= stall_s)

    async def _settle(self, prepared: _Prepared, outcomes: list[Outcome]) -> None:
        """After the commit: ack what is stored, nak what must wait, dead-letter what cannot apply."""
        acks: list[Msg] = []
        retries: list[tuple[Msg, float]] = []
        done: list[tuple[Msg, str]] = []
        letters = prepared.letters
        delays = self.settings.retry_delays_s
        for msg, outcome in zip(prepared.valid_msgs, outcomes, strict=True):
            verdict = outcome.verdict
            if verdict is Verdict.APPLIED:
                self.stats.applied += 1
                acks.append(msg)
            elif verdict is Verdict.DUPLICATE:
                self.stats.duplicates += 1
                acks.append(msg)
                if outcome.detail and msg.subject.startswith(_COMMAND_SUBJECT):
                    done.append((msg, outcome.detail))
            elif verdict is Verdict.FAILED:
                # Isolated by the store writer: this event alone fails whenever it is decided, so
                # retrying cannot help; its neighbours are recorded (CaseLedger.decide_isolating).
                letters.append(_Letter(msg, m.Reason.STORE_FAILED, outcome.field, outcome.detail))
            elif verdict is Verdict.NOT_PERMITTED:
                # A department acting as someone it is not (hub.domain.authority): never permitted,
                # so not retried; the case recorded nothing, the batch's other events are stored.
                letters.append(_Letter(msg, m.Reason.NOT_PERMITTED, outcome.field, outcome.detail))
            else:
                attempt = msg.metadata.num_delivered
                if attempt <= len(delays):
                    retries.append((msg, delays[attempt - 1]))
                else:
                    reason, field = _LATE_REASONS.get(verdict, (m.Reason.REFUSED, "type"))
                    detail = f"{outcome.detail} (after {attempt} attempts)"
                    letters.append(_Letter(msg, reason, outcome.field or field, detail))

        if outcomes and self.on_committed is not None:
            self.on_committed()
        await self._dead_letter(letters)
        await ack_all(self.nc, acks)
        await self._tell_done(done)
        for msg, delay in retries:
            await msg.nak(delay=delay)
        self.stats.retried += len(retries)
        if any(msg.headers for msg in prepared.msgs):
            await self._clear_replayed([*acks, *(letter.msg for letter in letters)])
        self.stats.received += len(prepared.msgs)
        self.stats.batches += 1
        self.stats.last_batch_seconds = time.perf_counter() - prepared.started
        self.stats.batch_seconds_total += self.stats.last_batch_seconds

    async def _tell_done(self, done: Sequence[tuple[Msg, str]]) -> None:
        """Tell a waiting mutation that its operator command was already done (AlreadyDone): it is
        acked as a duplicate, so neither the read model nor the dead letters would ever show it,
        and the operator waited for the mutation's timeout. Best effort (core NATS, not stored):
        the mutation still times out if the notice is lost."""
        for msg, detail in done:
            subject = m.done_subject_for(m.public_subject(msg.subject, msg.data))
            event_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            headers = {m.H_MSG_ID: event_id, m.H_DETAIL: m.printable(detail, 2000)}
            with contextlib.suppress(Exception):  # a lost notice costs the waiting client its timeout only
                await self.nc.publish(subject, b"", headers=headers)

    async def _dead_letter(self, letters: Sequence[_Letter]) -> None:
        """Copy each letter to CITY_DLQ (stored, acknowledged) and only then terminate the original."""
        if not letters:
            return
        now = datetime.now(UTC).isoformat()
        publishes = []
        for letter in letters:
            meta = letter.msg.metadata
            original_id = (letter.msg.headers or {}).get("Nats-Msg-Id", "")
            # Filed under the subject as published (the case key back in place of the server's
            # partition token): a replay is then partitioned again by the stream, and a publisher
            # waiting for its event's fate (GraphQL mutations) listens on dlq.<its own subject>.
            subject = m.public_subject(letter.msg.subject, letter.msg.data)
            headers = {
                m.H_REASON: letter.reason.value,
                m.H_FIELD: letter.field,
                m.H_DETAIL: letter.detail[:2000],
                m.H_SUBJECT: subject,
                m.H_SEQ: str(meta.sequence.stream),
                m.H_DELIVERIES: str(meta.num_delivered),
                m.H_MSG_ID: original_id,
                m.H_TIME: now,
                # A redelivery after a crash between the copy and the term is deduplicated here.
                "Nats-Msg-Id": f"dlq-{meta.sequence.stream}-{meta.num_delivered}",
            }
            replay_of = (letter.msg.headers or {}).get(m.H_REPLAY_OF)
            if replay_of:
                headers[m.H_REPLAY_OF] = replay_of
            publishes.append(
                self.js.publish(
                    m.dlq_subject_for(subject),
                    letter.msg.data,
                    headers=headers,
                    stream=m.DLQ_STREAM,
                )
            )
        await asyncio.gather(*publishes)
        for letter in letters:
            await letter.msg.term()
            self.stats.dead_lettered += 1
            key = letter.reason.value
            self.stats.dead_letter_reasons[key] = self.stats.dead_letter_reasons.get(key, 0) + 1
            log.warning(
                "dead-lettered %s seq %s: %s at %s: %s",
                letter.msg.subject,
                letter.msg.metadata.sequence.stream,
                letter.reason.value,
                letter.field or "-",
                letter.detail,
                extra={
                    "subject": letter.msg.subject,
                    "stream_seq": letter.msg.metadata.sequence.stream,
                    "event_id": (letter.msg.headers or {}).get("Nats-Msg-Id", ""),
                    "reason": letter.reason.value,
                    "field": letter.field,
                },
            )

    async def _clear_replayed(self, done: Sequence[Msg]) -> None:
        """A replayed dead letter is removed once its replay was applied or dead-lettered again."""
        for msg in done:
            replay_of = (msg.headers or {}).get(m.H_REPLAY_OF)
            if not (replay_of and replay_of.isascii() and replay_of.isdigit()):  # forged: not ours
                continue
            with contextlib.suppress(NotFoundError, BadRequestError):
                await self.js.delete_msg(m.DLQ_STREAM, int(replay_of))
                self.stats.replays_cleared += 1

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Consume until :meth:`stop`; an infrastructure failure backs off and retries the batch."""
        await ensure_consumer(self.js, self.settings)
        if self.settings.tune_gc:
            tune_gc()
        subs: list[Any] = []
        unroutes: list[Callable[[], None]] = []
        for pull in self._pulls:
            pull.inbox = self.nc.new_inbox()

            async def on_msg(msg: Msg, pull: _Pull = pull) -> None:
                self._receive(pull, msg)

            sub = await self.nc.subscribe(pull.inbox, cb=on_msg, pending_msgs_limit=200_000)
            subs.append(sub)
            if self.settings.direct_delivery:
                unroute = _route_directly(self.nc, sub, functools.partial(self._on_raw, pull))
                if unroute is not None:
                    unroutes.append(unroute)
        log.info(
            "intake worker %d of %d consuming %s with durables %s",
            self.settings.worker, self.settings.workers, m.STREAM, ", ".join(self.durables),
        )  # fmt: skip
        # Up to PIPELINE batches are with the writer at once (it applies them in order): while it
        # records one, the next is already pulled and validated, and the previous one is acked.
        pending: deque[tuple[_Prepared, asyncio.Future[list[Outcome]]]] = deque()
        try:
            while not self._stopping.is_set() or pending:
                while pending and pending[0][1].done():
                    await self._finish(*pending.popleft())
                if self._stopping.is_set() or len(pending) >= PIPELINE:
                    if pending:
                        await self._finish(*pending.popleft())
                    continue
                batch = await self._collect(pending[0][1] if pending else None)
                if batch:
                    prepared = self._prepare(batch)
                    pending.append((prepared, self._apply(prepared)))
        finally:
            for unroute in unroutes:
                unroute()
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            # Not waiting: a blocking call on that thread (the deadline watcher's) may wait for this
            # very loop, which would then never answer it; the ledger's close fails it instead.
            self._writer.shutdown(wait=False, cancel_futures=True)
            if self.settings.tune_gc:
                # Give the frozen heap back to the collector, so native extensions (DuckDB's types)
                # are released at exit instead of reported as leaked.
                gc.unfreeze()

    async def _finish(self, prepared: _Prepared, commit: asyncio.Future[list[Outcome]]) -> None:
        try:
            outcomes = await commit
        except Exception as exc:
            # The store failed (or the writer died): nothing of the batch is acked, so all of it is
            # redelivered after ack_wait; readiness reports the store down until a batch commits.
            self.store_ok, self.store_error = False, f"{exc.__class__.__name__}: {exc}"
            log.exception("batch of %d not recorded; it will be redelivered", len(prepared.msgs))
            await asyncio.sleep(1.0)
            return
        self.store_ok, self.store_error = True, ""
        try:
            await self._settle(prepared, outcomes)
        except Exception:
            # NATS failed while acking: what was not acked is redelivered and found a duplicate.
            log.exception("batch of %d failed; it will be redelivered", len(prepared.msgs))
            await asyncio.sleep(1.0)

    async def on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the store-writer thread, between batches: the ledger has one writer."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def stop(self) -> None:
        self._stopping.set()
        self._arrived.set()


# --------------------------------------------------------------------------- dead letters
@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of CITY_DLQ as operators see it (``hub dlq list``)."""

    seq: int
    time: str
    reason: str
    field: str
    detail: str
    subject: str
    stream_seq: int
    deliveries: int
    msg_id: str
    replay_of: str
    data: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "reason": self.reason,
            "field": self.field,
            "detail": self.detail,
            "subject": self.subject,
            "stream_seq": self.stream_seq,
            "deliveries": self.deliveries,
            "msg_id": self.msg_id,
            "replay_of": self.replay_of,
            "data": self.data.decode("utf-8", errors="replace"),
        }


async def read_dead_letters(js: JetStreamContext, reason: str | None = None) -> list[DeadLetter]:
    """Every dead letter currently in CITY_DLQ (optionally of one reason), oldest first."""
    info = await js.stream_info(m.DLQ_STREAM)
    if info.state.messages == 0:
        return []
    letters: list[DeadLetter] = []
    sub = await js.subscribe(
        f"{m.DLQ_PREFIX}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL, stream=m.DLQ_STREAM
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except NatsTimeoutError:
                break
            h = msg.headers or {}
            letter = DeadLetter(
                seq=msg.metadata.sequence.stream,
                time=h.get(m.H_TIME, ""),
                reason=h.get(m.H_REASON, ""),
                field=h.get(m.H_FIELD, ""),
                detail=h.get(m.H_DETAIL, ""),
                subject=h.get(m.H_SUBJECT, msg.subject.removeprefix(f"{m.DLQ_PREFIX}.")),
                stream_seq=int(h.get(m.H_SEQ, "0") or 0),
                deliveries=int(h.get(m.H_DELIVERIES, "0") or 0),
                msg_id=h.get(m.H_MSG_ID, ""),
                replay_of=h.get(m.H_REPLAY_OF, ""),
                data=msg.data,
            )
            if reason is None or letter.reason == reason:
                letters.append(letter)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return letters


async def replay_dead_letters(js: JetStreamContext, reason: str | None = None) -> list[DeadLetter]:
    """Re-drive dead letters onto their original subjects after the cause was fixed.

    Each replay carries a fresh ``Nats-Msg-Id`` (the original id may still be inside the stream's
    duplicate window) derived from the dead letter's sequence, so running replay twice publishes
    once; the case's idempotent receiver protects against double application regardless.
    """
    letters = await read_dead_letters(js, reason)
    await asyncio.gather(
        *(
            js.publish(
                letter.subject,
                letter.data,
                headers={
                    "Nats-Msg-Id": f"replay-{letter.seq}",
                    m.H_REPLAY_OF: str(letter.seq),
                },
                stream=m.STREAM,
            )
            for letter in letters
        )
    )
    return letters
