"""The store-writer process (单写进程): one process owns the case ledger; the intake talks to it.

Why a process: the intake's NATS work (receiving, validating, acknowledging) and the ledger's work
(deciding each event against its case, transcoding and recording) are both Python and, in one
process, take turns on one interpreter lock — measured ≈ 25 µs and ≈ 50 µs per event, serialised.
In two processes they overlap on two cores. The writer stays the only writer of the store, so the
ledger's case cache and the exactly-once argument (ADR 0002) are unchanged: the intake still acks
only what the writer reports recorded. The intake's side of the pipe is ``remote.RemoteLedger``;
the messages on it are ``wire``'s.

A failure inside the writer is reported, not fatal; an event that fails by itself is isolated and
answered ``failed`` (dead-lettered), its neighbours recorded; a writer that dies is restarted on the
next batch (that batch fails and is redelivered).

Inside, the writer is two processes (ADR 0002, session 4): it decides each batch and maps its new
events to stored rows, and its forked child, the recorder (记录进程, ``recorder``), inserts and
commits them, one transaction per batch, in order. While batch N is committed, batch N+1 is decided
on top of N's cases as decided, not yet committed (N is *in flight*: sent to the recorder, not yet
answered); the intake still hears "applied" for a batch only after its commit. When a batch is not
recorded, every batch sent after it is dropped by the recorder until the writer, having forgotten
its cached cases, decides those batches again from the store and sends them anew (a conflict, i.e. a
case created optimistically that existed after all, is decided again once, as before). A dead
recorder ends the writer, which the intake restarts.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection
import os
import signal
from collections import deque
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, cast

import msgspec

from hub import messages as m
from hub.adapters.logs import child_logging
from hub.adapters.process import LedgerFactory, exit_with_parent, tune_gc
from hub.adapters.store.recorder import start_recorder
from hub.adapters.store.wire import (
    Applied,
    Apply,
    BreachList,
    Failed,
    ProtocolError,
    Ready,
    Record,
    Recorded,
    Request,
    Reset,
    Row,
    WriterError,
)
from hub.application.outcome import Outcome, Verdict

if TYPE_CHECKING:
    from uuid import UUID

    from hub.application import CaseLedger

log = logging.getLogger(__name__)

WINDOW = 3
"""Batches in flight at once: sent to the recorder, not yet answered, each decided on top of the
ones before it; the intake's ``PIPELINE`` is one more, so a batch is always waiting when the writer
is free."""


def serve(conn: Connection, open_ledger: LedgerFactory) -> None:
    """The child: start the recorder, open the ledger, then answer requests until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the intake stops us
    exit_with_parent()  # a SIGKILLed intake leaves no writer behind
    child_logging("writer")  # the recorder, forked from here, keeps the same set-up
    encoder = msgspec.msgpack.Encoder()
    try:
        recorder, pid = start_recorder(open_ledger)  # forked before this process opens the store
        ledger = open_ledger()
    except Exception as exc:
        conn.send_bytes(encoder.encode(Failed(f"cannot open the event store: {exc}")))
        return
    tune_gc()
    conn.send_bytes(encoder.encode(Ready()))
    try:
        _Decider(conn, ledger, recorder).run()
    finally:
        # The recorder finishes the batch in hand and exits at end-of-file; waiting for it means
        # that once this process is gone, so is every commit (the chain follower, stopped after
        # the writer, then chains them all).
        recorder.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


class _Slot:
    """One request of the intake, answered in arrival order, its reply carrying the request's number
    (the intake checks both: a reply out of step drops the pipe, never another batch's outcome)."""

    __slots__ = ("id", "reply")

    def __init__(self, request_id: int) -> None:
        self.id = request_id
        self.reply: bytes | None = None


class _InFlight:
    """A batch decided and sent to the recorder: its outcomes hold once its rows are committed."""

    __slots__ = ("items", "outcomes", "retried", "seq", "slot")

    def __init__(self, slot: _Slot, items: list[m.Valid]) -> None:
        self.slot, self.items = slot, items
        self.outcomes: list[Outcome] = []
        self.seq = 0
        self.retried = False


