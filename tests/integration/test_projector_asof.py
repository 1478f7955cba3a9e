"""As-of: the board (and every case) at T equals a replay of only the events recorded up to T."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import Notification

from hub.views import Window
from ops.bootstrap import build_ledger
from projections import ProjectionService, reader_for, rebuild
from tests.projection_history import T0, random_city
from tests.unit.test_projection_properties import TABLES, _dump


def test_as_of_time_equals_replay_up_to_time(tmp_path: Path) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    random_city(ledger, seed=7, n_cases=40, n_steps=400, saves=12)
    notes = ledger.recorder.select_notifications(start=1, limit=100_000)
    stamps = [ledger.mapper.to_domain_event(n).timestamp for n in notes]
    live = ProjectionService(tmp_path / "live.duckdb", ledger.recorder, batch_size=50)
    live.catch_up()
    now = T0 + timedelta(days=3)
    try:
        for k in (len(notes) // 5, len(notes) // 2, len(notes) - 3):
            t = stamps[k]
            # "recorded up to T": the longest prefix of the log whose events were all recorded by T
            prefix = next((i for i, s in enumerate(stamps) if s > t), len(stamps))
            replay = ProjectionService(tmp_path / f"replay-{k}.duckdb", ledger.recorder, batch_size=1000)
            replay.catch_up(until=notes[prefix - 1].id)
            with live.views.as_of(time=t) as snap:
                assert snap.position() == notes[prefix - 1].id
                assert snap.board(now=now, window=Window()) == replay.views.board(now=now, window=Window())
                assert snap.arrow("SELECT * FROM cases ORDER BY case_id").equals(
                    replay.views.arrow("SELECT * FROM cases ORDER BY case_id")
                )
                assert snap.arrow("SELECT count(*) AS n FROM events").to_pylist() == [{"n": prefix}]
            replay.close()
        # the live file was only read: it still holds everything
        assert live.store.counts()["events"] == len(notes)
    finally:
        live.close()


def test_rebuild_swaps_in_a_fresh_file_and_until_gives_an_auditor_copy(tmp_path: Path) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    random_city(ledger, seed=3, n_cases=20, n_steps=150)
    target = tmp_path / "views.duckdb"
    seen: list[int] = []
    applied = rebuild(target, ledger.recorder, batch_size=64, progress=lambda n, pos: seen.append(n))
    total = ledger.recorder.max_notification_id()
    assert applied == total and seen[-1] == total and len(seen) > 1
    again = rebuild(target, ledger.recorder)  # replay over an existing file: atomic replace
    assert again == total
    copy = rebuild(tmp_path / "audit.duckdb", ledger.recorder, until=30, swap=False)
    assert copy == 30
    service = ProjectionService(target, ledger.recorder)
    assert service.projector.position == total and service.catch_up() == 0
    service.close()


def test_a_failing_replay_leaves_the_live_file_untouched(tmp_path: Path) -> None:
    """The replay reads in a background thread: an error there surfaces from ``rebuild`` and
    nothing is swapped in (the previous read models stay), and a later replay succeeds."""
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    random_city(ledger, seed=5, n_cases=15, n_steps=120)
    total = ledger.recorder.max_notification_id() or 0
    target = tmp_path / "views.duckdb"
    assert rebuild(target, ledger.recorder, until=20, swap=False) == 20
    read = reader_for(ledger.recorder)
    calls: list[int] = []

    def flaky(after: int, limit: int) -> Sequence[Notification]:
        calls.append(after)
        if len(calls) == 3:  # the third section: staged sections exist, the fold has not run
            raise OSError("store went away")
        return read(after, limit)

    with pytest.raises(OSError, match="store went away"):
        rebuild(target, flaky, batch_size=4)
    service = ProjectionService(target, ledger.recorder)
    try:
        assert service.projector.position == 20 and service.store.counts()["events"] == 20
    finally:
        service.close()
    assert rebuild(target, ledger.recorder, batch_size=4) == total  # sections 4, 8, 16, …


def test_replay_until_stops_inside_a_section(tmp_path: Path) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    random_city(ledger, seed=6, n_cases=10, n_steps=90)
    seen: list[tuple[int, int]] = []
    applied = rebuild(tmp_path / "audit.duckdb", ledger.recorder, until=37, batch_size=5, swap=False,
                      progress=lambda n, pos: seen.append((n, pos)))  # fmt: skip
    assert applied == 37 and seen[-1] == (37, 37)
    assert [n for n, _ in seen] == [5, 15, 35, 37]  # sections of 5, 10, 20, then cut at 37


def test_replay_equals_incremental_on_each_store(store_url: str, tmp_path: Path) -> None:
    """The bulk fold of ``hub replay`` against the live batches, on SQLite and PostgreSQL (whose
    reader may run the write barrier), with folds smaller than the log (carried continuation)."""
    ledger = build_ledger(store_url)
    random_city(ledger, seed=11, n_cases=25, n_steps=260, saves=9)
    live = ProjectionService(tmp_path / "live.duckdb", ledger.recorder, batch_size=37)
    try:
        live.catch_up()
        expected = _dump(live)
    finally:
        live.close()
    total = ledger.recorder.max_notification_id() or 0
    assert total > 80  # several folds of 30 (the first one whole-history, the rest carried)
    assert rebuild(tmp_path / "replay.duckdb", ledger.recorder, batch_size=16, fold_size=30) == total
    replayed = ProjectionService(tmp_path / "replay.duckdb", ledger.recorder)
    try:
        got = _dump(replayed)
    finally:
        replayed.close()
    for name in TABLES:
        assert got[name].equals(expected[name]), f"{name}: replay != live batches"
