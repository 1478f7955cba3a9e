"""Issue 2 acceptance: the intake process is SIGKILLed mid-stream and restarted — no event lost, none
applied twice (counts, and per-case versions without gaps). Real subprocesses, real nats-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.publisher import publish_events
from hub.intake import ensure_streams
from ops.bootstrap import build_ledger, connect_nats
from ops.natsd import EmbeddedNats
from tests.factories import case_history
from tests.support import assert_exactly_once, eventually, kill_leftovers, stored_history

HUB = str(Path(sys.executable).parent / "hub")
CASES = 1000  # × 7 closed-loop events


def spawn_intake(nats_url: str, store_url: str, tmp_path: Path, tag: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"intake-{tag}.log").open("wb")
    return subprocess.Popen(
        [
            HUB,
            "intake",
            "--nats-url",
            nats_url,
            "--store-url",
            store_url,
            "--batch-size",
            "100",
            "--retry-delays",
            "0.2,0.5,1,2,4,8,16",  # outlast a loaded machine's restart: nothing dead-lettered early
            "--ack-wait",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HUB_DATA_DIR": str(tmp_path / "var")},
    )


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_nothing_and_doubles_nothing(
    nats_server: EmbeddedNats, store_url: str, tmp_path: Path
) -> None:
    events = [e for i in range(CASES) for e in case_history(f"K{i:04d}")]
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    await ensure_streams(js)
    half = len(events) // 2
    await publish_events(js, events[:half])
    ledger = build_ledger(store_url)

    def stored() -> int:
        return ledger.recorder.max_notification_id() or 0

    procs: list[subprocess.Popen[bytes]] = []
    first = spawn_intake(nats_server.url, store_url, tmp_path, "1")
    procs.append(first)
    publishing = asyncio.create_task(publish_events(js, events[half:]))  # the stream keeps flowing
    try:
        await eventually(lambda: stored() > 1500, every=0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = stored()
        assert killed_at < len(events), "the intake finished before it could be killed mid-stream"

        second = spawn_intake(nats_server.url, store_url, tmp_path, "2")
        procs.append(second)
        await eventually(lambda: stored() > killed_at + 1000, every=0.01)
        second.send_signal(signal.SIGKILL)  # a second crash, later in the stream
        second.wait(10)

        third = spawn_intake(nats_server.url, store_url, tmp_path, "3")
        procs.append(third)
        assert {r.status for r in await publishing} == {"accepted"}
        await eventually(lambda: stored() >= len(events), timeout=120)
        await asyncio.sleep(1.5)  # anything applied twice would show up now
        third.send_signal(signal.SIGTERM)
        assert third.wait(60) == 0, (tmp_path / "intake-3.log").read_text()
    finally:
        kill_leftovers(procs)
        await nc.close()

    history = stored_history(build_ledger(store_url))
    assert_exactly_once(history, (e["id"] for e in events))
    assert len(history) == CASES
    assert all(len(versions) == 7 for versions in history.values())
