"""``/readyz``'s probes against a real nats-server: the start backlog, a stalled intake, JetStream.

Events are published before any intake runs (the backlog a restart finds); readiness must say
"not ready" with the backlog's size, report the intake stalled once nothing moves for
``stall_s`` while events wait, and become ready by itself once an intake has drained them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from connectors.publisher import publish_events
from hub.intake import IntakeSettings, ensure_consumer, ensure_streams
from ops.bootstrap import connect_nats, start_intake
from ops.natsd import EmbeddedNats
from ops.supervisor import Readiness
from tests.factories import case_history
from tests.support import eventually


async def test_start_backlog_stall_and_recovery(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    nc = await connect_nats(nats_server.url, "readiness-test")
    try:
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        settings = IntakeSettings()
        await ensure_consumer(js, settings)
        events = [e for i in range(150) for e in case_history(f"BACKLOG-{i:04d}")]
        results = await publish_events(js, events)
        assert {r.status for r in results} == {"accepted"}

        moved = {"n": 0}
        readiness = Readiness(
            nc, lambda: [d for d, _ in settings.consumers()], lambda: moved["n"], stall_s=1.0
        )
        await readiness.tick()
        assert readiness.jetstream is None  # the probe stream was created and written
        assert readiness.start_backlog == len(events)
        assert "start-backlog" in readiness.problems()
        assert f"{len(events)} events" in readiness.problems()["start-backlog"]

        await asyncio.sleep(1.2)  # nothing moves while events wait: stalled
        await readiness.tick()
        assert "no progress" in readiness.problems().get("intake", "")

        intake, task = await start_intake(
            nc, f"sqlite:///{tmp_path / 'events.sqlite'}", settings=settings, writer_process=False
        )
        try:

            async def drained() -> bool:
                moved["n"] = intake.stats.received
                await readiness.tick()
                return readiness.problems() == {}

            await eventually(drained, timeout=120, every=0.5)
            assert readiness.start_backlog == 0
            assert intake.stats.applied == len(events)
        finally:
            intake.stop()
            await asyncio.wait_for(task, 60)
    finally:
        await nc.close()


async def test_jetstream_probe_names_a_missing_server(nats_server: EmbeddedNats) -> None:
    nc = await connect_nats(nats_server.url, "readiness-probe")
    try:
        readiness = Readiness(nc, lambda: [], lambda: 0)
        await readiness.tick()
        assert readiness.jetstream is None
        nats_server.stop()
        await eventually(lambda: not nc.is_connected, timeout=30)
        await readiness.tick()
        assert readiness.problems()["jetstream"] == "not connected to NATS (reconnecting)"
        await nats_server.restart()  # same port, same store: the probe writes again by itself
        await eventually(lambda: nc.is_connected, timeout=30)

        async def writes() -> bool:
            await readiness.tick()
            return readiness.jetstream is None

        await eventually(writes, timeout=60, every=0.5)
    finally:
        await nc.close()