class _Decider:
    """The writer's loop: decide and map each batch, send its rows to the recorder, answer the intake
    once the recorder committed it (ADR 0002: ack after commit still holds per batch)."""

    def __init__(self, conn: Connection, ledger: CaseLedger, recorder: Connection) -> None:
        self.conn, self.ledger, self.recorder = conn, ledger, recorder
        self.encoder = msgspec.msgpack.Encoder(uuid_format="bytes")  # 16 bytes, not 36 characters
        self.requests: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
        self.results = msgspec.msgpack.Decoder(Recorded)
        self.replies: deque[_Slot] = deque()
        self.in_flight: deque[_InFlight] = deque()
        self.seq = 0

    def run(self) -> None:
        while True:
            sources: list[Connection] = [self.recorder]
            if len(self.in_flight) < WINDOW:
                sources.append(self.conn)
            ready = multiprocessing.connection.wait(sources)
            if self.recorder in ready:
                try:
                    result = self.results.decode(self.recorder.recv_bytes())
                except (EOFError, OSError):
                    log.error("the store recorder died; the writer exits (the intake restarts it)")
                    return
                try:
                    self._recorded(result)
                except WriterError as exc:  # out of step, or the recorder died while draining
                    log.error("%s", exc)
                    return
            elif self.conn in ready:
                try:
                    request = self.requests.decode(self.conn.recv_bytes())
                except (EOFError, OSError):
                    return  # the intake is gone (stopped or killed): nothing in flight is acked
                try:
                    self._request(request)
                except WriterError as exc:  # ProtocolError included
                    log.error("%s; the writer exits (the intake restarts it)", exc)
                    return
            try:
                self._answer()
            except (BrokenPipeError, OSError):
                return

    def _request(self, request: Request) -> None:
        slot = _Slot(request.id)
        self.replies.append(slot)
        if isinstance(request, Apply):
            self._decide_and_send(_InFlight(slot, [m.from_wire(w) for w in request.events]), trust_cache=True)
            return
        try:
            slot.reply = self.encoder.encode(BreachList(slot.id, self.ledger.breach_events(request.now)))
        except Exception as exc:
            log.exception("request failed")
            slot.reply = self.encoder.encode(Failed(f"{exc.__class__.__name__}: {exc}", slot.id))

    def _decide_and_send(self, batch: _InFlight, *, trust_cache: bool) -> None:
        try:
            # An event that fails by itself is isolated (FAILED, dead-lettered by the intake); only
            # a failure of the store fails the batch. Before isolating, the batches in flight are
            # committed first, so that the events are decided again on the store as it is.
            batch.outcomes, stored = self.ledger.decide_isolating(
                batch.items, trust_cache=trust_cache, before_isolating=self._drain
            )
        except WriterError:
            raise  # the recorder died while draining: the writer exits
        except Exception as exc:
            log.exception("deciding a batch failed")
            batch.slot.reply = self.encoder.encode(Failed(f"{exc.__class__.__name__}: {exc}", batch.slot.id))
            return
        self.seq += 1
        batch.seq = self.seq
        # The case ledger's originator ids are UUIDs (the library types them ``UUID | str``).
        rows = [Row(cast("UUID", s.originator_id), s.originator_version, s.topic, s.state) for s in stored]
        self.recorder.send_bytes(self.encoder.encode(Record(batch.seq, rows)))
        self.in_flight.append(batch)

    def _recorded(self, result: Recorded) -> None:
        if not self.in_flight or result.seq < self.in_flight[0].seq:
            return  # skipped after a failure, and already sent again under a new number
        if result.seq > self.in_flight[0].seq:
            # The recorder answers every batch in flight in order: a later number means one was lost.
            raise ProtocolError(
                f"the store recorder answered batch {result.seq} while batch {self.in_flight[0].seq} "
                f"was waiting; the writer exits (the intake restarts it)"
            )
        batch = self.in_flight.popleft()
        if not result.error and not result.skipped:
            applied = Verdict.APPLIED
            others = [
                (i, o.verdict.value, o.detail, o.field)
                for i, o in enumerate(batch.outcomes)
                if o.verdict is not applied
            ]
            batch.slot.reply = self.encoder.encode(Applied(batch.slot.id, others))
            return
        # Not recorded: the batches sent after it were decided on top of it. Forget every cached
        # case, let the recorder take batches again, and decide the rest afresh from the store.
        later = list(self.in_flight)
        self.in_flight.clear()
        self.ledger.forget_all()
        self.recorder.send_bytes(self.encoder.encode(Reset()))
        if result.conflict and not batch.retried:
            log.info("batch conflicted (%s); deciding again from the store", result.error)
            batch.retried = True
            self._decide_and_send(batch, trust_cache=False)
        else:
            batch.slot.reply = self.encoder.encode(Failed(result.error or "not recorded", batch.slot.id))
        for other in later:
            self._decide_and_send(other, trust_cache=True)

    def _drain(self) -> None:
        """Wait until every batch in flight is recorded (or failed, and its later ones sent again)."""
        while self.in_flight:
            try:
                result = self.results.decode(self.recorder.recv_bytes())
            except (EOFError, OSError) as exc:
                raise WriterError("the store recorder died") from exc
            self._recorded(result)

    def _answer(self) -> None:
        replies = self.replies
        while replies and replies[0].reply is not None:
            reply = replies.popleft().reply
            assert reply is not None
            self.conn.send_bytes(reply)
