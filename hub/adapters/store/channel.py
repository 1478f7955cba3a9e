"""The intake's end of the store writer's pipe (管道), served by its event loop.

Why its own module: framing and matching replies is where the pipe once went wrong (a second reader
took part of its frames; a garbage size wedged the loop and flooded the log, issue 14), and it is
tested on its own; ``remote.RemoteLedger`` only decides when to attach, restart and drop a channel.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque

import msgspec

from hub.adapters.store.wire import ProtocolError, Reply, WriterError

log = logging.getLogger(__name__)

MAX_FRAME = 1 << 31
"""Largest reply frame the intake accepts; a bigger size field means the stream is out of step."""


_SIZE = struct.Struct("!i")
_BIG_SIZE = struct.Struct("!Q")


class Channel(asyncio.Protocol):
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

    def __init__(self, decoder: msgspec.msgpack.Decoder[Reply] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: deque[tuple[int, asyncio.Future[Reply]]] = deque()
        self.lost: BaseException | None = None
        self.decoder: msgspec.msgpack.Decoder[Reply] = decoder or msgspec.msgpack.Decoder(Reply)

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

    def send(self, request_id: int, payload: bytes) -> asyncio.Future[Reply]:
        """Queue one request; the future gets its reply. Call only when :attr:`usable`."""
        assert self.transport is not None
        size = len(payload)
        header = _SIZE.pack(size) if size <= 0x7FFFFFFF else _SIZE.pack(-1) + _BIG_SIZE.pack(size)
        self.transport.writelines((header, payload))
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.waiting.append((request_id, waiter))
        return waiter


def forward(to: asyncio.Future[Reply], done: asyncio.Future[Reply]) -> None:
    """Hand a reply (or the pipe's failure) from the channel's future to the caller's."""
    if to.done():
        return
    if done.cancelled():
        to.cancel()
    elif (error := done.exception()) is not None:
        to.set_exception(error)
    else:
        to.set_result(done.result())
