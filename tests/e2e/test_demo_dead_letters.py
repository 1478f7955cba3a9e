"""After a fresh `hub up` with the demo city and a restart, `hub dlq list` is empty.

The dead-letter queue means "a department record needs attention": the demo city's records are all
valid, so nothing of a demo run belongs there. What used to land there was the hub's own noise: the
deadline watcher's escalations for cases whose later steps were still on the way while the demo day
was caught up (issue 14, found item 7). The demo clock is accelerated (``--demo-speed``) so the test
covers more than ten demo minutes, the catch-up of the day at the start and a restart in the middle
(which resumes the day instead of re-publishing it) in about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from connectors.base import CHINA_TZ
from ops.natsd import free_port

HUB = str(Path(sys.executable).parent / "hub")
SPEED = 20  # simulated seconds per wall second: six demo minutes in eighteen seconds
DEADLINE_S = 150.0  # generous: the day's catch-up alone takes 10-40 s on a busy 2-core machine


def _wait(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        size = log.stat().st_size if log.exists() else 0
        assert size < 50_000_000, f"the hub floods its log ({size} bytes) while waiting for {what}"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        assert proc.poll() is None, f"hub up ended while waiting for {what}:\n{tail}"
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S:g}s:\n{tail}"
        time.sleep(0.5)


def _position(data: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads((data / "demo-city.json").read_text())["at"])
    except (OSError, ValueError, KeyError):
        return None


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


class Hub:
    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log = data, log
        self.nats_port, self.http_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"

    def start(self) -> subprocess.Popen[bytes]:
        self.out = self.log.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        self.proc = subprocess.Popen(
            [HUB, "up", "--data-dir", str(self.data), "--nats-port", str(self.nats_port),
             "--http-port", str(self.http_port), "--demo-speed", str(SPEED)],
            stdout=self.out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        _wait(
            lambda: "citybrain-hub is up" in self.log.read_text(errors="replace"),
            "start",
            self.proc,
            self.log,
        )
        return self.proc

    def caught_up(self) -> datetime:
        """Wait until the demo city has published the past (the day so far, or the gap of a
        restart) and the intake has taken it in; return the demo's position then."""

        def live() -> bool:
            position = _position(self.data)
            return position is not None and position >= datetime.now(CHINA_TZ) - timedelta(minutes=2)

        _wait(live, "the demo city publishing live", self.proc, self.log)
        self.settled()
        position = _position(self.data)
        assert position is not None
        return position

    def demo_reaches(self, at: datetime) -> None:
        _wait(
            lambda: (_position(self.data) or at - timedelta(days=1)) >= at,
            f"demo time {at}",
            self.proc,
            self.log,
        )

    def metrics(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=60).text

    def settled(self) -> None:
        """Every event published so far has been decided (nothing pending delivery or ack)."""

        def check() -> bool:
            try:
                text = self.metrics()
            except httpx.TimeoutException:  # a busy machine: ask again
                return False
            return (
                _metric(text, "hub_intake_consumer_pending")
                + _metric(text, "hub_intake_consumer_ack_pending")
                == 0
            )

        _wait(check, "settled intake", self.proc, self.log)

    def dead_letters(self) -> list[dict[str, object]]:
        listed = subprocess.run(
            [HUB, "dlq", "list", "--json", "--nats-url", f"nats://127.0.0.1:{self.nats_port}",
             "--data-dir", str(self.data)],  # the hub's NATS credentials are in its data dir
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return [orjson.loads(line) for line in listed.stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(60) == 0
        self.out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ten_demo_minutes_with_a_restart_leave_the_dead_letter_queue_empty(tmp_path: Path) -> None:
    data, logs = tmp_path / "var", [tmp_path / "hub-1.log", tmp_path / "hub-2.log"]
    hub = Hub(data, logs[0])
    hub.start()
    try:
        live = hub.caught_up()  # the day so far
        hub.demo_reaches(live + timedelta(minutes=6))  # then six live demo minutes
        hub.settled()
        first = hub.metrics()
        assert hub.dead_letters() == []
        hub.stop()
        stopped_at = _position(data)
        assert stopped_at is not None

        hub = Hub(data, logs[1])  # a restart: new ports, same data dir
        hub.start()
        hub.demo_reaches(stopped_at + timedelta(minutes=6))  # six more live demo minutes
        hub.settled()
        second = hub.metrics()
        letters = hub.dead_letters()
        hub.stop()
    finally:
        hub.kill()
    assert letters == [], f"{len(letters)} dead letters, e.g. {letters[:3]}"
    text = "".join(log.read_text(errors="replace") for log in logs)
    assert f"demo city: resuming {stopped_at.date()} after {stopped_at.isoformat()}" in text
    # Nothing went wrong: no warning or error but the development mode's own announcements, which
    # issue 15 wants loud (the banner's "DEVELOPMENT CREDENTIALS ACTIVE", logged once per start).
    announced = ("development mode, development credentials active", "Open311 takes new requests WITHOUT")
    trouble = [
        line
        for line in text.splitlines()
        if ("WARNING" in line or "ERROR" in line) and not any(a in line for a in announced)
    ]
    assert trouble == [], text[-3000:]
    for run in (first, second):
        # Nothing was dead-lettered, and nothing is still waiting to be (settled() saw no event
        # pending or unacked). A retry count is not asserted: an event that arrives before its
        # predecessor on a loaded machine is delayed and then applied, which is the design.
        assert _metric(run, "hub_intake_dead_letters_total") == 0, run
        assert _metric(run, "hub_intake_consumer_ack_pending") == 0, run
