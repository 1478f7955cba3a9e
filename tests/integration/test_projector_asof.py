"""As-of: the board (and every case) at T equals a replay of only the events recorded up to T."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hub.views import Window
from ops.bootstrap import build_ledger
from projections import ProjectionService, rebuild
from tests.projection_history import T0, random_city


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
