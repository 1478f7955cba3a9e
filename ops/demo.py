"""Where the demo city stopped, kept in the data dir so a restarted hub resumes the day.

Why: every demo day is a seeded simulation, so the records before the saved position are exactly
the ones already published. Re-publishing them on every start (the old behaviour) sent 60–100k
duplicates through NATS while new ingest waited behind them, and grew the NATS store by a day per
start once the stream's duplicate window had passed. With the position kept, a restart publishes
only what the demo city would have published while the hub was down, then goes on live.

The file (``demo-city.json``) is small and rewritten atomically after each acknowledged publish; a
missing, unreadable or foreign file only means the day is joined afresh (with its deterministic
ids, at worst some duplicates), never a failed start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from connectors.simulator import Position

log = logging.getLogger("hub")

STATE_FILE = "demo-city.json"


@dataclass(frozen=True, slots=True)
class DemoState:
    """The simulated day (its date is its seed), the arrival rate it was generated with, and how
    far it was published."""

    day: date
    rate: float
    position: Position

    @classmethod
    def load(cls, data_dir: Path) -> DemoState | None:
        path = data_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                day=date.fromisoformat(raw["day"]),
                rate=float(raw["rate"]),
                position=Position(datetime.fromisoformat(raw["at"]), int(raw["seq"])),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("demo city: ignoring %s (%s); the day is joined afresh", path, exc)
            return None

    def save(self, data_dir: Path) -> None:
        """Write atomically (temporary file, then rename): a crash leaves the old or the new file."""
        path = data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        body = {
            "day": self.day.isoformat(),
            "rate": self.rate,
            "at": self.position.at.isoformat(),
            "seq": self.position.seq,
        }
        tmp.write_text(json.dumps(body) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def resumes(self, day: date, rate: float) -> Position | None:
        """The position to resume ``day`` from, when this state is about that day at that rate."""
        return self.position if self.day == day and self.rate == rate else None


def demo_time(data_dir: Path, wall: datetime) -> datetime:
    """The demo city's simulated now: the wall clock, or later when an accelerated demo
    (``--demo-speed``) has published records ahead of it (the deadline watcher follows it then)."""
    state = DemoState.load(data_dir)
    if state is None or state.position.at <= wall:
        return wall
    return state.position.at


CATCH_UP_LAG = timedelta(minutes=2)
"""A demo publishing records older than this (behind the wall clock) is catching up on its day."""


def demo_catching_up(data_dir: Path, wall: datetime, fresh_s: float = 10.0) -> bool:
    """Whether the demo city is publishing the past right now: the day so far on a fresh start, or
    what happened while the hub was down on a restart.

    Why the deadline watcher asks: while the past is on its way, the store holds the cases' early
    steps without their later ones, so their deadlines look breached when they were not. Read from
    the saved position: written in the last ``fresh_s`` seconds, and behind the wall clock (or not
    written at all yet: only ask while the demo city runs).
    """
    path = data_dir / STATE_FILE
    try:
        written = path.stat().st_mtime
    except OSError:
        return True  # the demo city has not said where it starts yet (it does first thing)
    if time.time() - written > fresh_s:
        return False
    state = DemoState.load(data_dir)
    return state is not None and state.position.at < wall - CATCH_UP_LAG
