"""A projector thread that dies is restarted by ``hub up``'s supervisor and misses nothing.

The failure is injected in the projector's reader (an error that is not an ``Exception``, which
its own retry loop does not catch: the thread ends), once, part-way through the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from eventsourcing.persistence import Notification

from ops.bootstrap import build_ledger
from ops.supervisor import Supervisor, projector_child
from projections import ProjectionService
from projections.projector import reader_for
from tests.projection_history import random_city
from tests.support import eventually


class Injected(BaseException):
    """Not an ``Exception``: the projector's retry loop lets it end the thread."""


async def test_dead_projector_thread_is_restarted_and_catches_up(tmp_path: Path) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    random_city(ledger, seed=5, n_cases=40, n_steps=600, saves=10)
    head = ledger.recorder.max_notification_id() or 0
    read = reader_for(ledger.recorder)
    calls = {"n": 0}

    def failing_once(after: int, limit: int) -> Sequence[Notification]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Injected("injected projector failure")
        return read(after, limit)

    service = ProjectionService(tmp_path / "views.duckdb", failing_once, batch_size=50, poll_interval=0.05)
    projector = service.projector
    supervisor = Supervisor([projector_child(projector)], stopping=lambda: False, every_s=0.05)
    service.start()
    try:
        await eventually(lambda: projector.dead, timeout=60)  # the injected failure ended the thread
        assert isinstance(projector.error, Injected)
        assert supervisor.restarts()["projector"] == 0
        await supervisor.tick()  # down → restarted, with the log line naming it
        assert supervisor.restarts()["projector"] == 1
        assert projector.running and projector.error is None
        await eventually(lambda: projector.position >= head, timeout=60)
        await supervisor.tick()
        await eventually(lambda: supervisor.problems() == {}, timeout=60)  # settled after its restart
        assert supervisor.restarts()["projector"] == 1  # a healthy thread is left alone
    finally:
        await asyncio.to_thread(service.close)

    # Nothing missed or doubled: the live file equals a fresh rebuild of the same log.
    fresh = ProjectionService(tmp_path / "fresh.duckdb", ledger.recorder, batch_size=500)
    try:
        fresh.catch_up()
        again = ProjectionService(tmp_path / "views.duckdb", ledger.recorder)
        try:
            for table in ("events ORDER BY seq", "cases ORDER BY case_id"):
                got = again.store.reader().sql(f"SELECT * FROM {table}").to_arrow_table()
                want = fresh.store.reader().sql(f"SELECT * FROM {table}").to_arrow_table()
                assert got.num_rows > 0 and got.equals(want), table
        finally:
            again.close()
    finally:
        fresh.close()
