"""The intake's consumer (消费者): pull a batch, validate it, record it in one transaction, answer it.

Why this shape (the exactly-once argument is in :mod:`hub.intake`): the loop keeps up to
:data:`PIPELINE` batches with the store writer at once, so that pulling and validating the next
batch, recording the current one and acknowledging the previous one overlap instead of taking
turns. It pulls with its own requests on its own inboxes, messages taken straight from nats-py's
parser and acknowledged in one buffered write (:mod:`hub.adapters.nats`): nats-py's ``fetch()``
costs ≈ 40 µs a message, several times this loop's whole budget on the shared event loop.

:func:`ensure_consumer` (this worker's durables on the server) sits here rather than in
:mod:`~hub.intake.topology`: it reads the worker's settings, which are built on topology's rules,
and topology must not import them back.
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
from typing import Any, TypeVar

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError

from hub import messages as m
from hub.adapters.nats import ack_all, parse_headers, route_directly
from hub.adapters.process import tune_gc
from hub.application.outcome import Outcome, Verdict
from hub.application.ports import Ledger
from hub.intake.dead_letters import Letter, file_dead_letters
from hub.intake.settings import IntakeSettings

log = logging.getLogger("hub.intake")  # one logger for the intake's modules, named as before the split

PIPELINE = 4
"""Batches handed to the writer before the oldest is answered: its recorder commits some while the
writer decides the next one on top of them (``WINDOW`` in hub/adapters/store/writer.py), and one
more waits in the pipe, so that neither idles while this loop acks (2 → 4 measured ≈ +15 % with the
recorder)."""
T = TypeVar("T")


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


@dataclass(slots=True)
class _Prepared:
    msgs: list[Msg]
    valid_msgs: list[Msg]
    valids: list[m.Valid]
    letters: list[Letter]
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


_COMMAND_SUBJECT = f"{m.SUBJECT_PREFIX}.{m.COMMAND_DEPARTMENT}."
"""Operator commands' subjects: the only events whose already-done answer someone waits for."""

_LATE_REASONS: dict[Verdict, tuple[m.Reason, str]] = {
    Verdict.NOT_FOUND: (m.Reason.NOT_FOUND, "caseref"),
    Verdict.NOT_PERMITTED_YET: (m.Reason.NOT_PERMITTED, "department"),
}
"""What an event its case could not take *yet* is dead-lettered as once its retries ran out, and
the field named when the outcome names none (the rest: ``refused``, at ``type``)."""


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
                parse_headers(headers) if headers else None,
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
                prepared.letters.append(Letter(msg, result.reason, result.field, result.detail))
        return prepared

    def _submit(self, prepared: _Prepared) -> asyncio.Future[list[Outcome]]:
        """Decide and record on the single writer thread; batches are applied in submission order."""
        loop = asyncio.get_running_loop()
        if not prepared.valids:
            nothing: asyncio.Future[list[Outcome]] = loop.create_future()
            nothing.set_result([])
            return nothing
        submit = getattr(self.ledger, "submit_batch", None)
        commit: asyncio.Future[list[Outcome]]
        if submit is not None:  # a writer process: pipelined over its pipe, no thread in between
            commit = submit(prepared.valids)
        else:
            commit = loop.run_in_executor(self._writer, self.ledger.apply_batch, prepared.valids)
        if self._in_store == 0:
            self._store_busy_since = time.monotonic()
        self._in_store += 1
        commit.add_done_callback(self._left_store)
        return commit

    def _left_store(self, _: asyncio.Future[Any]) -> None:
        """A commit ended, recorded or failed: one batch fewer in the store's hands."""
        self._in_store -= 1
        self._store_busy_since = time.monotonic() if self._in_store else None
        self._arrived.set()  # wakes a collector waiting for messages

    def store_healthy(self, stall_s: float = 5.0) -> bool:
        """Readiness of the store as the intake sees it: the last batch was recorded, and no commit
        has been waiting longer than ``stall_s`` (an unreachable PostgreSQL blocks, retrying, for
        minutes before it fails: a failure alone would report the outage far too late)."""
        since = self._store_busy_since
        return self.store_ok and (since is None or time.monotonic() - since <= stall_s)

    async def _answer(self, prepared: _Prepared, outcomes: list[Outcome]) -> None:
        """Answer JetStream for a recorded batch, message by message as its outcome says: ack what is
        stored (or was already), nak with a delay what must wait, dead-letter what cannot apply."""
        acks: list[Msg] = []
        retries: list[tuple[Msg, float]] = []
        already_done: list[tuple[Msg, str]] = []
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
                    already_done.append((msg, outcome.detail))
            elif verdict is Verdict.FAILED:
                # Isolated by the store writer: this event alone fails whenever it is decided, so
                # retrying cannot help; its neighbours are recorded (CaseLedger.decide_isolating).
                letters.append(Letter(msg, m.Reason.STORE_FAILED, outcome.field, outcome.detail))
            elif verdict is Verdict.NOT_PERMITTED:
                # A department acting as someone it is not (hub.domain.authority): never permitted,
                # so not retried; the case recorded nothing, the batch's other events are stored.
                letters.append(Letter(msg, m.Reason.NOT_PERMITTED, outcome.field, outcome.detail))
            else:
                attempt = msg.metadata.num_delivered
                if attempt <= len(delays):
                    retries.append((msg, delays[attempt - 1]))
                else:
                    reason, field = _LATE_REASONS.get(verdict, (m.Reason.REFUSED, "type"))
                    detail = f"{outcome.detail} (after {attempt} attempts)"
                    letters.append(Letter(msg, reason, outcome.field or field, detail))

        if outcomes and self.on_committed is not None:
            self.on_committed()
        await self._dead_letter(letters)
        await ack_all(self.nc, acks)
        await self._tell_done(already_done)
        for msg, delay in retries:
            await msg.nak(delay=delay)
        self.stats.retried += len(retries)
        if any(msg.headers for msg in prepared.msgs):
            await self._clear_replayed([*acks, *(letter.msg for letter in letters)])
        self.stats.received += len(prepared.msgs)
        self.stats.batches += 1
        self.stats.last_batch_seconds = time.perf_counter() - prepared.started
        self.stats.batch_seconds_total += self.stats.last_batch_seconds

    async def _tell_done(self, already_done: Sequence[tuple[Msg, str]]) -> None:
        """Tell a waiting mutation that its operator command was already done (AlreadyDone): it is
        acked as a duplicate, so neither the read model nor the dead letters would ever show it,
        and the operator waited for the mutation's timeout. Best effort (core NATS, not stored):
        the mutation still times out if the notice is lost."""
        for msg, detail in already_done:
            subject = m.done_subject_for(m.public_subject(msg.subject, msg.data))
            event_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            headers = {m.H_MSG_ID: event_id, m.H_DETAIL: m.printable(detail, 2000)}
            with contextlib.suppress(Exception):  # a lost notice costs the waiting client its timeout only
                await self.nc.publish(subject, b"", headers=headers)

    async def _dead_letter(self, letters: Sequence[Letter]) -> None:
        """Copy each letter to CITY_DLQ (stored, acknowledged) and only then terminate the original."""
        if not letters:
            return
        await file_dead_letters(self.js, letters)
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

    async def _clear_replayed(self, answered: Sequence[Msg]) -> None:
        """A replayed dead letter is removed once its replay was applied or dead-lettered again."""
        for msg in answered:
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
                unroute = route_directly(self.nc, sub, functools.partial(self._on_raw, pull))
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
                    pending.append((prepared, self._submit(prepared)))
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
            await self._answer(prepared, outcomes)
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
