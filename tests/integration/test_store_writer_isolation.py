"""A store-writer failure on one event of a batch dead-letters that event and stores the rest
(issue 14, found item 2): before, the whole batch failed every 30 s forever, its valid neighbours
never stored and nothing in CITY_DLQ. The store's own failures still fail the batch whole."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from eventsourcing.persistence import OperationalError

from hub import messages as m
from hub.adapters.config.loading import load_catalogue
from hub.application import CaseLedger, Verdict, is_infrastructure
from hub.intake import IntakeSettings, read_dead_letters
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.bootstrap import writer_process_ledger as RemoteLedger
from ops.natsd import EmbeddedNats
from tests.factories import event
from tests.support import eventually

FAR = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=8)))
"""Overflows when the case's deadlines are added ("year 10000 is out of range")."""


def _reports(prefix: str, n: int) -> list[m.Valid]:
    catalogue = load_catalogue()
    out = []
    for i in range(n):
        valid = m.validate(orjson.dumps(event(f"{prefix}{i:03d}", m.Action.REPORTED)), catalogue)
        assert isinstance(valid, m.Valid)
        out.append(valid)
    return out


def _far_future(valid: m.Valid) -> m.Valid:
    """The edge refuses such a time (HUB_TIME_WINDOW); built past it, as a wide window lets it by."""
    return m.Valid(msgspec.structs.replace(valid.envelope, time=FAR), valid.payload, valid.case_id)


def _check(outcomes: list[Any], poison: set[int], n: int) -> None:
    for i, outcome in enumerate(outcomes):
        if i in poison:
            assert outcome.verdict is Verdict.FAILED, outcome
            assert "year" in outcome.detail and "out of range" in outcome.detail
            assert outcome.field == "time"
        else:
            assert outcome.verdict is Verdict.APPLIED, (i, outcome)
    assert len(outcomes) == n


def test_in_process_ledger_isolates_the_failing_event(tmp_path: Path) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    items = _reports("I", 12)
    items[3], items[8] = _far_future(items[3]), _far_future(items[8])
    _check(ledger.apply_batch(items), {3, 8}, 12)
    assert ledger.case_count() == 10
    # The store is not blamed, and the next batch goes through as usual.
    assert {o.verdict for o in ledger.apply_batch(_reports("J", 5))} == {Verdict.APPLIED}


@pytest.mark.timeout(120)
def test_the_writer_process_isolates_the_failing_event_and_stores_the_rest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    items = _reports("W", 20)
    items[0], items[19] = _far_future(items[0]), _far_future(items[19])

    async def scenario() -> None:
        ledger = RemoteLedger(url)
        try:
            before, batch, after = await asyncio.gather(
                ledger.submit_batch(_reports("A", 10)),
                ledger.submit_batch(items),
                ledger.submit_batch(_reports("B", 10)),
            )
            assert {o.verdict for o in before + after} == {Verdict.APPLIED}
            _check(batch, {0, 19}, 20)
        finally:
            ledger.close()

    asyncio.run(scenario())
    assert build_ledger(url).case_count() == 38


def test_a_failure_a_known_good_event_shares_is_the_stores_not_the_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading cases fails for every event (the store, though the error does not say so): the batch
    fails whole, to be redelivered; nothing is dead-lettered."""
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    ledger.apply_batch(_reports("G", 3))  # known good
    ledger.forget_all()  # every case is read from the store from now on

    def broken(self: CaseLedger, case_id: Any) -> Any:
        raise RuntimeError("the store returned nonsense")

    monkeypatch.setattr(CaseLedger, "get_case", broken)
    registers = []
    for i in range(3):
        valid = m.validate(orjson.dumps(event(f"G{i:03d}", m.Action.REGISTERED, n=1)), load_catalogue())
        assert isinstance(valid, m.Valid)
        registers.append(valid)
    with pytest.raises(RuntimeError, match="nonsense"):
        ledger.apply_batch(registers)


def test_infrastructure_errors_are_told_from_an_events() -> None:
    assert is_infrastructure(OperationalError("database is locked"))
    assert is_infrastructure(OSError(28, "No space left on device"))
    assert not is_infrastructure(OverflowError("date value out of range"))
    assert not is_infrastructure(ValueError("year 10000 is out of range"))


async def test_the_intake_dead_letters_the_isolated_event_with_its_reason(
    nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end over NATS: the isolated event lands in CITY_DLQ as ``store_failed`` with the
    exception, its neighbours of the same batch are stored and acknowledged."""
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    original = CaseLedger._report

    def report(self: CaseLedger, valid: m.Valid, grid: str | None) -> Any:
        if valid.envelope.caseref == "P-POISON":
            raise OverflowError("date value out of range")
        return original(self, valid, grid)

    monkeypatch.setattr(CaseLedger, "_report", report)
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10)
    settings = IntakeSettings(linger_s=0.5)  # the default ack wait: no redelivery while a batch is isolated
    intake, task = await start_intake(nc, url, settings=settings, writer_process=False)
    try:
        for caseref in ("P-1", "P-2", "P-POISON", "P-3", "P-4"):
            await js.publish("city.citymgmt.case.reported", orjson.dumps(event(caseref, "reported")))
        await eventually(lambda: intake.stats.applied == 4 and intake.stats.dead_lettered == 1, timeout=60)
        (letter,) = await read_dead_letters(js)
        assert letter.reason == m.Reason.STORE_FAILED.value
        assert letter.field == "time"
        assert "OverflowError: date value out of range" in letter.detail
    finally:
        intake.stop()
        await task
        await nc.close()
    assert build_ledger(url).case_count() == 4


def test_a_case_with_steps_on_both_sides_of_the_poison_keeps_both(tmp_path: Path) -> None:
    """Isolating empties the case cache whenever a half fails; a case reported before the poison
    and registered after it must still get both steps, not a conflict that fails the batch again
    on every redelivery (the halves only find the failing event; the rest is staged once more)."""
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    catalogue = load_catalogue()

    def valid(caseref: str, action: m.Action, n: int = 0) -> m.Valid:
        checked = m.validate(orjson.dumps(event(caseref, action, n=n)), catalogue)
        assert isinstance(checked, m.Valid)
        return checked

    items = [
        valid("K-1", m.Action.REPORTED),
        valid("K-2", m.Action.REPORTED),
        _far_future(valid("K-POISON", m.Action.REPORTED)),
        valid("K-3", m.Action.REPORTED),
        valid("K-1", m.Action.REGISTERED, n=1),
        valid("K-2", m.Action.REGISTERED, n=1),
    ]
    ledger = build_ledger(url)
    outcomes = ledger.apply_batch(items)
    assert [o.verdict for o in outcomes] == [Verdict.APPLIED] * 2 + [Verdict.FAILED] + [Verdict.APPLIED] * 3

    async def through_the_writer() -> list[Any]:
        remote = RemoteLedger(f"sqlite:///{tmp_path / 'writer.sqlite'}")
        try:
            return await remote.submit_batch(items)
        finally:
            remote.close()

    remote_outcomes = asyncio.run(through_the_writer())
    assert [o.verdict for o in remote_outcomes] == [o.verdict for o in outcomes]
    for store in ("events.sqlite", "writer.sqlite"):
        reread = build_ledger(f"sqlite:///{tmp_path / store}")
        assert reread.case_count() == 3
        for caseref in ("K-1", "K-2"):
            case_id = items[0].case_id if caseref == "K-1" else items[1].case_id
            assert reread.get_case(case_id).version == 2, (store, caseref)
