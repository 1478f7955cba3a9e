"""The intake's end of the store writer (单写进程): ``RemoteLedger``, the ``Ledger`` port served by a
``CaseLedger`` in a child process (``writer``), over a pipe (``channel``).

Why the intake holds a proxy and not the ledger: deciding and recording run in the writer process
beside the intake, on another core (see ``writer``). The proxy starts the writer, pipelines batches
to it from the intake's event loop, restarts it when it dies (the batches in flight fail and are
redelivered), and starts and stops the audit-chain follower (``chain_follower``) with it.

It does not know how to open the store: the composition root passes a :data:`LedgerFactory`
(``hub.adapters.process``) that the children call, so nothing here imports ``ops``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import multiprocessing
import os
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from hub import messages as m
from hub.adapters.process import LedgerFactory
from hub.adapters.store.chain_follower import ChainFollower
from hub.adapters.store.channel import Channel, forward
from hub.adapters.store.wire import (
    Applied,
    Apply,
    Breaches,
    BreachList,
    Failed,
    ProtocolError,
    Reply,
    Request,
    WriterError,
)
from hub.adapters.store.writer import serve
from hub.application.outcome import Outcome, Verdict

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 300.0
"""Longest a blocking call (the deadline watcher's) waits for its reply before it gives up and
fails: a wedged writer must not hold the caller's thread, and so the hub's stop, forever."""


def _outcomes_of(reply: Applied, items: Sequence[m.Valid]) -> list[Outcome]:
    applied = Verdict.APPLIED
    outcomes = [Outcome(applied, item.case_id) for item in items]
    for index, verdict, detail, field in reply.others:
        outcomes[index] = Outcome(Verdict(verdict), items[index].case_id, detail, field)
    return outcomes


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

    def __init__(self, open_ledger: LedgerFactory, start_timeout: float = 60.0) -> None:
        self.open_ledger = open_ledger
        """Called in the writer, its recorder and the chain follower to open the store (picklable)."""
        self.start_timeout = start_timeout
        self._context = multiprocessing.get_context("spawn")  # no inherited event loop or sockets
        self._encoder = msgspec.msgpack.Encoder(uuid_format="bytes")  # 16 bytes, not 36 characters
        self._decoder: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._process: Any = None
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop that owns the pipe (set under ``_lock`` before it takes the pipe over)."""
        self._channel: Channel | None = None
        self._sock: socket.socket | None = None
        self._backlog: deque[tuple[int, bytes, asyncio.Future[Reply]]] = deque()
        """Requests waiting for the pipe to be (re)attached, in call order (see :meth:`_send`)."""
        self._drainer: asyncio.Future[None] | None = None
        self._closing = False
        """Set by :meth:`closing`/:meth:`close`: no writer or chain follower is started again."""
        self._start()
        # The audit chain is extended beside the writer, not in its turn (chain_follower.py).
        self._chain = ChainFollower(open_ledger)
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
            target=serve,
            args=(child, self.open_ledger),
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
        if isinstance(reply, Failed):
            self.close()
            raise WriterError(reply.error)

    # ------------------------------------------------------------------ on the event loop
    def submit_batch(self, items: Sequence[m.Valid]) -> asyncio.Future[list[Outcome]]:
        """Send a batch now (in call order) and return the future of its outcomes; the event loop
        never waits for the writer, and the writer finds the next batch queued when it is done."""
        request_id = next(self._ids)
        request = self._encoder.encode(Apply(request_id, [m.to_wire(v) for v in items]))
        future = asyncio.ensure_future(self._outcomes(self._send(request_id, request), items))
        # Retrieved here too: a batch orphaned by a stop must not be reported as never retrieved
        # (the intake, when it awaits it, still gets its failure).
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future

    def _send(self, request_id: int, request: bytes) -> Awaitable[Reply]:
        """Write the request now, or queue it behind the ones waiting for the pipe.

        Why a queue filled at call time: the order of requests is the order the writer applies
        batches in. Counting waiting requests only once their coroutine ran let a later batch take
        the fast path ahead of an earlier one still waiting to start."""
        channel = self._channel
        if channel is not None and channel.usable and not self._backlog:
            return channel.send(request_id, request)
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
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
                channel.send(request_id, request).add_done_callback(functools.partial(forward, reply))

    async def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        self._refuse_if_closing()
        restart = self._channel is not None or self._process is None or not self._process.is_alive()
        if restart:
            if self._channel is not None or self._process is not None:
                log.warning("the store writer is not running; starting it again")
            self._detach()
        sock = await asyncio.to_thread(self._claim, loop, restart)
        channel = Channel(self._decoder)
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

    async def _outcomes(self, reply: Awaitable[Reply], items: Sequence[m.Valid]) -> list[Outcome]:
        decoded = await reply
        if isinstance(decoded, Failed):
            raise WriterError(decoded.error)
        if not isinstance(decoded, Applied):
            raise ProtocolError(f"the store writer answered a batch with {type(decoded).__name__}")
        return _outcomes_of(decoded, items)

    async def _call_async(self, request: Request) -> Reply:
        reply = await self._send(request.id, self._encoder.encode(request))
        if isinstance(reply, Failed):
            raise WriterError(reply.error)
        return reply

    # ------------------------------------------------------------------ blocking (any other thread)
    def _call(self, request: Request) -> Reply:
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

    def _call_directly(self, request: Request) -> Reply:
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
        if isinstance(reply, Failed):
            raise WriterError(reply.error)
        if getattr(reply, "id", None) != request.id:
            self._stop_process()
            raise ProtocolError(f"the store writer answered request {request.id} out of step")
        return reply

    def apply_batch(self, items: Sequence[m.Valid]) -> list[Outcome]:
        reply = self._call(Apply(next(self._ids), [m.to_wire(v) for v in items]))
        assert isinstance(reply, Applied)
        return _outcomes_of(reply, items)

    def breach_events(self, now: datetime) -> list[dict[str, Any]]:
        if not self._closing:
            self._chain.ensure_running()  # the SLA watcher calls this regularly, off the event loop
        reply = self._call(Breaches(next(self._ids), now))
        assert isinstance(reply, BreachList)
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
