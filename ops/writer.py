"""The store-writer process (单写进程): one process owns the case ledger; the intake talks to it.

Why a process: the intake's NATS work (receiving, validating, acknowledging) and the ledger's work
(deciding each event against its case, transcoding and recording) are both Python and, in one
process, take turns on one interpreter lock — measured ≈ 25 µs and ≈ 50 µs per event, serialised.
In two processes they overlap on two cores. The writer stays the only writer of the store, so the
ledger's case cache and the exactly-once argument (ADR 0002) are unchanged: the intake still acks
only what the writer reports recorded.

Wire protocol over a pipe, msgpack-encoded: a batch goes as the events the intake already
validated, in their compact pre-parsed form (``hub.messages.WireEvent``: the writer rebuilds them
without re-parsing JSON, keeping the sources' time zones); outcomes come back as (verdict, case id,
detail). Every request carries a number its reply repeats; a reply out of step ends the pipe (its
batches are redelivered) instead of answering a batch with another's outcome (ADR 0002, decision 9).
A failure inside the writer is reported, not fatal; an event that fails by itself is isolated and
answered ``failed`` (dead-lettered), its neighbours recorded; a writer that dies is restarted on the
next batch (that batch fails and is redelivered).

Inside, the writer is two processes (ADR 0002, session 4): it decides each batch and maps its new
events to stored rows, and its forked child, the recorder (记录进程), inserts and commits them,
one transaction per batch, in order. While batch N is committed, batch N+1 is decided on top of
N's staged state; the intake still hears "applied" for a batch only after its commit. When a batch
is not recorded, everything staged after it is dropped by the recorder until the writer, having
forgotten its cached cases, stages those batches again decided from the store (a conflict, i.e. a
case created optimistically that existed after all, is decided again once, as before). A dead
recorder ends the writer, which the intake restarts.

The sha256 audit chain is extended by a sibling process, :mod:`ops.chain_follower`, started and
stopped with the writer: chaining no longer takes the writer's turns (ADR 0005).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import struct
import threading
from collections import deque
from collections.abc import Awaitable, Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import msgspec

from hub import messages as m
from hub.adapters.logs import child_logging
from hub.adapters.process import tune_gc
from hub.application.outcome import Outcome, Verdict
from ops.chain_follower import ChainFollower

log = logging.getLogger(__name__)


class _Apply(msgspec.Struct, tag="apply"):
    id: int
    """The request's number: its reply carries it back (see :class:`_Channel`)."""
    events: list[m.WireEvent]


class _Breaches(msgspec.Struct, tag="breaches"):
    id: int
    now: datetime


class _Applied(msgspec.Struct, tag="applied"):
    """Every event of the batch applied, except ``others``: (position in the batch, verdict, detail,
    field).

    Why not one outcome per event: nearly all are "applied", and the intake knows each event's case
    id already; 500 case ids decoded back per batch cost the intake's loop ≈ 1 µs an event."""

    id: int
    others: list[tuple[int, str, str, str]]


class _BreachList(msgspec.Struct, tag="breach_list"):
    id: int
    events: list[dict[str, Any]]


class _Failed(msgspec.Struct, tag="failed"):
    error: str
    id: int = 0
    """0 only when the writer could not start (no request was asked yet)."""


class _Ready(msgspec.Struct, tag="ready"):
    pass


_Request = _Apply | _Breaches
_Reply = _Applied | _BreachList | _Failed | _Ready


class WriterError(RuntimeError):
    """The writer process failed a request (the message is its error) or died."""


class ProtocolError(WriterError):
    """The pipe to the writer is out of order (a reply to no request, or to another one, or a frame
    that is not one): nothing read from it can be trusted any more, so the pipe is dropped, every
    batch waiting on it fails (to be redelivered) and the next request starts a new writer."""


CALL_TIMEOUT_S = 300.0
"""Longest a blocking call (the deadline watcher's) waits for its reply before it gives up and
fails: a wedged writer must not hold the caller's thread, and so the hub's stop, forever."""

MAX_FRAME = 1 << 31
"""Largest reply frame the intake accepts; a bigger size field means the stream is out of step."""


