"""``hub up`` brings back every child that dies, and ``/readyz`` tells the truth meanwhile.

One real ``hub up`` (embedded nats-server, store writer + recorder, chain follower) for the
module; under a light load of ``hub publish``, each child is SIGKILLed in turn. Each must come
back (``hub_child_restarts_total`` +1), readiness must go false and then true again by itself, and
at the end every published event is stored exactly once. (The projector thread's restart is
tested in ``test_projector_supervised.py``, where a failure can be injected.)

A second hub runs its JetStream store on a small tmpfs (root only): a full disk answers ingest
503 within seconds, readiness names JetStream, and the hub recovers by itself once space returns.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from ops.bootstrap import build_ledger
from ops.natsd import free_port
from ops.supervisor import child_pids
from tests.factories import case_history
from tests.support import kill_leftovers

pytestmark = pytest.mark.slow

HUB = str(Path(sys.executable).parent / "hub")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
DEADLINE_S = 120.0


def wait_for(check: Callable[[], bool], what: str, timeout: float = DEADLINE_S, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)


@dataclass
class Hub:
    proc: subprocess.Popen[str]
    data: Path
    base: str
    log: Path
    sent: list[str] = field(default_factory=list)
    states: list[tuple[float, int]] = field(default_factory=list)
    """(monotonic time, /readyz status) as polled every 50 ms by a background thread."""

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", timeout=10)

    def restarts(self, process: str) -> int:
        text = self.get("/metrics").text
        found = re.search(rf'^hub_child_restarts_total{{process="{process}"}} (\d+)', text, re.M)
        assert found, f"no hub_child_restarts_total for {process} in /metrics"
        return int(found.group(1))

    def ready(self) -> bool:
        try:
            return self.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def children(self) -> dict[str, int]:
        """nats-server, store-writer, store-recorder, chain-follower → pid (from /proc)."""
        found: dict[str, int] = {}
        for pid in child_pids(self.proc.pid):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "nats-server" in cmd:
                found["nats-server"] = pid
            elif "spawn_main" in cmd:
                kids = child_pids(pid)
                if kids:
                    found["store-writer"], found["store-recorder"] = pid, kids[0]
                else:
                    found["chain-follower"] = pid
        return found

    def publish(self, tag: str, cases: int = 100) -> subprocess.Popen[str]:
        events = [e for i in range(cases) for e in case_history(f"SUP-{tag}-{i:04d}")]
        file = self.data.parent / f"events-{tag}.jsonl"
        file.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
        self.sent += [str(e["id"]) for e in events]
        return self._publish(file)

    def _publish(self, file: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [HUB, "publish", str(file), "--data-dir", str(self.data)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=CLEAN_ENV,
        )  # fmt: skip

    def finish(self, publisher: subprocess.Popen[str], tag: str) -> None:
        """Wait for a publish; one that lost events to the outage is run again (ids dedupe)."""
        for _ in range(5):
            out, _ = publisher.communicate(timeout=DEADLINE_S)
            if publisher.returncode == 0:
                return
            publisher = self._publish(self.data.parent / f"events-{tag}.jsonl")
        raise AssertionError(f"hub publish of {tag} kept failing: {out}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("supervised")
    data, log = root / "var", root / "hub.log"
    http_port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [HUB, "up", "--data-dir", str(data), "--http-port", str(http_port), "--no-demo"],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=CLEAN_ENV,
        )  # fmt: skip
    running = Hub(proc, data, f"http://127.0.0.1:{http_port}", log)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                code = httpx.get(f"{running.base}/readyz", timeout=5).status_code
            except httpx.HTTPError:
                code = 0
            running.states.append((time.monotonic(), code))
            stop.wait(0.05)

    try:
        wait_for(lambda: proc.poll() is None and running.ready(), "hub up ready")
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        yield running
    finally:
        stop.set()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            kill_leftovers([proc])


def test_the_nats_port_is_kept_in_the_data_dir(hub: Hub) -> None:
    kept = (hub.data / "nats.port").read_text().strip()
    assert (hub.data / "nats.url").read_text().strip() == f"nats://127.0.0.1:{kept}"


@pytest.mark.parametrize("process", ["nats-server", "store-writer", "store-recorder", "chain-follower"])
def test_a_killed_child_comes_back_under_load(hub: Hub, process: str) -> None:
    before = hub.restarts(process)
    old = hub.children()[process]
    publisher = hub.publish(process)
    time.sleep(0.3)  # the publish is under way (it takes seconds on a busy machine)
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: hub.restarts(process) == before + 1, f"{process} restarted (counter +1)")
    wait_for(lambda: hub.children().get(process, old) != old, f"a new {process} process")
    hub.finish(publisher, process)
    wait_for(hub.ready, f"ready again after the {process} kill")
    seen = [code for at, code in list(hub.states) if at >= killed_at]
    assert 503 in seen or 0 in seen, f"/readyz never reported the dead {process}: {Counter(seen)}"
    assert hub.restarts(process) == before + 1
    assert hub.proc.poll() is None


def test_nothing_lost_or_doubled(hub: Hub) -> None:
    assert hub.sent, "the kill tests published nothing"
    ledger = build_ledger(f"sqlite:///{hub.data / 'events.sqlite'}")

    def stored() -> Counter[str]:
        ids: Counter[str] = Counter()
        start = 1
        while section := ledger.recorder.select_notifications(start=start, limit=5000):
            for n in section:
                ids[ledger.mapper.to_domain_event(n).event_id] += 1  # type: ignore[attr-defined]
            start = section[-1].id + 1
        return ids

    deadline = time.monotonic() + DEADLINE_S
    while True:
        ids = stored()
        missing = [i for i in hub.sent if not ids[i]]
        if not missing:
            break
        assert time.monotonic() < deadline, (
            f"{len(missing)} of {len(hub.sent)} events not stored, e.g. {missing[:3]}; "
            f"hub log tail: {hub.log.read_text()[-3000:]}"
        )
        time.sleep(2.0)
    assert not [i for i, n in ids.items() if n > 1], "an event was stored twice"
    assert sum(ids[i] for i in hub.sent) == len(set(hub.sent)) == len(hub.sent)


def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(parents=True, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], capture_output=True)
    return ok.returncode == 0


REPORT = {
    "stage": "report", "time": "2026-03-02T08:00:00+08:00", "channel": "supervisor",
    "matter_code": "01001", "description": "井盖破损", "lon": 118.7, "lat": 32.0,
}  # fmt: skip
TOKEN = {"Authorization": "Bearer dev-citymgmt-token"}


def test_disk_full_answers_503_and_recovers_by_itself(tmp_path: Path) -> None:
    data = tmp_path / "var"
    store = data / "nats"
    if not _can_mount_tmpfs(store):
        pytest.skip("needs root to mount a small tmpfs for JetStream's store")
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    log = tmp_path / "hub.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [HUB, "up", "--data-dir", str(data), "--http-port", str(http_port), "--no-demo"],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=CLEAN_ENV,
        )  # fmt: skip

    def post(first: int, n: int) -> httpx.Response:
        records = [{**REPORT, "case_no": f"DISK{i:05d}"} for i in range(first, first + n)]
        return httpx.post(f"{base}/ingest/citymgmt", json=records, headers=TOKEN, timeout=DEADLINE_S)

    def readyz() -> httpx.Response:
        return httpx.get(f"{base}/readyz", timeout=10)

    try:
        wait_for(lambda: proc.poll() is None and _ok(readyz), "hub up ready")
        assert post(0, 50).status_code == 202
        ballast = store / "ballast"
        with ballast.open("wb") as fh:  # fill the disk JetStream writes to
            chunk = bytes(1024 * 1024)
            try:
                while True:
                    fh.write(chunk)
                    fh.flush()
            except OSError:
                pass

        started = time.monotonic()
        full = post(50, 50)
        assert full.status_code == 503, full.text
        assert time.monotonic() - started < 20, "ingest held the request instead of answering 503"
        assert "JetStream" in full.json()["error"]
        wait_for(lambda: readyz().status_code == 503, "not ready while the disk is full")
        body = readyz().json()
        assert body["components"]["jetstream"] is False and "JetStream" in body["reasons"]["jetstream"]

        ballast.unlink()  # space returns: no restart by hand
        wait_for(lambda: _ok(readyz), "ready again once the disk has room")
        again = post(50, 50)
        assert again.status_code == 202, again.text
        assert again.json()["accepted"] + again.json()["duplicate"] == 50
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert re.search(r'^hub_child_restarts_total{process="nats-server"} 1$', metrics, re.M)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            kill_leftovers([proc])
            subprocess.run(["umount", "-l", str(store)], capture_output=True)


def _ok(readyz: Callable[[], httpx.Response]) -> bool:
    try:
        return readyz().status_code == 200
    except httpx.HTTPError:
        return False


def _start_hub(data: Path, http_port: int, log: Path) -> subprocess.Popen[str]:
    with log.open("a") as out:
        return subprocess.Popen(
            [HUB, "up", "--data-dir", str(data), "--http-port", str(http_port), "--no-demo"],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=CLEAN_ENV,
        )  # fmt: skip


def _stop_hub(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    finally:
        kill_leftovers([proc])


async def test_a_restart_keeps_the_port_and_is_ready_only_after_the_start_backlog(tmp_path: Path) -> None:
    """Events published while the hub is down (to its NATS port, as an external publisher would)
    are the backlog of the next start: logged with their count, exported, and readiness waits."""
    from connectors.publisher import publish_events
    from ops.bootstrap import connect_nats
    from ops.natsd import EmbeddedNats

    data, log = tmp_path / "var", tmp_path / "hub.log"
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    proc = _start_hub(data, http_port, log)
    try:
        wait_for(
            lambda: proc.poll() is None and _ok(lambda: httpx.get(f"{base}/readyz", timeout=10)),
            "first start",
        )
    finally:
        _stop_hub(proc)
    port = int((data / "nats.port").read_text())
    credentials = (data / "nats-hub-credentials.json").read_text()  # generated at the first start

    # The hub is down; its NATS store is served on the kept port, and a department publishes.
    server = EmbeddedNats(store_dir=data / "nats", port=port, server_name="citybrain-hub")
    server.start()
    events = [e for i in range(300) for e in case_history(f"BACKLOG-{i:04d}")]
    try:
        nc = await connect_nats(server.url, "department")
        results = await publish_events(nc.jetstream(timeout=10), events)
        await nc.close()
    finally:
        server.stop()
    assert {r.status for r in results} == {"accepted"}

    proc = _start_hub(data, http_port, log)
    try:
        wait_for(
            lambda: proc.poll() is None and _ok(lambda: httpx.get(f"{base}/readyz", timeout=10)),
            "second start",
        )
        assert (data / "nats.url").read_text().strip() == f"nats://127.0.0.1:{port}"  # the same port
        assert (data / "nats-hub-credentials.json").read_text() == credentials  # reused (issue 15)
        text = log.read_text()
        assert f"{len(events)} events were waiting in the stream at start" in text
        assert "the start backlog is drained; ready" in text
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert re.search(r"^hub_start_backlog_events 0$", metrics, re.M)
        applied = re.search(r"^hub_intake_applied_total (\d+)$", metrics, re.M)
        assert applied and int(applied.group(1)) == len(events)
    finally:
        _stop_hub(proc)
