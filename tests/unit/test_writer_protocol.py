"""The store writer's pipe protocol cannot spin or hand a batch another batch's reply.

The cause found behind the "reply nobody asked for" flood (issue 14): the deadline watcher's
blocking call read the pipe from its thread while the event loop attached the same pipe, so two
readers each took part of the other's frames. The intake's parser then read a size from the middle
of a frame; a negative one made it loop without consuming anything, forever, on the event loop.
These tests pin each guard: frames of impossible size, replies to nobody or to another request,
and a recorder answer for a batch the writer no longer waits for.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque
from typing import Any

import msgspec
import pytest

from hub.adapters.store.channel import Channel as _Channel
from hub.adapters.store.wire import Applied as _Applied
from hub.adapters.store.wire import BreachList as _BreachList
from hub.adapters.store.wire import ProtocolError, WriterError
from hub.adapters.store.wire import Recorded as _Recorded
from hub.adapters.store.writer import _Decider, _InFlight, _Slot


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False
        self.written: list[bytes] = []

    def writelines(self, data: Any) -> None:
        self.written.extend(bytes(d) for d in data)

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


def _frame(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


def _reply(obj: Any) -> bytes:
    return _frame(msgspec.msgpack.encode(obj))


async def _channel() -> tuple[_Channel, _Transport]:
    channel, transport = _Channel(), _Transport()
    channel.connection_made(transport)
    return channel, transport


def test_replies_are_matched_by_request_number_in_order() -> None:
    async def scenario() -> None:
        channel, _ = await _channel()
        first, second = channel.send(1, b"a"), channel.send(2, b"b")
        channel.data_received(_reply(_Applied(1, [])) + _reply(_BreachList(2, [])))
        assert (await first) == _Applied(1, [])
        assert (await second) == _BreachList(2, [])
        assert channel.usable

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [-2, -4, -100, -(2**31)])
def test_a_frame_of_impossible_size_drops_the_pipe_at_once(size: int) -> None:
    """A negative size used to make the parser loop without consuming a byte, forever."""

    async def scenario() -> None:
        channel, transport = await _channel()
        waiter = channel.send(7, b"x")
        started = time.monotonic()
        channel.data_received(struct.pack("!i", size) + b"\x00" * 40)
        assert time.monotonic() - started < 1.0
        assert transport.aborted and not channel.usable
        with pytest.raises(WriterError):
            await waiter
        channel.data_received(_reply(_Applied(7, [])))  # nothing read after that is matched
        assert not channel.waiting

    asyncio.run(scenario())


def test_a_reply_nobody_asked_for_drops_the_pipe_instead_of_being_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        channel, transport = await _channel()
        channel.data_received(_reply(_Applied(3, [])) * 1000)
        assert transport.aborted and not channel.usable

    asyncio.run(scenario())
    assert (
        len([r for r in caplog.records if "out of step" in r.getMessage() or "writer sent" in r.getMessage()])
        == 1
    )


def test_a_reply_to_another_request_never_reaches_the_waiting_batch() -> None:
    """Matched by order alone, a breach list (or another batch's "applied") read by the wrong
    waiter would acknowledge a batch that was never recorded."""

    async def scenario() -> None:
        channel, transport = await _channel()
        batch, later = channel.send(10, b"a"), channel.send(11, b"b")
        channel.data_received(_reply(_BreachList(9, [])))
        for waiter in (batch, later):
            with pytest.raises(WriterError):
                await waiter
        assert transport.aborted

    asyncio.run(scenario())


def test_garbage_that_is_no_reply_drops_the_pipe() -> None:
    async def scenario() -> None:
        channel, transport = await _channel()
        waiter = channel.send(1, b"a")
        channel.data_received(_frame(b"\xc1\xc1\xc1"))
        with pytest.raises(WriterError):
            await waiter
        assert transport.aborted

    asyncio.run(scenario())


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


class _Ledger:
    def __init__(self) -> None:
        self.staged = 0

    def decide_isolating(
        self, items: Any, *, trust_cache: bool, before_isolating: Any
    ) -> tuple[list[Any], list[Any]]:
        self.staged += 1
        return [], []

    def forget_all(self) -> None:
        pass


def _decider() -> tuple[_Decider, _Ledger, _Recorder]:
    ledger, recorder = _Ledger(), _Recorder()
    decider = _Decider(None, ledger, recorder)  # type: ignore[arg-type]
    return decider, ledger, recorder


def test_an_answer_for_a_batch_the_writer_no_longer_waits_for_restages_nothing() -> None:
    """After a failure the writer stages the later batches again under new numbers; the recorder's
    answers to their old numbers ("skipped") must not fail, restart or re-drive anything."""
    decider, ledger, recorder = _decider()
    for request_id in (1, 2, 3):
        slot = _Slot(request_id)
        decider.replies.append(slot)
        decider._decide_and_send(_InFlight(slot, []), trust_cache=True)
    assert [b.seq for b in decider.in_flight] == [1, 2, 3]
    decider._recorded(_Recorded(1, error="refused", conflict=False))  # batch 1 failed: 2, 3 again
    assert [b.seq for b in decider.in_flight] == [4, 5]
    staged_before, sent_before = ledger.staged, len(recorder.sent)
    for stale in (
        _Recorded(2, skipped=True),
        _Recorded(3, skipped=True),
        _Recorded(2, error="x", conflict=True),
    ):
        decider._recorded(stale)
    assert (ledger.staged, len(recorder.sent)) == (staged_before, sent_before)
    assert [b.seq for b in decider.in_flight] == [4, 5]
    decider._recorded(_Recorded(4))
    decider._recorded(_Recorded(5))
    assert not decider.in_flight
    assert [s.reply is not None for s in decider.replies] == [True, True, True]


def test_an_answer_ahead_of_the_waiting_batch_ends_the_writer() -> None:
    decider, _, _ = _decider()
    slot = _Slot(1)
    decider.replies.append(slot)
    decider._decide_and_send(_InFlight(slot, []), trust_cache=True)
    with pytest.raises(ProtocolError):
        decider._recorded(_Recorded(2))


def test_requests_waiting_for_the_pipe_keep_their_order() -> None:
    """A request queued while the pipe is being attached stays ahead of every later one, even when
    the pipe becomes usable before the queued one was written (the old counter was raised only
    once its coroutine ran, so a later batch could take the fast path first)."""
    from hub.adapters.store.remote import RemoteLedger

    async def scenario() -> None:
        ledger = RemoteLedger.__new__(RemoteLedger)
        ledger._backlog = deque()
        ledger._drainer = None
        ledger._channel = None
        channel, transport = await _channel()

        async def attach() -> None:
            ledger._channel = channel

        ledger._attach = attach  # type: ignore[method-assign]
        first = ledger._send(1, b"first")
        ledger._channel = channel  # usable before the queued request was written
        second = ledger._send(2, b"second")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert [w for w in transport.written if w in (b"first", b"second")] == [b"first", b"second"]
        channel.data_received(_reply(_Applied(1, [])) + _reply(_Applied(2, [])))
        assert (await first, await second) == (_Applied(1, []), _Applied(2, []))

    asyncio.run(scenario())
