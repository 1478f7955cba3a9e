"""The demo city through the real path: simulator → connectors → NATS → intake → store, with no dead
letters (every simulated department record maps to events the closed loop accepts)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from connectors.base import CHINA_TZ
from connectors.publisher import publish_events
from connectors.simulator import Simulator
from hub.intake import IntakeSettings, read_dead_letters
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.natsd import EmbeddedNats
from tests.support import eventually


@pytest.mark.slow
async def test_a_simulated_morning_goes_through_without_dead_letters(
    nats_server: EmbeddedNats, tmp_path: Any
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    intake, task = await start_intake(
        # retries that outlast a loaded machine's slow batches: "no dead letters" must not depend
        # on its speed (the ack wait is at most half their sum, IntakeSettings)
        nc,
        store,
        settings=IntakeSettings(retry_delays_s=(0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0), ack_wait_s=5.0),
    )
    try:
        start = datetime(2026, 3, 2, 7, 0, tzinfo=CHINA_TZ)  # a Monday morning
        sim = Simulator(seed=7, rate=400, duration=timedelta(hours=3), start=start)

        async def publish(events: Any) -> Any:
            return await publish_events(js, events)

        counts = await sim.run(publish, speed=float("inf"))
        assert counts["rejected"] == 0 and counts["events"] > 2000
        stats = intake.stats
        await eventually(
            lambda: stats.applied + stats.duplicates + stats.dead_lettered >= counts["accepted"], timeout=120
        )
        letters = await read_dead_letters(js)
    finally:
        intake.stop()
        await task
        await nc.close()
    assert [(lt.reason, lt.subject, lt.detail) for lt in letters] == []
    ledger = build_ledger(store)
    # every applied event is stored, plus the hub's own (auto-dispatch by 权责清单, link conclusions)
    assert (ledger.recorder.max_notification_id() or 0) >= intake.stats.applied
