"""The demo city resumes its day where it stopped instead of re-publishing it (issue 14, item 7).

Every demo day is a seeded simulation, so the records up to a saved position are exactly the ones
published before; a restart publishes the rest, including the later steps of cases whose report
went out before the stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.base import CHINA_TZ
from connectors.publisher import Published
from connectors.simulator import Position, Simulator
from ops.demo import STATE_FILE, DemoState, demo_catching_up, demo_time
from ops.settings import SettingsError, demo_speed

DAY = datetime(2026, 3, 2, tzinfo=CHINA_TZ)


def simulator() -> Simulator:
    return Simulator(seed=7, rate=120.0, duration=timedelta(hours=10), start=DAY)


class Sink:
    """A publisher that records what it was given (and acknowledges every event)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.positions: list[Position] = []
        self.stop_after = stop_after

    async def publish(self, events: Sequence[dict[str, Any]]) -> list[Published]:
        if self.stop_after is not None and len(self.positions) >= self.stop_after:
            raise asyncio.CancelledError  # the hub stops here: nothing of this chunk was acknowledged
        self.events.extend(events)
        return [Published(i, e["id"], "accepted") for i, e in enumerate(events)]


def run(sim: Simulator, sink: Sink, after: Position | None = None) -> None:
    async def go() -> None:
        await sim.run(
            sink.publish, speed=math.inf, after=after, on_published=sink.positions.append, chunk=500
        )

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(go())


def test_a_resumed_day_publishes_each_record_once_and_every_later_step() -> None:
    whole = Sink()
    run(simulator(), whole)
    assert len(whole.events) > 1000

    # 500 records per chunk: stop after the first chunk was acknowledged, then resume from it.
    first = Sink(stop_after=1)
    run(simulator(), first)
    assert len(first.positions) == 1 and 0 < len(first.events) < len(whole.events)
    rest = Sink()
    run(simulator(), rest, after=first.positions[-1])

    ids = [e["id"] for e in first.events + rest.events]
    assert ids == [e["id"] for e in whole.events], "each record once, in the same order"
    reported_before = {e["caseref"] for e in first.events if e["type"].endswith(".reported")}
    later_steps = {e["caseref"] for e in rest.events} & reported_before
    assert later_steps, "cases reported before the stop get their later steps after it"


def test_resuming_from_the_end_publishes_nothing() -> None:
    whole = Sink()
    run(simulator(), whole)
    nothing = Sink()
    run(simulator(), nothing, after=whole.positions[-1])
    assert nothing.events == []


def test_the_state_file_round_trips_and_a_broken_one_means_a_fresh_day(tmp_path: Path) -> None:
    state = DemoState(DAY.date(), 600.0, Position(DAY + timedelta(hours=3), 1234))
    state.save(tmp_path)
    assert DemoState.load(tmp_path) == state
    assert state.resumes(DAY.date(), 600.0) == state.position
    assert state.resumes(DAY.date() + timedelta(days=1), 600.0) is None  # another day: its own seed
    assert state.resumes(DAY.date(), 300.0) is None  # another rate: other records
    (tmp_path / STATE_FILE).write_text("{not json")
    assert DemoState.load(tmp_path) is None
    assert DemoState.load(tmp_path / "missing") is None


def test_the_watcher_knows_when_the_demo_publishes_the_past(tmp_path: Path) -> None:
    wall = datetime.now(CHINA_TZ)
    assert demo_catching_up(tmp_path, wall), "not started yet: its first records are the day so far"
    DemoState(wall.date(), 600.0, Position(wall - timedelta(hours=5), 1)).save(tmp_path)
    assert demo_catching_up(tmp_path, wall)
    DemoState(wall.date(), 600.0, Position(wall - timedelta(seconds=1), 2)).save(tmp_path)
    assert not demo_catching_up(tmp_path, wall), "live"
    DemoState(wall.date(), 600.0, Position(wall - timedelta(hours=5), 1)).save(tmp_path)
    old = time.time() - 60
    os.utime(tmp_path / STATE_FILE, (old, old))
    assert not demo_catching_up(tmp_path, wall), "a quiet night: nothing published for a while"
    # an accelerated demo runs ahead of the wall clock; the watcher follows it
    ahead = wall + timedelta(minutes=30)
    DemoState(wall.date(), 600.0, Position(ahead, 3)).save(tmp_path)
    assert demo_time(tmp_path, wall) == ahead
    assert demo_time(tmp_path, ahead + timedelta(minutes=1)) == ahead + timedelta(minutes=1)


def test_demo_speed_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_DEMO_SPEED", raising=False)
    assert demo_speed() == 1.0
    monkeypatch.setenv("HUB_DEMO_SPEED", "20")
    assert demo_speed() == 20.0
    assert demo_speed(5) == 5.0  # the flag wins
    monkeypatch.setenv("HUB_DEMO_SPEED", "fast")
    with pytest.raises(SettingsError, match="HUB_DEMO_SPEED 'fast'"):
        demo_speed()
    with pytest.raises(SettingsError, match="--demo-speed 0"):
        demo_speed(0)
