"""The store-writer process over its pipelined pipe: batches in order, blocking calls from another
thread while the event loop owns the pipe, a writer killed mid-stream is restarted and the batch in
flight fails (it would be redelivered), nothing applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from hub import messages as m
from hub.adapters.audit.chain import AuditChain
from hub.adapters.config.loading import load_catalogue
from hub.adapters.store.remote import RemoteLedger
from hub.adapters.store.wire import WriterError
from hub.application import Verdict
from ops.bootstrap import build_ledger, writer_process_ledger
from tests.factories import LIFECYCLE, event
from tests.support import eventually


def _valids(prefix: str, cases: int) -> list[m.Valid]:
    catalogue = load_catalogue()
    out: list[m.Valid] = []
    for step, action in enumerate(LIFECYCLE[:3]):
        for i in range(cases):
            result = m.validate(orjson.dumps(event(f"{prefix}{i:04d}", action, n=step)), catalogue)
            assert isinstance(result, m.Valid)
            out.append(result)
    return out


@pytest.mark.timeout(300)
def test_pipelined_batches_blocking_calls_and_a_killed_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    valids = _valids("P", 200)
    batches = [valids[i : i + 100] for i in range(0, len(valids), 100)]

    async def scenario() -> None:
        ledger = writer_process_ledger(url)
        try:
            # Every batch submitted at once: the writer applies them in submission order.
            results = await asyncio.gather(*(ledger.submit_batch(b) for b in batches))
            assert [o.verdict for r in results for o in r] == [Verdict.APPLIED] * len(valids)
            # A blocking call from another thread goes through the loop's pipe, in order.
            assert await asyncio.to_thread(ledger.breach_events, datetime(2000, 1, 1, tzinfo=UTC)) == []
            again = await ledger.submit_batch(batches[0])
            assert {o.verdict for o in again} == {Verdict.DUPLICATE}

            assert ledger._process is not None
            os.kill(ledger._process.pid, signal.SIGKILL)
            ledger._process.join(10)
            with pytest.raises(WriterError):
                await ledger.submit_batch(_valids("Q", 50)[:50])
            # The next batch restarts the writer; the store is intact.
            later = _valids("R", 50)
            outcomes = await ledger.submit_batch(later[:50])
            assert {o.verdict for o in outcomes} == {Verdict.APPLIED}
        finally:
            ledger.close()

    asyncio.run(scenario())
    store = build_ledger(url)
    assert store.recorder.max_notification_id() == len(valids) + 50
    # The audit chain follower (its own process) chained everything before it stopped.
    chain = AuditChain(store.recorder)
    assert chain.head().count == len(valids) + 50
    assert chain.verify().ok


@pytest.mark.timeout(300)
def test_the_chain_follows_while_the_writer_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    valids = _valids("F", 100)

    async def scenario() -> None:
        ledger = writer_process_ledger(url)
        try:
            await ledger.submit_batch(valids)
            reader = build_ledger(url)
            await eventually(
                lambda: AuditChain(reader.recorder).head().count == len(valids),
                every=0.05,
                what="the chain to follow every recorded event",
            )
        finally:
            ledger.close()

    asyncio.run(scenario())


@pytest.mark.timeout(300)
def test_a_dead_chain_follower_is_restarted_and_catches_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    valids = _valids("C", 100)

    async def scenario() -> None:
        ledger = writer_process_ledger(url)
        try:
            await ledger.submit_batch(valids[:50])
            follower = ledger._chain._process
            assert follower is not None
            os.kill(follower.pid, signal.SIGKILL)
            follower.join(10)
            await ledger.submit_batch(valids[50:])  # recorded while no follower runs
            # The SLA watcher's regular call (off the loop) notices and restarts it.
            await asyncio.to_thread(ledger.breach_events, datetime(2000, 1, 1, tzinfo=UTC))
            assert ledger._chain._process is not None and ledger._chain._process.is_alive()
        finally:
            ledger.close()

    asyncio.run(scenario())
    store = build_ledger(url)  # keep a reference: a collected application closes its pool
    chain = AuditChain(store.recorder)
    assert chain.head().count == len(valids)
    assert chain.verify().ok


def _with_writer(url: str, body: Callable[[RemoteLedger], Awaitable[None]]) -> None:
    """Run ``body`` against a fresh store writer on ``url``, closing it however ``body`` ends."""

    async def scenario() -> None:
        ledger = writer_process_ledger(url)
        try:
            await body(ledger)
        finally:
            ledger.close()

    asyncio.run(scenario())


def _versions(url: str) -> dict[str, list[int]]:
    """Per case id: the versions the store holds (through the library, as auditors read it)."""
    store = build_ledger(url)
    out: dict[str, list[int]] = {}
    for n in store.recorder.select_notifications(start=1, limit=100_000):
        out.setdefault(str(n.originator_id), []).append(n.originator_version)
    return out


@pytest.mark.timeout(300)
def test_a_conflict_is_decided_again_with_the_batches_staged_on_top_of_it(tmp_path: Path) -> None:
    """A cold writer creates reported cases optimistically: the store refuses them (they exist), the
    batch is decided again from the store, and the batch already staged on top of it is too."""
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    valids = _valids("K", 50)  # reports, registers, dispatches of 50 cases
    reports, registers = valids[:50], valids[50:100]
    build_ledger(url).apply_batch(reports)  # recorded before this writer ever saw them

    async def scenario(ledger: RemoteLedger) -> None:
        first, second = await asyncio.gather(ledger.submit_batch(reports), ledger.submit_batch(registers))
        assert {o.verdict for o in first} == {Verdict.DUPLICATE}
        assert {o.verdict for o in second} == {Verdict.APPLIED}

    _with_writer(url, scenario)
    assert set(map(tuple, _versions(url).values())) == {(1, 2)}


@pytest.mark.timeout(300)
def test_a_batch_not_recorded_fails_and_nothing_decided_on_top_of_it_is_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    valids = _valids("N", 20)
    reports, registers, dispatches = valids[:20], valids[20:40], valids[40:60]

    async def scenario(ledger: RemoteLedger) -> None:
        assert {o.verdict for o in await ledger.submit_batch(reports)} == {Verdict.APPLIED}
        # The store refuses every second version from now on (as a failing disk or a broken
        # constraint would): the registers cannot be recorded, even when decided again.
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        con.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON stored_events WHEN NEW.originator_version = 2"
            " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
        con.commit()
        failed, after = await asyncio.gather(
            ledger.submit_batch(registers), ledger.submit_batch(dispatches), return_exceptions=True
        )
        assert isinstance(failed, WriterError) and "refused by the test" in str(failed)
        # The dispatches were decided on top of the registers; decided again from the store,
        # each case is still only reported, so the dispatch is refused (and retried by the intake).
        assert isinstance(after, list) and {o.verdict for o in after} == {Verdict.REFUSED}
        con.execute("DROP TRIGGER refuse")
        con.commit()
        con.close()
        assert {o.verdict for o in await ledger.submit_batch(registers)} == {Verdict.APPLIED}
        assert {o.verdict for o in await ledger.submit_batch(dispatches)} == {Verdict.APPLIED}

    _with_writer(url, scenario)
    assert set(map(tuple, _versions(url).values())) == {(1, 2, 3)}


@pytest.mark.timeout(300)
def test_a_killed_recorder_fails_the_batches_in_flight_and_the_writer_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    valids = _valids("D", 30)

    async def scenario(ledger: RemoteLedger) -> None:
        assert {o.verdict for o in await ledger.submit_batch(valids[:30])} == {Verdict.APPLIED}
        assert ledger._process is not None
        writer = ledger._process.pid
        (recorder,) = (int(pid) for pid in Path(f"/proc/{writer}/task/{writer}/children").read_text().split())
        os.kill(recorder, signal.SIGKILL)
        with pytest.raises(WriterError):
            await ledger.submit_batch(valids[30:60])
        # The next batch starts a new writer (and recorder); the lost batch is sent again.
        assert {o.verdict for o in await ledger.submit_batch(valids[30:60])} == {Verdict.APPLIED}
        assert {o.verdict for o in await ledger.submit_batch(valids[60:])} == {Verdict.APPLIED}

    _with_writer(url, scenario)
    assert set(map(tuple, _versions(url).values())) == {(1, 2, 3)}