def _serve(conn: Connection, store_url: str, config_dir: str | None) -> None:
    """The child: start the recorder, build the ledger, then answer requests until the pipe closes."""
    from ops.bootstrap import build_ledger
    from ops.natsd import exit_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the intake stops us
    exit_with_parent()  # a SIGKILLed intake leaves no writer behind
    child_logging("writer")  # the recorder, forked from here, keeps the same set-up
    encoder = msgspec.msgpack.Encoder()
    try:
        recorder, pid = _start_recorder(store_url, config_dir)  # forked before this process opens the store
        ledger = build_ledger(store_url, config_dir=Path(config_dir) if config_dir else None)
    except Exception as exc:
        conn.send_bytes(encoder.encode(_Failed(f"cannot open the event store: {exc}")))
        return
    tune_gc()
    conn.send_bytes(encoder.encode(_Ready()))
    try:
        _Decider(conn, ledger, recorder).run()
    finally:
        # The recorder finishes the batch in hand and exits at end-of-file; waiting for it means
        # that once this process is gone, so is every commit (the chain follower, stopped after
        # the writer, then chains them all).
        recorder.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


# --------------------------------------------------------------------------- deciding and recording
class _Row(msgspec.Struct, array_like=True, frozen=True):
    """A stored event as it crosses to the recorder: the fields of the library's ``StoredEvent``
    under the same names, which is all its recorders read (decoded as such, not rebuilt)."""

    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


class _Record(msgspec.Struct, tag="record", array_like=True):
    seq: int
    events: list[_Row]


class _Reset(msgspec.Struct, tag="reset", array_like=True):
    pass


class _Recorded(msgspec.Struct, tag="recorded", array_like=True):
    seq: int
    error: str = ""
    """Empty when the rows are committed."""
    conflict: bool = False
    """The store refused a row as already there (a case created optimistically existed after all)."""
    skipped: bool = False
    """Not attempted: an earlier batch failed, and no reset came since."""


WINDOW = 3
"""Staged batches the recorder may hold at once (each decided on top of the ones before it); the
intake's ``PIPELINE`` is one more, so a batch is always waiting when the writer is free."""


def _start_recorder(store_url: str, config_dir: str | None) -> tuple[Connection, int]:
    """Fork the recorder child (before this process opens any store connection) and wait until it
    has opened the store. ``os.fork``, not multiprocessing: the writer is itself a daemonic child."""
    parent, child = multiprocessing.Pipe()
    pid = os.fork()
    if pid == 0:  # the recorder
        parent.close()
        multiprocessing.current_process().name = "hub-store-recorder"
        code = 0
        try:
            _record(child, store_url, config_dir)
        except BaseException:
            log.exception("the store recorder failed")
            code = 1
        finally:
            os._exit(code)
    child.close()
    decoder = msgspec.msgpack.Decoder(_Recorded)
    if not parent.poll(60):
        os.kill(pid, signal.SIGKILL)
        raise WriterError("the store recorder did not start within 60s")
    try:
        ready = decoder.decode(parent.recv_bytes())
    except (EOFError, OSError) as exc:
        raise WriterError("the store recorder exited while starting") from exc
    if ready.error:
        raise WriterError(ready.error)
    return parent, pid


