"""Chaos: steady load with 1 % poison inputs, random SIGKILLs of every child, one whole-hub restart.

What it shows (issue 14): whether the running hub keeps its promise when inputs are hostile and its
processes die under it. A real ``hub up`` (a temporary data dir, free ports, demo off so every event
in the store is the bench's own) gets a steady load, half over HTTP ingest (``POST
/ingest/citymgmt``, NDJSON, so a bad line is answered on its own and its neighbours go through) and
half as CloudEvents on NATS. About 1 % of the inputs are poison, of every class the issue lists:
invalid UTF-8, NUL bytes, deep nesting, huge strings, huge arrays, numbers out of range, a far-future
time, wrong types at any depth, a non-JSON body. Meanwhile it SIGKILLs, at random moments and in turn,
nats-server, the store writer, its recorder and the audit-chain follower (found in the hub's process
tree), and once stops the whole hub with SIGTERM and starts it again on the same data dir (the
projector, a thread, is exercised by that). ``/readyz`` is polled throughout.

Accounting, by ids the bench generated: a valid input counts as *sent* once the hub acknowledged it
(an HTTP answer "accepted"/"duplicate", a JetStream ack); unacknowledged inputs are retried with the
same id, as a department system would. After the load, it waits for the store to catch up, then reads
the event store and ``CITY_DLQ``:

* lost = sent valid ids not in the store; doubled = ids stored more than once;
* dead letters: every poison that was not answered at the edge (HTTP "rejected" / 4xx) is expected in
  ``CITY_DLQ`` (matched by the marker each poison carries); anything else there is unexpected.

Goal (printed beside the figures; the exit code is 1 when it is missed): 0 lost, 0 doubled, every
poison answered or in ``CITY_DLQ`` and nothing else there, and the hub never exited by itself.

``make chaos`` runs 5 minutes (``make chaos MINUTES=1`` for a quick look); it is not part of
``make bench``. Results: ``benchmarks/results/chaos.json``. The hub it started is always stopped
(SIGTERM, then SIGKILL of its whole process group), also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import orjson
from nats.errors import MaxPayloadError

from benchmarks.workers_support import children
from hub import messages as m
from ops.nats_auth import with_hub_credentials
from ops.natsd import free_port

DEFAULT_MINUTES = 5.0
DEFAULT_RATE = 60.0  # inputs per second, half HTTP, half NATS: steady, not a throughput test
POISON_SHARE = 0.01
TICK_S = 0.2
HTTP_TOKEN = "dev-citymgmt-token"
HUB = str(Path(sys.executable).parent / "hub")
START_LIMIT_S = 120.0
STOP_LIMIT_S = 30.0
DRAIN_LIMIT_S = 180.0
STUCK_S = 120.0
CN = timezone(timedelta(hours=8))
ROLES = ("nats-server", "writer", "recorder", "chain")
POISON_CLASSES = (
    "invalid_utf8",
    "nul_bytes",
    "deep_nesting",
    "huge_string",
    "huge_array",
    "number_out_of_range",
    "far_future_time",
    "wrong_type",
    "non_json",
)
T = TypeVar("T")
MARK = re.compile(rb"CHAOS-(P|V)(\d+)")


# ---------------------------------------------------------------- inputs
def valid_http(n: int) -> bytes:
    """One native 城管 report, a new case of its own (so no input depends on another's order)."""
    return orjson.dumps(
        {
            "case_no": f"CHAOS-V{n}",
            "stage": "report",
            "time": datetime.now(CN).isoformat(timespec="seconds"),
            "channel": "supervisor",
            "matter_code": "01001",
            "description": "井盖破损（混沌测试）",
            "lon": 118.7,
            "lat": 32.0,
        }
    )


def valid_nats(n: int) -> tuple[str, str, bytes]:
    """(subject, event id, body) of one canonical ``case.reported`` event, a new case of its own."""
    caseref = f"CHAOS-V{n}"
    event = m.make_event(
        id=f"citymgmt-dcm:{caseref}:reported:0",
        source="citymgmt-dcm",
        department="citymgmt",
        kind="case",
        action=m.Action.REPORTED,
        caseref=caseref,
        actor="supervisor:GW-0001",
        time=datetime.now(UTC),
        data={
            "category": "01001",
            "title": "供水井盖破损（混沌测试）",
            "priority": "normal",
            "channel": "grid_worker",
            "location": {"lon": 118.73, "lat": 32.0},
        },
    )
    return "city.citymgmt.case.reported", event["id"], orjson.dumps(event)


def poison_http(n: int, kind: str) -> bytes:
    """One NDJSON line of the given poison class; its case number (or bytes) carry ``CHAOS-P<n>``."""
    base = orjson.loads(valid_http(n))
    base["case_no"] = f"CHAOS-P{n}"
    line = orjson.dumps(base)
    if kind == "invalid_utf8":
        return line.replace(b"\xe4\xba\x95", b"\xff\xfe", 1)  # 井 → two bytes that are never UTF-8
    if kind == "nul_bytes":
        return line.replace("井".encode(), b"\x00", 1)  # a raw NUL inside a string: not JSON
    if kind == "deep_nesting":
        return b'{"case_no":"CHAOS-P%d","note":' % n + b"[" * 5000 + b"]" * 5000 + b"}"
    if kind == "huge_string":
        base["description"] = "井" * 1_000_000  # 3 MB of UTF-8
    elif kind == "huge_array":
        base["photos"] = ["http://example.invalid/p.jpg"] * 100_000
    elif kind == "number_out_of_range":
        return line.replace(b'"lat":32.0', b'"lat":1e999').replace(
            b'"lon":118.7', b'"lon":123456789012345678901234567890'
        )
    elif kind == "far_future_time":
        base["time"] = "9999-12-31T23:00:00+08:00"
    elif kind == "wrong_type":
        base["description"] = {"text": ["not", {"a": "string"}]}
        base["lon"] = "east"
    elif kind == "non_json":
        return b"CHAOS-P%d this line is not JSON at all <xml/>" % n
    return orjson.dumps(base)


def poison_nats(n: int, kind: str) -> tuple[str, bytes]:
    """(subject, raw bytes) of the given poison class, published as is; the bytes carry ``CHAOS-P<n>``."""
    subject, _, body = valid_nats(n)
    body = body.replace(b"CHAOS-V", b"CHAOS-P")
    event = orjson.loads(body)
    if kind == "invalid_utf8":
        return subject, body.replace("井".encode(), b"\xff", 1)
    if kind == "nul_bytes":
        return subject, body.replace("井".encode(), b"\x00", 1)
    if kind == "deep_nesting":
        event["data"]["note"] = "X"
        raw = orjson.dumps(event)
        return subject, raw.replace(b'"X"', b"[" * 100_000 + b"]" * 100_000)
    if kind == "huge_string":
        event["data"]["title"] = "井" * 1_000_000
    elif kind == "huge_array":
        event["data"]["photos"] = ["http://example.invalid/p.jpg"] * 100_000
    elif kind == "number_out_of_range":
        event["data"]["location"] = {"lon": "LON", "lat": 1.0}
        raw = orjson.dumps(event).replace(b'"LON"', b"1" + b"0" * 400)
        return subject, raw
    elif kind == "far_future_time":
        event["time"] = "9999-12-31T23:00:00+08:00"
    elif kind == "wrong_type":
        event["data"]["location"] = {"lon": {"deg": [118]}, "lat": "north"}
        event["data"]["title"] = 42
    elif kind == "non_json":
        return subject, b"CHAOS-P%d \x00\x01 not JSON, not even text" % n
    return subject, orjson.dumps(event)


# ---------------------------------------------------------------- the hub's processes
def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def hubchildren(hub_pid: int) -> dict[str, int]:
    """The hub's children by role. nats-server by its binary; the writer, its recorder and the chain
    follower by name when they set one (``/proc/PID/comm``), else by the tree ``hub up`` builds: the
    writer is the Python child with a child of its own (its recorder), the chain follower the other.
    multiprocessing's resource tracker is left out."""
    roles: dict[str, int] = {}
    python: list[int] = []
    for child in children(hub_pid):
        cmdline = _read(f"/proc/{child}/cmdline")
        comm = _read(f"/proc/{child}/comm").strip()
        if b"nats-server" in cmdline.split(b"\0")[0] or comm == b"nats-server":
            roles["nats-server"] = child
        elif b"resource_tracker" in cmdline:
            continue
        elif comm.startswith(b"hub-store-write"):
            roles["writer"] = child
        elif comm.startswith(b"hub-audit-chain") or comm.startswith(b"hub-chain"):
            roles["chain"] = child
        else:
            python.append(child)
    for child in python:
        grandchildren = [g for g in children(child) if b"resource_tracker" not in _read(f"/proc/{g}/cmdline")]
        if grandchildren and "writer" not in roles:
            roles["writer"] = child
        elif "chain" not in roles:
            roles["chain"] = child
    if "writer" in roles:
        for g in children(roles["writer"]):
            if b"resource_tracker" not in _read(f"/proc/{g}/cmdline"):
                roles["recorder"] = g
                break
    return roles


@dataclass
class Hub:
    """One ``hub up`` on a data dir of its own; started, stopped and restarted by the bench."""

    data_dir: Path
    http_port: int
    nats_port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    crashes: list[int] = field(default_factory=list)  # exit codes of exits nobody asked for

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> None:
        """Start ``hub up`` and wait until it answers ``/healthz``. A start that exits (a port still
        held after a crash, a poison that kills it again at once) is retried until START_LIMIT_S,
        then RuntimeError: the bench reports a hub it could not bring back instead of waiting."""
        deadline = time.monotonic() + START_LIMIT_S
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                self.kill_strays()  # an orphaned nats-server of a crashed hub holds the port
                with self.log.open("ab") as out:
                    out.write(
                        f"\n===== bench: start #{self.starts + 1} at {datetime.now(UTC)} =====\n".encode()
                    )
                    out.flush()
                    self.proc = subprocess.Popen(
                        [HUB, "up", "--data-dir", str(self.data_dir), "--http-port", str(self.http_port),
                         "--nats-port", str(self.nats_port), "--no-demo"],
                        stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                    )  # fmt: skip
                self.starts += 1
                while time.monotonic() < deadline and self.proc.poll() is None:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{self.base}/healthz")).status_code == 200:
                            return
                    await asyncio.sleep(0.3)
                if self.proc.poll() is None or time.monotonic() >= deadline:
                    self.stop_now()
                    raise RuntimeError(f"hub up did not come up within {START_LIMIT_S:.0f}s; see {self.log}")
                print(f"  ! hub up exited while starting (code {self.proc.returncode}); again", flush=True)
                await asyncio.sleep(2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def stop(self) -> float:
        """SIGTERM and wait up to STOP_LIMIT_S, then SIGKILL of everything it started. Returns the
        seconds it took (the issue asks for a stop within 15 s)."""
        started = time.monotonic()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None and time.monotonic() - started < STOP_LIMIT_S:
                await asyncio.sleep(0.1)
            if proc.poll() is None:
                print(f"  ! hub up ignored SIGTERM for {STOP_LIMIT_S:.0f}s: killed", flush=True)
        took = time.monotonic() - started
        self.stop_now()
        return took

    def stop_now(self) -> None:
        """SIGKILL the hub's process group (it runs in a session of its own, with its multiprocessing
        children) and any stray of this data dir (nats-server runs in a session of its own). Safe to
        call at any time, also from ``finally`` after Ctrl-C: nothing the bench started outlives it."""
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.kill_strays()

    def kill_strays(self) -> None:
        """Kill processes whose command line names this bench's data dir (a temporary directory of
        its own, so they can only be the bench's): an orphaned nats-server of a crashed hub."""
        mark = str(self.data_dir).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid() and mark in _read(f"{entry}/cmdline"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)


def child_restarts(base: str) -> dict[str, float]:
    """``hub_child_restarts_total`` by process from ``/metrics`` (empty when the hub has none yet)."""
    try:
        text = httpx.get(f"{base}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hub_child_restarts_total"):
            label = re.search(r'process="([^"]*)"', line)
            with contextlib.suppress(ValueError, IndexError):
                found[label.group(1) if label else ""] = float(line.rsplit(" ", 1)[1])
    return found


# ---------------------------------------------------------------- the run
@dataclass
class Tally:
    produced: int = 0
    valid_http_acked: set[str] = field(default_factory=set)  # event ids from the answers
    valid_nats_acked: set[str] = field(default_factory=set)
    poisons: dict[int, str] = field(default_factory=dict)  # poison n → class, once sent
    poison_outcome: dict[int, str] = field(default_factory=dict)  # answered at the edge / accepted
    http_errors: Counter[str] = field(default_factory=Counter)
    nats_errors: Counter[str] = field(default_factory=Counter)
    unready: list[tuple[float, float]] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    restarts_metrics: Counter[str] = field(default_factory=Counter)
    whole_restart: dict[str, Any] = field(default_factory=dict)


class Chaos:
    def __init__(
        self, hub: Hub, minutes: float, rate: float, seed: int, poisons: tuple[str, ...] = POISON_CLASSES
    ) -> None:
        self.hub, self.duration, self.rate = hub, minutes * 60, rate
        self.rng = random.Random(seed)
        self.t = Tally()
        self.http_queue: list[tuple[int, bytes, str | None]] = []  # (n, line, poison class)
        self.nats_queue: list[tuple[int, str, str, bytes, str | None]] = []
        self.stop_load = asyncio.Event()
        self.done = asyncio.Event()  # no new inputs: the senders empty their queues and end
        self.finished = asyncio.Event()  # sent and drained: the watchers end
        self.unready_since: float | None = None
        self.watchers: list[asyncio.Task[None]] = []
        self.poisons = poisons
        self.poison_cycle = itertools.cycle(poisons)
        self.restarting = False  # the bench itself is stopping or starting the hub
        self.hub_down: str | None = None  # why the hub could not be brought back, when it could not
        self.final_stop_s: float | None = None

    # ------------------------------------------------------------ load
    def _produce(self, count: int) -> None:
        for _ in range(count):
            n = self.t.produced
            self.t.produced += 1
            kind = next(self.poison_cycle) if self.poisons and self.rng.random() < POISON_SHARE else None
            if n % 2 == 0:
                self.http_queue.append((n, poison_http(n, kind) if kind else valid_http(n), kind))
            elif kind:
                subject, body = poison_nats(n, kind)
                self.nats_queue.append((n, subject, f"chaos-poison-{n}", body, kind))
            else:
                subject, event_id, body = valid_nats(n)
                self.nats_queue.append((n, subject, event_id, body, None))

    async def pace(self) -> None:
        started = time.monotonic()
        while not self.stop_load.is_set():
            owed = int(self.rate * (time.monotonic() - started)) - self.t.produced
            if owed > 0:
                self._produce(owed)
            await asyncio.sleep(TICK_S)

    async def http_sender(self, client: httpx.AsyncClient) -> None:
        """NDJSON batches; a batch the hub did not answer (down, 5xx) is sent again, same ids."""
        while not (self.done.is_set() and not self.http_queue):
            if not self.http_queue:
                await asyncio.sleep(TICK_S)
                continue
            batch, self.http_queue = self.http_queue[:200], self.http_queue[200:]
            try:
                resp = await client.post(
                    "/ingest/citymgmt",
                    content=b"\n".join(line for _, line, _ in batch),
                    headers={"Authorization": f"Bearer {HTTP_TOKEN}", "Content-Type": "application/x-ndjson"},
                )
            except httpx.HTTPError as exc:
                self.t.http_errors[type(exc).__name__] += 1
                self.http_queue[:0] = batch
                await asyncio.sleep(1.0)
                continue
            try:
                results = resp.json()["results"] if resp.status_code == 202 else []
                if resp.status_code == 202 and len(results) != len(batch):
                    raise ValueError(f"{len(results)} results for {len(batch)} records")
            except ValueError as exc:  # an answer the bench cannot read: counted, sent again
                self.t.http_errors[f"unreadable answer: {exc}"[:120]] += 1
                self.http_queue[:0] = batch
                await asyncio.sleep(1.0)
                continue
            if resp.status_code == 202:
                retry = []
                for result, (n, line, kind) in zip(results, batch, strict=True):
                    status = result.get("status")
                    if kind:
                        self.t.poisons[n] = kind
                        self.t.poison_outcome[n] = (
                            status if status in ("rejected", "accepted", "duplicate") else "?"
                        )
                    elif status in ("accepted", "duplicate"):
                        self.t.valid_http_acked.add(str(result["event_id"]))
                    else:
                        self.t.http_errors[f"valid record {status}: {result.get('error', '')[:80]}"] += 1
                        retry.append((n, line, kind))
                self.http_queue[:0] = retry
            elif 400 <= resp.status_code < 500:  # the body as a whole refused: a poison's fault
                self.t.http_errors[f"HTTP {resp.status_code}"] += 1
                for n, _, kind in batch:
                    if kind:
                        self.t.poisons[n] = kind
                        self.t.poison_outcome[n] = f"http_{resp.status_code}"
                self.http_queue[:0] = [b for b in batch if b[2] is None]
            else:
                self.t.http_errors[f"HTTP {resp.status_code}"] += 1
                self.http_queue[:0] = batch
                await asyncio.sleep(1.0)

    async def nats_sender(self, js: Any) -> None:
        """Raw publishes with a dedup id; an unacknowledged one is published again, same id."""
        while not (self.done.is_set() and not self.nats_queue):
            if not self.nats_queue:
                await asyncio.sleep(TICK_S)
                continue
            batch, self.nats_queue = self.nats_queue[:200], self.nats_queue[200:]
            futures: list[Any] = []
            for _, subject, msg_id, body, _ in batch:
                try:
                    futures.append(await js.publish_async(subject, body, headers={"Nats-Msg-Id": msg_id}))
                except MaxPayloadError:  # refused by the client before it left: answered at the edge
                    self.t.nats_errors["MaxPayloadError"] += 1
                    futures.append("refused")
                except Exception as exc:
                    self.t.nats_errors[type(exc).__name__] += 1
                    futures.append(None)
            retry = []
            for item, future in zip(batch, futures, strict=True):
                n, _, msg_id, _, kind = item
                if future == "refused":
                    if kind:
                        self.t.poisons[n] = kind
                        self.t.poison_outcome[n] = "nats_max_payload"
                    continue
                try:
                    if future is None:
                        raise TimeoutError
                    await asyncio.wait_for(future, 10)
                except Exception as exc:
                    self.t.nats_errors[type(exc).__name__] += 1
                    retry.append(item)
                    continue
                if kind:
                    self.t.poisons[n] = kind
                    self.t.poison_outcome[n] = "published"
                else:
                    self.t.valid_nats_acked.add(msg_id)
            self.nats_queue[:0] = retry
            if retry:
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------ observation and faults
    async def watch_ready(self, client: httpx.AsyncClient) -> None:
        """Poll ``/readyz`` every 0.5 s (a hub that does not answer is not ready) and notice a hub
        that exited by itself; the restart runs beside, so the polling goes on through it."""
        since: float | None = None  # also self.unready_since, for the end of the run
        try:
            while not self.finished.is_set():
                try:
                    ready = (await client.get("/readyz", timeout=3)).status_code == 200
                except httpx.HTTPError:
                    ready = False
                now = time.monotonic()
                if not ready and since is None:
                    since = now
                elif ready and since is not None:
                    self.t.unready.append((since, now))
                    since = None
                self.unready_since = since
                if not self.restarting and not self.hub.alive() and self.hub_down is None:
                    code = self.hub.proc.returncode if self.hub.proc else None
                    print(f"  !! hub up exited by itself (code {code}); starting it again", flush=True)
                    self.hub.crashes.append(code if code is not None else -1)
                    self.restarting = True
                    self.watchers.append(asyncio.create_task(self.restart_after_crash()))
                await asyncio.sleep(0.5)
        finally:  # also when cancelled at the end: an open unready period counts to the end
            if since is not None:
                self.t.unready.append((since, time.monotonic()))

    async def restart_after_crash(self) -> None:
        try:
            await self.hub.start()
        except RuntimeError as exc:
            self.give_up(str(exc))
        finally:
            self.restarting = False

    async def faults(self, started: float) -> None:
        """Kills at random moments in [10 %, 85 %] of the run, every role in turn; the whole-hub
        restart in the middle."""
        kills = max(len(ROLES), int(self.duration / 30))
        slots = sorted(self.rng.uniform(0.1, 0.85) * self.duration for _ in range(kills))
        restart_at = 0.5 * self.duration
        roles = list(ROLES) * (kills // len(ROLES) + 1)
        self.rng.shuffle(roles)
        plan: list[tuple[float, str]] = [(s, r) for s, r in zip(slots, roles, strict=False)]
        plan.append((restart_at, "whole-hub"))
        plan.sort()
        for at, role in plan:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if self.stop_load.is_set():
                return
            if role == "whole-hub":
                await self.restart_whole()
            else:
                await self.kill(role, time.monotonic() - started)

    async def kill(self, role: str, at: float) -> None:
        while self.restarting and not self.stop_load.is_set():  # due during a restart: right after it
            await asyncio.sleep(0.5)
        if self.stop_load.is_set() or self.hub.proc is None:
            self.t.kills.append({"at_s": round(at), "role": role, "outcome": "not done: the hub was down"})
            return
        before = hubchildren(self.hub.proc.pid)
        pid = before.get(role)
        entry: dict[str, Any] = {"at_s": round(at), "role": role, "pid": pid}
        self.t.kills.append(entry)
        if pid is None:
            entry["outcome"] = "not running (was it restarted after an earlier kill?)"
            print(f"  {at:>5.0f} s  kill {role}: not running; children {before}", flush=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        print(f"  {at:>5.0f} s  SIGKILL {role} (pid {pid})", flush=True)
        self.watchers.append(asyncio.create_task(self.came_back(role, pid, entry)))

    async def came_back(self, role: str, pid: int, entry: dict[str, Any]) -> None:
        """Record after how long the hub had a new process in the killed one's role (None: not
        within 60 s), while the fault schedule goes on."""
        killed_at = time.monotonic()
        entry["back_after_s"] = None
        while time.monotonic() - killed_at < 60 and not self.finished.is_set():
            await asyncio.sleep(0.5)
            if self.hub.proc is None or not self.hub.alive():
                break
            now = hubchildren(self.hub.proc.pid).get(role)
            if now is not None and now != pid:
                entry["back_after_s"] = round(time.monotonic() - killed_at, 1)
                return

    async def restart_whole(self) -> None:
        if self.hub.proc is None or self.restarting:
            self.t.whole_restart = {"skipped": "the bench was already (re)starting the hub"}
            return
        self.restarting = True
        try:
            self.t.restarts_metrics.update(child_restarts(self.hub.base))
            print("  whole-hub restart: SIGTERM", flush=True)
            stop_s = await self.hub.stop()
            began = time.monotonic()
            try:
                await self.hub.start()
            except RuntimeError as exc:
                self.give_up(str(exc))
                return
            self.t.whole_restart = {"stop_s": round(stop_s, 1), "start_s": round(time.monotonic() - began, 1)}
            up_s = time.monotonic() - began
            print(f"  whole-hub restart: stopped in {stop_s:.1f} s, up again in {up_s:.1f} s", flush=True)
        finally:
            self.restarting = False

    async def progress(self, started: float) -> None:
        while not self.finished.is_set():
            await asyncio.sleep(15)
            t = self.t
            print(
                f"  {time.monotonic() - started:>5.0f} s  produced {t.produced:>7}  acked "
                f"{len(t.valid_http_acked) + len(t.valid_nats_acked):>7}  poisons sent {len(t.poisons):>4}  "
                f"queued {len(self.http_queue) + len(self.nats_queue):>5}",
                flush=True,
            )

    # ------------------------------------------------------------ the whole run
    async def run(self) -> tuple[float, int, list[Any] | str]:
        """The load, the faults and the drain; returns (seconds, inputs never acknowledged, the dead
        letters or why they could not be read). The figures are made after the hub stopped."""
        await self.hub.start()

        async def quiet(exc: Exception) -> None:  # a killed nats-server: the client reconnects
            self.t.nats_errors[f"connection: {type(exc).__name__}"] += 1

        # as the hub (it reads the dead letters too): its credentials from the data dir
        address = f"nats://127.0.0.1:{self.hub.nats_port}"
        nc = await nats.connect(
            with_hub_credentials(address, self.hub.data_dir, {self.hub.nats_port}),
            name="chaos-bench",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=quiet,
        )
        js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.hub.base, timeout=15) as client:
            tasks = [
                asyncio.create_task(self.pace()),
                asyncio.create_task(self.http_sender(client)),
                asyncio.create_task(self.nats_sender(js)),
                asyncio.create_task(self.watch_ready(client)),
                asyncio.create_task(self.faults(started)),
                asyncio.create_task(self.progress(started)),
            ]
            try:
                with contextlib.suppress(TimeoutError):  # the run ends early when the hub is gone
                    await asyncio.wait_for(self.stop_load.wait(), self.duration)
                self.stop_load.set()
                print("  load stopped; sending what is still queued", flush=True)
                self.done.set()
                flush_by = time.monotonic() + DRAIN_LIMIT_S
                while (
                    (self.http_queue or self.nats_queue)
                    and time.monotonic() < flush_by
                    and self.hub_down is None
                    and not self.stuck()
                ):
                    await asyncio.sleep(0.5)
                unsent = len(self.http_queue) + len(self.nats_queue)
                if self.hub_down is None:
                    await self.drain()
            finally:
                self.stop_load.set()
                self.done.set()
                self.finished.set()
                for task in tasks + self.watchers:
                    task.cancel()
                await asyncio.gather(*tasks, *self.watchers, return_exceptions=True)
            self.t.restarts_metrics.update(child_restarts(self.hub.base))
        letters = await self.dead_letters(js) if self.hub.alive() else "CITY_DLQ unreadable: the hub is down"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 10)
        elapsed = time.monotonic() - started
        if self.hub.alive():
            self.final_stop_s = await self.hub.stop()
            print(f"  hub stopped (SIGTERM) in {self.final_stop_s:.1f} s", flush=True)
        return elapsed, unsent, letters

    def stuck(self) -> bool:
        """Unready for STUCK_S on end: a child that was not brought back (the report says which);
        waiting the full drain limit for it would only make the run longer, not the figures better."""
        return self.unready_since is not None and time.monotonic() - self.unready_since > STUCK_S

    def give_up(self, why: str) -> None:
        """The hub could not be brought back: end the run now and report, rather than wait."""
        print(f"  !! giving up on the hub: {why}", flush=True)
        self.hub_down = why
        self.stop_load.set()

    async def drain(self) -> None:
        """Wait until every acknowledged valid event is in the store (or DRAIN_LIMIT_S passed)."""
        from ops.bootstrap import build_ledger

        ledger = build_ledger(f"sqlite:///{self.hub.data_dir / 'events.sqlite'}")
        want = len(self.t.valid_http_acked) + len(self.t.valid_nats_acked)
        began, last, last_change = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - began < DRAIN_LIMIT_S and not self.stuck():
            stored = await asyncio.to_thread(lambda: ledger.recorder.max_notification_id() or 0)
            if stored != last:
                last, last_change = stored, time.monotonic()
            if stored >= want and time.monotonic() - last_change > 5:
                break
            await asyncio.sleep(1.0)
        print(
            f"  drained in {time.monotonic() - began:.0f} s (store at {last}, acknowledged {want})",
            flush=True,
        )

    async def dead_letters(self, js: Any) -> list[Any] | str:
        from hub.intake import read_dead_letters

        try:
            return await asyncio.wait_for(read_dead_letters(js), 120)
        except Exception as exc:
            return f"CITY_DLQ unreadable: {exc!r}"

    def figures(self, elapsed: float, unsent: int, letters: list[Any] | str) -> dict[str, Any]:
        stored_ids, ledger_error = stored_event_ids(self.hub.data_dir)
        sent = self.t.valid_http_acked | self.t.valid_nats_acked
        counts = Counter(stored_ids)
        lost = sorted(sent - set(counts))
        doubled = sorted(i for i, c in counts.items() if c > 1)
        expected_in_dlq = {
            n
            for n, outcome in self.t.poison_outcome.items()
            if outcome in ("accepted", "published", "duplicate")
        }
        answered = {n for n, outcome in self.t.poison_outcome.items() if n not in expected_in_dlq}
        found: set[int] = set()
        unexpected: list[dict[str, str]] = []
        if isinstance(letters, list):
            for letter in letters:
                mark = MARK.search(letter.data[:4096]) or MARK.search(letter.data)
                if mark and mark.group(1) == b"P":
                    found.add(int(mark.group(2)))
                else:
                    unexpected.append(
                        {
                            "reason": letter.reason,
                            "field": letter.field,
                            "detail": letter.detail[:160],
                            "subject": letter.subject,
                        }
                    )
        missing = expected_in_dlq - found
        by_class = {
            kind: {
                "sent": sum(1 for k in self.t.poisons.values() if k == kind),
                "answered_at_edge": sum(1 for n in answered if self.t.poisons[n] == kind),
                "expected_in_dlq": sum(1 for n in expected_in_dlq if self.t.poisons[n] == kind),
                "found_in_dlq": sum(1 for n in expected_in_dlq & found if self.t.poisons[n] == kind),
            }
            for kind in POISON_CLASSES
        }
        periods = [b - a for a, b in self.t.unready]
        goal = {
            "lost": len(lost) == 0,
            "doubled": len(doubled) == 0,
            "every_poison_in_dlq_or_answered": not missing and isinstance(letters, list),
            "nothing_else_in_dlq": not unexpected and isinstance(letters, list),
            "hub_never_exited_by_itself": not self.hub.crashes and self.hub_down is None,
            "everything_sent": unsent == 0,
        }
        return {
            "minutes": round(elapsed / 60, 2),
            "target_rate_per_s": self.rate,
            "produced": self.t.produced,
            "sent_valid_acknowledged": len(sent),
            "sent_valid_http": len(self.t.valid_http_acked),
            "sent_valid_nats": len(self.t.valid_nats_acked),
            "never_acknowledged_at_end": unsent,
            "stored_events": len(stored_ids),
            "stored_unique": len(counts),
            "store_error": ledger_error,
            "lost": len(lost),
            "lost_examples": lost[:5],
            "doubled": len(doubled),
            "doubled_examples": doubled[:5],
            "poisons_sent": len(self.t.poisons),
            "poisons_answered_at_edge": len(answered),
            "poisons_expected_in_dlq": len(expected_in_dlq),
            "poisons_found_in_dlq": len(expected_in_dlq & found),
            "poisons_missing_from_dlq": len(missing),
            "poisons_by_class": by_class,
            "dlq_total": len(letters) if isinstance(letters, list) else letters,
            "dlq_unexpected": len(unexpected),
            "dlq_unexpected_by_reason": dict(Counter(u["reason"] for u in unexpected)),
            "dlq_unexpected_examples": unexpected[:5],
            "longest_unready_s": round(max(periods, default=0.0), 1),
            "unready_total_s": round(sum(periods), 1),
            "unready_periods": len(periods),
            "kills": self.t.kills,
            "whole_hub_restart": self.t.whole_restart,
            "hub_exited_by_itself": self.hub.crashes,
            "hub_starts": self.hub.starts,
            "child_restarts_metrics": dict(self.t.restarts_metrics)
            or "hub_child_restarts_total not in /metrics",
            "http_errors": dict(self.t.http_errors),
            "nats_errors": dict(self.t.nats_errors),
            "goal": goal,
            "goal_met": all(goal.values()),
        }


def stored_event_ids(data_dir: Path) -> tuple[list[str], str | None]:
    """Every stored event's id (with repeats, in notification order), read from the hub's SQLite
    store after the hub stopped; with the error when the store could not be read."""
    from ops.bootstrap import build_ledger

    ids: list[str] = []
    try:
        ledger = build_ledger(f"sqlite:///{data_dir / 'events.sqlite'}")
        start = 1
        while section := ledger.recorder.select_notifications(start=start, limit=5000):
            for n in section:
                ids.append(str(ledger.mapper.to_domain_event(n).event_id))  # type: ignore[attr-defined]
            start = section[-1].id + 1
    except Exception as exc:
        return ids, f"{type(exc).__name__}: {exc}"
    return ids, None


def run_bounded(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` whose clean-up cannot hang: nats-py's reconnect task, while its server is
    down, does not end on cancellation, and ``asyncio.run`` would wait for it forever. Leftover
    tasks get 5 s, then the loop is closed; also after Ctrl-C."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.wait(leftovers, timeout=5))
        loop.close()


def run(
    minutes: float = DEFAULT_MINUTES,
    rate: float = DEFAULT_RATE,
    seed: int = 14,
    poisons: tuple[str, ...] = POISON_CLASSES,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        logs = Path(__file__).parent / "results" / "chaos-hub.log"
        logs.parent.mkdir(exist_ok=True)
        logs.write_bytes(b"")
        hub = Hub(Path(tmp) / "var", free_port(), free_port(), logs)
        print(
            f"  hub up on {hub.base}, nats port {hub.nats_port}, data {hub.data_dir}, log {logs}", flush=True
        )
        chaos = Chaos(hub, minutes, rate, seed, poisons)
        try:
            elapsed, unsent, letters = run_bounded(chaos.run())
        finally:
            hub.stop_now()  # always: also on Ctrl-C and on a failed run, nothing it started survives
        figures = chaos.figures(elapsed, unsent, letters)  # the store read with the hub stopped
        figures["final_stop_s"] = None if chaos.final_stop_s is None else round(chaos.final_stop_s, 1)
        figures["hub_given_up"] = chaos.hub_down
        figures["ready_at_end"] = chaos.unready_since is None
        figures["hub_log"] = str(logs)
    report(figures)
    return figures


def report(f: dict[str, Any]) -> None:
    def line(key: str, value: Any, goal: str = "") -> None:
        print(f"  {key:36s} {value!s:>10}  {goal}")

    print()
    line("sent (valid, acknowledged)", f["sent_valid_acknowledged"], "")
    line("stored (events in the store)", f["stored_events"], "")
    line("lost", f["lost"], "goal 0")
    if f["hub_given_up"] or not f["ready_at_end"]:
        print("  (the hub was down or unready at the end: 'lost' counts what was not stored by then)")
    line("doubled", f["doubled"], "goal 0")
    line("poisons sent", f["poisons_sent"], "")
    line("  answered at the edge", f["poisons_answered_at_edge"], "")
    line("  expected in CITY_DLQ", f["poisons_expected_in_dlq"], "")
    line("  found in CITY_DLQ", f["poisons_found_in_dlq"], "goal = expected")
    if isinstance(f["dlq_total"], str):
        print(f"  {f['dlq_total']}")
    else:
        line("anything else in CITY_DLQ", f["dlq_unexpected"], "goal 0")
    line("hub exited by itself", len(f["hub_exited_by_itself"]), "goal 0")
    line("never acknowledged at the end", f["never_acknowledged_at_end"], "goal 0")
    line("longest unready period (s)", f["longest_unready_s"], "")
    line("unready in total (s)", f["unready_total_s"], "")
    print(f"  child restarts (/metrics): {f['child_restarts_metrics']}")
    print(f"  kills: {[(k['role'], k.get('back_after_s', k.get('outcome'))) for k in f['kills']]}")
    print(f"  poisons by class: {f['poisons_by_class']}")
    if f["dlq_unexpected_by_reason"]:
        print(f"  unexpected dead letters by reason: {f['dlq_unexpected_by_reason']}")
    print(f"  GOAL {'MET' if f['goal_met'] else 'MISSED'}: 0 lost, 0 doubled, every poison in CITY_DLQ "
          f"(or answered at the edge) and nothing else there — {f['goal']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="duration (default 5)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="inputs per second (default 60)")
    parser.add_argument("--seed", type=int, default=14, help="random seed of poisons and kills")
    parser.add_argument(
        "--poisons",
        default="all",
        help=f"poison classes to send, comma-separated, 'all' or 'none' (to look at the faults alone): "
        f"{', '.join(POISON_CLASSES)}",
    )
    args = parser.parse_args(argv)
    poisons: tuple[str, ...]
    if args.poisons == "all":
        poisons = POISON_CLASSES
    elif args.poisons == "none":
        poisons = ()
    else:
        poisons = tuple(p.strip() for p in args.poisons.split(",") if p.strip())
        unknown = set(poisons) - set(POISON_CLASSES)
        if unknown:
            parser.error(f"unknown poison classes {sorted(unknown)}; choose from {', '.join(POISON_CLASSES)}")
    from benchmarks.__main__ import record

    outcome: dict[str, Any] = {}

    def bench() -> dict[str, Any]:
        outcome.update(run(args.minutes, args.rate, args.seed, poisons))
        return outcome

    try:
        if not record("chaos", bench):
            return 2
    except KeyboardInterrupt:  # run() has stopped the hub and everything it started by now
        print("\n  interrupted: the hub was stopped; no figures written", flush=True)
        return 130
    return 0 if outcome.get("goal_met") else 1


if __name__ == "__main__":
    raise SystemExit(main())