def _record(conn: Connection, store_url: str, config_dir: str | None) -> None:
    """The recorder (记录进程): commits the rows the writer staged, one transaction per batch, in order.

    Why a process of its own: mapping and inserting a batch is the event store's own work (what the
    benchmark's store append measures), and deciding it is the domain's; in one process they took
    turns on one core. Here the writer decides and maps batch N+1 while batch N is inserted and
    committed. After a failure every later batch is skipped until the writer, having dropped its
    cache, sends a reset and stages them again: nothing decided on top of a lost batch is recorded.
    """
    from eventsourcing.persistence import IntegrityError, StoredEvent

    from ops.bootstrap import build_ledger
    from ops.natsd import exit_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()  # dies with the writer
    encoder = msgspec.msgpack.Encoder()
    decoder: msgspec.msgpack.Decoder[_Record | _Reset] = msgspec.msgpack.Decoder(_Record | _Reset)
    try:
        ledger = build_ledger(store_url, config_dir=Path(config_dir) if config_dir else None)
        store = ledger.recorder  # keep the ledger: collecting it closes the store's connections
    except Exception as exc:
        conn.send_bytes(encoder.encode(_Recorded(0, error=f"cannot open the event store: {exc}")))
        return
    tune_gc()
    conn.send_bytes(encoder.encode(_Recorded(0)))
    poisoned = False
    while True:
        try:
            request = decoder.decode(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the writer is gone: nothing it staged is acknowledged without our reply
        if isinstance(request, _Reset):
            poisoned = False
            continue
        reply = _Recorded(request.seq)
        if poisoned:
            reply.skipped = True
        elif request.events:
            try:
                store.insert_events(cast("list[StoredEvent]", request.events))
            except IntegrityError as exc:
                poisoned, reply.error, reply.conflict = True, f"{exc.__class__.__name__}: {exc}", True
            except Exception as exc:
                log.exception("recording a batch failed")
                poisoned, reply.error = True, f"{exc.__class__.__name__}: {exc}"
        try:
            conn.send_bytes(encoder.encode(reply))
        except (BrokenPipeError, OSError):
            return


class _Slot:
    """One request of the intake, answered in arrival order, its reply carrying the request's number
    (the intake checks both: a reply out of step drops the pipe, never another batch's outcome)."""

    __slots__ = ("id", "reply")

    def __init__(self, request_id: int) -> None:
        self.id = request_id
        self.reply: bytes | None = None


class _Staged:
    """A batch staged with the recorder: its outcomes hold once its rows are committed."""

    __slots__ = ("items", "outcomes", "retried", "seq", "slot")

    def __init__(self, slot: _Slot, items: list[m.Valid]) -> None:
        self.slot, self.items = slot, items
        self.outcomes: list[Outcome] = []
        self.seq = 0
        self.retried = False


class _Decider:
    """The writer's loop: decide and map each batch, stage it with the recorder, answer the intake
    once the recorder committed it (ADR 0002: ack after commit still holds per batch)."""

    def __init__(self, conn: Connection, ledger: Any, recorder: Connection) -> None:
        self.conn, self.ledger, self.recorder = conn, ledger, recorder
        self.encoder = msgspec.msgpack.Encoder(uuid_format="bytes")  # 16 bytes, not 36 characters
        self.requests: msgspec.msgpack.Decoder[_Request] = msgspec.msgpack.Decoder(_Request)
        self.results = msgspec.msgpack.Decoder(_Recorded)
        self.replies: deque[_Slot] = deque()
        self.staged: deque[_Staged] = deque()
        self.seq = 0

    def run(self) -> None:
        while True:
            sources: list[Connection] = [self.recorder]
            if len(self.staged) < WINDOW:
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

    def _request(self, request: _Request) -> None:
        slot = _Slot(request.id)
        self.replies.append(slot)
        if isinstance(request, _Apply):
            self._stage(_Staged(slot, [m.from_wire(w) for w in request.events]), trust_cache=True)
            return
        try:
            slot.reply = self.encoder.encode(_BreachList(slot.id, self.ledger.breach_events(request.now)))
        except Exception as exc:
            log.exception("request failed")
            slot.reply = self.encoder.encode(_Failed(f"{exc.__class__.__name__}: {exc}", slot.id))

    def _stage(self, batch: _Staged, *, trust_cache: bool) -> None:
        try:
            # An event that fails by itself is isolated (FAILED, dead-lettered by the intake); only
            # a failure of the store fails the batch. Before isolating, what was staged earlier is
            # committed first, so that the events are decided again on the store as it is.
            batch.outcomes, stored = self.ledger.stage_isolating(
                batch.items, trust_cache=trust_cache, before_isolating=self._drain
            )
        except WriterError:
            raise  # the recorder died while draining: the writer exits
        except Exception as exc:
            log.exception("deciding a batch failed")
            batch.slot.reply = self.encoder.encode(_Failed(f"{exc.__class__.__name__}: {exc}", batch.slot.id))
            return
        self.seq += 1
        batch.seq = self.seq
        rows = [_Row(s.originator_id, s.originator_version, s.topic, s.state) for s in stored]
        self.recorder.send_bytes(self.encoder.encode(_Record(batch.seq, rows)))
        self.staged.append(batch)

    def _recorded(self, result: _Recorded) -> None:
        if not self.staged or result.seq < self.staged[0].seq:
            return  # skipped after a failure, and already staged again under a new number
        if result.seq > self.staged[0].seq:
            # The recorder answers every staged batch in order: a later number means one was lost.
            raise ProtocolError(
                f"the store recorder answered batch {result.seq} while batch {self.staged[0].seq} "
                f"was waiting; the writer exits (the intake restarts it)"
            )
        batch = self.staged.popleft()
        if not result.error and not result.skipped:
            applied = Verdict.APPLIED
            others = [
                (i, o.verdict.value, o.detail, o.field)
                for i, o in enumerate(batch.outcomes)
                if o.verdict is not applied
            ]
            batch.slot.reply = self.encoder.encode(_Applied(batch.slot.id, others))
            return
        # Not recorded: what was staged after it was decided on top of it. Forget every cached
        # case, let the recorder take batches again, and decide the rest afresh from the store.
        later = list(self.staged)
        self.staged.clear()
        self.ledger.forget_all()
        self.recorder.send_bytes(self.encoder.encode(_Reset()))
        if result.conflict and not batch.retried:
            log.info("batch conflicted (%s); deciding again from the store", result.error)
            batch.retried = True
            self._stage(batch, trust_cache=False)
        else:
            batch.slot.reply = self.encoder.encode(_Failed(result.error or "not recorded", batch.slot.id))
        for other in later:
            self._stage(other, trust_cache=True)

    def _drain(self) -> None:
        """Wait until every staged batch is recorded (or failed, and its later ones staged again)."""
        while self.staged:
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


class _Channel(asyncio.Protocol):
    """The intake's end of the pipe, served by its event loop: requests are written without waiting
    for the writer, replies are matched to requests in order (the writer answers in order).

    Why not a thread blocking on ``recv`` per batch: the writer then idles from its reply until the
    thread has woken, taken the interpreter lock from the busy event loop, and sent the next batch
    (measured: intake ≈ 98 µs an event while writer and intake each used a core only half the time).
    Here the next batch is already in the pipe when the writer finishes one.
    Frames are ``multiprocessing.Connection``'s (``!i`` length, or -1 then ``!Q``), so the writer
    keeps its plain ``recv_bytes``/``send_bytes``.

    Every reply carries its request's number and must be the one the oldest waiter asked for. Why:
    a reply taken by the wrong waiter would acknowledge a batch with another batch's outcome (events
    acked but never stored), and a frame read from the middle of another (a second reader on the
    pipe) gives sizes that are garbage — once a negative size made this parser loop forever, logging
    "a reply nobody asked for" millions of times with the event loop wedged. So anything out of step
    ends the channel at once (:meth:`_out_of_step`): waiters fail and are redelivered, the next
    request starts a new writer. Nothing read after that is ever matched to a batch.
    """

    def __init__(self, decoder: msgspec.msgpack.Decoder[_Reply] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: deque[tuple[int, asyncio.Future[_Reply]]] = deque()
        self.lost: BaseException | None = None
        self.decoder: msgspec.msgpack.Decoder[_Reply] = decoder or msgspec.msgpack.Decoder(_Reply)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.lost is not None:
            return  # out of step already: nothing more is read
        buf = self.buffer
        buf += data
        while len(buf) >= 4:
            (size,) = _SIZE.unpack_from(buf)
            start = 4
            if size == -1:
                if len(buf) < 12:
                    return
                (size,) = _BIG_SIZE.unpack_from(buf, 4)
                start = 12
            if size < 0 or size > MAX_FRAME:
                self._out_of_step(f"a frame of impossible size {size}")
                return
            end = start + size
            if len(buf) < end:
                return
            try:
                reply = self.decoder.decode(memoryview(buf)[start:end])
            except msgspec.DecodeError as exc:
                self._out_of_step(f"a frame that is no reply ({exc})")
                return
            del buf[:end]
            rid = getattr(reply, "id", None)
            if not self.waiting:
                self._out_of_step(f"a reply to request {rid} while no request was waiting")
                return
            expected, waiter = self.waiting[0]
            if rid != expected:
                self._out_of_step(f"a reply to request {rid} while request {expected} was waiting")
                return
            self.waiting.popleft()
            if not waiter.done():  # a cancelled caller still had its place in the order
                waiter.set_result(reply)

    def _out_of_step(self, what: str) -> None:
        """The pipe cannot be trusted: drop it (the writer sees end-of-file and exits), fail every
        waiter (its batch is redelivered), and let the next request start a new writer."""
        log.error(
            "the store writer sent %s; dropping its pipe, the %d batch(es) waiting on it will be "
            "redelivered and the writer restarted",
            what,
            len(self.waiting),
        )
        self.lost = ProtocolError(f"the store writer's pipe was out of step ({what})")
        self.buffer.clear()
        self._fail_waiting()
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = exc or EOFError("the store writer closed the pipe")
        self._fail_waiting()

    def eof_received(self) -> bool | None:
        if self.lost is None:
            self.lost = EOFError("the store writer closed the pipe")
        self._fail_waiting()
        return None

    def _fail_waiting(self) -> None:
        while self.waiting:
            _, waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(
                    WriterError("the store writer died (pipe closed); the batch will be redelivered")
                )

    @property
    def usable(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()

    def send(self, request_id: int, payload: bytes) -> asyncio.Future[_Reply]:
        """Queue one request; the future gets its reply. Call only when :attr:`usable`."""
        assert self.transport is not None
        size = len(payload)
        header = _SIZE.pack(size) if size <= 0x7FFFFFFF else _SIZE.pack(-1) + _BIG_SIZE.pack(size)
        self.transport.writelines((header, payload))
        waiter: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self.waiting.append((request_id, waiter))
        return waiter


def _forward(to: asyncio.Future[_Reply], done: asyncio.Future[_Reply]) -> None:
    """Hand a reply (or the pipe's failure) from the channel's future to the caller's."""
    if to.done():
        return
    if done.cancelled():
        to.cancel()
    elif (error := done.exception()) is not None:
        to.set_exception(error)
    else:
        to.set_result(done.result())


def _outcomes_of(reply: _Applied, items: Sequence[m.Valid]) -> list[Outcome]:
    applied = Verdict.APPLIED
    outcomes = [Outcome(applied, item.case_id) for item in items]
    for index, verdict, detail, field in reply.others:
        outcomes[index] = Outcome(Verdict(verdict), items[index].case_id, detail, field)
    return outcomes


_SIZE = struct.Struct("!i")
_BIG_SIZE = struct.Struct("!Q")


class RemoteLedger:
    """The intake's ``Ledger`` port, served by a ``CaseLedger`` in a child process.

    Two ways to talk to it: :meth:`submit_batch` on the intake's event loop (pipelined: several
    batches may be in the pipe, the writer applies them in order), or the blocking methods of the
    ``Ledger`` protocol from any other thread.

    The pipe has exactly one reader at any time. Until an event loop claims it (:meth:`_claim`,
    under ``_lock``), blocking calls use it directly, each a whole request and reply under the same
    lock; from the claim on, every blocking call is passed to that loop. Why so strict: the deadline
    watcher's blocking call once read the pipe from its thread while the loop attached it, each
    reader taking part of the other's frames (found on a restart of ``hub up``: replies to nobody,
    a wedged event loop, a stop that never came).
    """

    def __init__(self, store_url: str, config_dir: Path | None = None, start_timeout: float = 60.0) -> None:
        self.store_url = store_url
        self.config_dir = config_dir
        self.start_timeout = start_timeout
        self._context = multiprocessing.get_context("spawn")  # no inherited event loop or sockets
        self._encoder = msgspec.msgpack.Encoder(uuid_format="bytes")  # 16 bytes, not 36 characters
        self._decoder: msgspec.msgpack.Decoder[_Reply] = msgspec.msgpack.Decoder(_Reply)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._process: Any = None
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop that owns the pipe (set under ``_lock`` before it takes the pipe over)."""
        self._channel: _Channel | None = None
        self._sock: socket.socket | None = None
        self._backlog: deque[tuple[int, bytes, asyncio.Future[_Reply]]] = deque()
        """Requests waiting for the pipe to be (re)attached, in call order (see :meth:`_send`)."""
        self._drainer: asyncio.Future[None] | None = None
        self._closing = False
        """Set by :meth:`closing`/:meth:`close`: no writer or chain follower is started again."""
        self._start()
        # The audit chain is extended beside the writer, not in its turn (ops/chain_follower.py).
        self._chain = ChainFollower(store_url, config_dir)
        try:
            self._chain.start()
        except RuntimeError:
            self.close()
            raise

    def closing(self) -> None:
        """The hub is stopping: from now on nothing is restarted (a stop that kills the children
        must not see a batch in flight start a new writer behind its back); requests that would
        need a new writer fail (their batches are redelivered after the restart of the hub)."""
        self._closing = True

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise WriterError("the store writer is stopping; the batch will be redelivered")

    def pids(self) -> list[int]:
        """The writer's and the chain follower's process ids (for a stop that must kill them)."""
        out = [p.pid for p in (self._process, getattr(self._chain, "_process", None)) if p is not None]
        return [pid for pid in out if pid is not None]

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(
            target=_serve,
            args=(child, self.store_url, str(self.config_dir) if self.config_dir else None),
            name="hub-store-writer",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(self.start_timeout):
            self.close()
            raise WriterError(f"the store writer did not start within {self.start_timeout:.0f}s")
        try:
            reply = self._decoder.decode(parent.recv_bytes())
        except (EOFError, OSError) as exc:
            self.close()
            raise WriterError(f"the store writer exited while starting (code {self._exitcode()})") from exc
        if isinstance(reply, _Failed):
            self.close()
            raise WriterError(reply.error)

    # ------------------------------------------------------------------ on the event loop
    def submit_batch(self, items: Sequence[m.Valid]) -> asyncio.Future[list[Outcome]]:
        """Send a batch now (in call order) and return the future of its outcomes; the event loop
        never waits for the writer, and the writer finds the next batch queued when it is done."""
        request_id = next(self._ids)
        request = self._encoder.encode(_Apply(request_id, [m.to_wire(v) for v in items]))
        future = asyncio.ensure_future(self._outcomes(self._send(request_id, request), items))
        # Retrieved here too: a batch orphaned by a stop must not be reported as never retrieved
        # (the intake, when it awaits it, still gets its failure).
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future

    def _send(self, request_id: int, request: bytes) -> Awaitable[_Reply]:
        """Write the request now, or queue it behind the ones waiting for the pipe.

        Why a queue filled at call time: the order of requests is the order the writer applies
        batches in. Counting waiting requests only once their coroutine ran let a later batch take
        the fast path ahead of an earlier one still waiting to start."""
        channel = self._channel
        if channel is not None and channel.usable and not self._backlog:
            return channel.send(request_id, request)
        reply: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self._backlog.append((request_id, request, reply))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.ensure_future(self._drain_backlog())
        return reply

    async def _drain_backlog(self) -> None:
        """First use on this loop, or the writer died: (re)start it, attach the pipe, then send the
        queued requests in order. If the writer cannot be started they all fail (redelivered)."""
        while self._backlog:
            channel = self._channel
            if channel is None or not channel.usable:
                try:
                    await self._attach()
                except BaseException as exc:
                    error = (
                        exc
                        if isinstance(exc, WriterError)
                        else WriterError(f"{exc.__class__.__name__}: {exc}")
                    )
                    while self._backlog:
                        _, _, reply = self._backlog.popleft()
                        if not reply.done():
                            reply.set_exception(error)
                    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                        raise
                    return
                continue
            request_id, request, reply = self._backlog.popleft()
            if not reply.done():  # not cancelled meanwhile
                channel.send(request_id, request).add_done_callback(functools.partial(_forward, reply))

    async def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        self._refuse_if_closing()
        restart = self._channel is not None or self._process is None or not self._process.is_alive()
        if restart:
            if self._channel is not None or self._process is not None:
                log.warning("the store writer is not running; starting it again")
            self._detach()
        sock = await asyncio.to_thread(self._claim, loop, restart)
        channel = _Channel(self._decoder)
        try:
            await loop.connect_accepted_socket(lambda: channel, sock)
        except BaseException:
            sock.close()
            raise
        self._channel, self._sock = channel, sock

    def _claim(self, loop: asyncio.AbstractEventLoop, restart: bool) -> socket.socket:
        """Take the pipe over for ``loop`` (on a worker thread: it may wait for a blocking call in
        progress, and a restart waits for the new writer). Under the lock, so a blocking call either
        finished its round trip before, or sees the loop and goes through it."""
        with self._lock:
            self._refuse_if_closing()
            self._loop = loop
            if restart or self._conn is None or self._process is None or not self._process.is_alive():
                self._stop_process()
                self._start()
            assert self._conn is not None
            sock = socket.socket(fileno=os.dup(self._conn.fileno()))
            self._conn.close()  # the socket owns the pipe from now on
            self._conn = None
        self._chain.ensure_running()
        return sock

    def _detach(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # the writer sees end-of-file at once
        if self._channel is not None and self._channel.transport is not None:
            self._channel.transport.abort()
        self._channel = self._sock = None

    async def _outcomes(self, reply: Awaitable[_Reply], items: Sequence[m.Valid]) -> list[Outcome]:
        decoded = await reply
        if isinstance(decoded, _Failed):
            raise WriterError(decoded.error)
        if not isinstance(decoded, _Applied):
            raise ProtocolError(f"the store writer answered a batch with {type(decoded).__name__}")
        return _outcomes_of(decoded, items)

    async def _call_async(self, request: _Request) -> _Reply:
        reply = await self._send(request.id, self._encoder.encode(request))
        if isinstance(reply, _Failed):
            raise WriterError(reply.error)
        return reply

    # ------------------------------------------------------------------ blocking (any other thread)
    def _call(self, request: _Request) -> _Reply:
        with self._lock:
            loop = self._loop
            if loop is not None and loop.is_closed():
                # The loop that owned the pipe is gone (and the pipe with it): start afresh here.
                self._loop = self._channel = self._sock = None
                loop = None
            if loop is None:
                return self._call_directly(request)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("blocking RemoteLedger call on its own event loop; use submit_batch")
        future = asyncio.run_coroutine_threadsafe(self._call_async(request), loop)
        try:
            return future.result(CALL_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise WriterError(f"the store writer did not answer within {CALL_TIMEOUT_S:.0f}s") from None

    def _call_directly(self, request: _Request) -> _Reply:
        """One whole request and reply on the pipe, under ``_lock`` (no loop owns the pipe)."""
        if self._conn is None or self._process is None or not self._process.is_alive():
            self._refuse_if_closing()
            log.warning("the store writer is not running; starting it again")
            self._stop_process()
            self._start()
        assert self._conn is not None
        try:
            self._conn.send_bytes(self._encoder.encode(request))
            if not self._conn.poll(CALL_TIMEOUT_S):
                raise TimeoutError(f"no answer within {CALL_TIMEOUT_S:.0f}s")
            reply = self._decoder.decode(self._conn.recv_bytes())
        except (EOFError, OSError, msgspec.DecodeError) as exc:
            self._stop_process()
            raise WriterError(
                f"the store writer died ({exc.__class__.__name__}); the batch will be redelivered"
            ) from exc
        if isinstance(reply, _Failed):
            raise WriterError(reply.error)
        if getattr(reply, "id", None) != request.id:
            self._stop_process()
            raise ProtocolError(f"the store writer answered request {request.id} out of step")
        return reply

    def apply_batch(self, items: Sequence[m.Valid]) -> list[Outcome]:
        reply = self._call(_Apply(next(self._ids), [m.to_wire(v) for v in items]))
        assert isinstance(reply, _Applied)
        return _outcomes_of(reply, items)

    def breach_events(self, now: datetime) -> list[dict[str, Any]]:
        if not self._closing:
            self._chain.ensure_running()  # the SLA watcher calls this regularly, off the event loop
        reply = self._call(_Breaches(next(self._ids), now))
        assert isinstance(reply, _BreachList)
        return reply.events

    def _exitcode(self) -> int | None:
        return None if self._process is None else self._process.exitcode

    def _stop_process(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
            self._process = None

    def close(self) -> None:
        """Stop the writer (it finishes the request in hand: it sees end-of-file on the pipe)."""
        self._closing = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        loop, channel = self._loop, self._channel
        if (
            loop is not None
            and channel is not None
            and channel.transport is not None
            and not loop.is_closed()
        ):
            transport = channel.transport
            try:
                on_loop = asyncio.get_running_loop() is loop
            except RuntimeError:
                on_loop = False
            if on_loop:
                transport.abort()
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(transport.abort)
        self._channel = self._sock = None
        self._loop = None
        self._stop_process()
        chain = getattr(self, "_chain", None)
        if chain is not None:
            chain.stop()  # after the writer: the chain then covers every committed batch

    # ------------------------------------------------------------------ read-only, for the supervisor
    @property
    def writer_process(self) -> Any:
        """The store writer's ``multiprocessing.Process`` (or ``None`` between two of them): ``hub
        up``'s supervisor watches it, tells by its exit code whether it died or followed its
        recorder, and finds the recorder as its child."""
        return self._process

    @property
    def chain_follower(self) -> ChainFollower:
        """The audit-chain follower started with this writer (the supervisor restarts it)."""
        return self._chain
