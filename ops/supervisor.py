"""Supervision (自愈) of ``hub up``'s children, and the probes behind a truthful ``/readyz``.

Why here and not in each child's handle: a child that dies must come back whether or not anyone
talks to it (the store writer used to be restarted only by the next batch, the chain follower only
by the deadline watcher, a killed nats-server never), and an operator needs one place that says
what died, how often (``hub_child_restarts_total``) and why the hub is not ready. The supervisor
looks at every child twice a second and restarts a dead one with a growing delay (1 s doubling to
30 s while restarts fail), logging a line that names it.

Readiness (:class:`Readiness`) probes what a process table cannot show: that JetStream still
writes (a tiny probe stream, written every few seconds: after a full disk a stream keeps a write
error, and publishes get no answer at all), that the intake makes progress while events wait, and
that the backlog present at start is drained before the hub calls itself ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger("hub")

PROCESSES = ("nats-server", "store-writer", "store-recorder", "chain-follower", "projector")
"""The ``process`` label values of ``hub_child_restarts_total`` (all exported, 0 when none)."""

PROBE_STREAM = "HUB_PROBE"
PROBE_SUBJECT = "hub-probe.write"
"""A one-message stream beside CITY that the hub writes every few seconds: can JetStream write?"""
STUCK_SIGNS = ("no acknowledgement", "did not confirm")
"""How ingest words publishes to CITY that got no answer at all (connectors/publisher.py, ingest)."""
PROBE_BODY = bytes(16 * 1024)
"""Why 16 KiB and not an empty message: a full disk still takes a few bytes into a page the file
already has (measured on tmpfs: the empty probe kept succeeding while CITY's writes failed); 16 KiB
needs new pages every time. Every 3 s that is ≈ 0.5 GB written a day, in a 1 MB stream."""


@dataclass
class Child:
    """One supervised child: why it is down (``None`` while it runs), and how to start it again.

    ``count`` reads a restart counter the child keeps itself (when something else may restart it
    too); otherwise the supervisor counts the restarts it made."""

    name: str
    down: Callable[[], str | None]
    restart: Callable[[], Awaitable[None]]
    count: Callable[[], int] | None = None
    restarts: int = 0
    delay: float = 1.0
    next_try: float = 0.0
    reason: str | None = None
    seen_restarts: int = 0
    restarted_at: float | None = None


class Supervisor:
    """Restarts dead children with backoff; ``restarts()`` feeds ``/metrics``."""

    MAX_DELAY_S = 30.0

    SETTLE_S = 3.0
    """A restarted child counts as not ready for this long: readiness then shows every restart,
    however fast (a writer restarted by the intake's next batch is back within a second), and
    nothing is routed to a child still opening its store."""

    def __init__(
        self,
        children: Sequence[Child],
        stopping: Callable[[], bool],
        every_s: float = 0.5,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.children = list(children)
        self.stopping = stopping
        self.every_s = every_s
        self.settle_s = settle_s

    def restarts(self) -> dict[str, int]:
        counts = dict.fromkeys(PROCESSES, 0)
        for child in self.children:
            counts[child.name] = child.count() if child.count is not None else child.restarts
        return counts

    def problems(self) -> dict[str, str]:
        """Children that are down now, with why, or restarted a moment ago (readiness names them)."""
        now = time.monotonic()
        out: dict[str, str] = {}
        for child in self.children:
            count = self._count(child)
            if count > child.seen_restarts:  # restarted by us or by whoever else restarts it
                child.seen_restarts, child.restarted_at = count, now
            if child.reason:
                out[child.name] = child.reason
            elif child.restarted_at is not None and now - child.restarted_at < self.settle_s:
                out[child.name] = f"restarted {now - child.restarted_at:.1f} s ago; settling"
        return out

    @staticmethod
    def _count(child: Child) -> int:
        try:
            return child.count() if child.count is not None else child.restarts
        except Exception:  # a counter that cannot be read must not break readiness
            return child.seen_restarts

    async def run(self) -> None:
        while not self.stopping():
            await self.tick()
            await asyncio.sleep(self.every_s)

    async def tick(self) -> None:
        for child in self.children:
            if self.stopping():
                return
            try:
                child.reason = child.down()
            except Exception as exc:  # a probe that fails must not end supervision
                child.reason = f"cannot tell whether it runs ({exc.__class__.__name__}: {exc})"
                continue
            now = time.monotonic()
            if child.reason is None:
                if now > child.next_try + 60:
                    child.delay = 1.0  # stable for a minute: the next failure restarts at once again
                continue
            if now < child.next_try:
                continue
            log.warning("supervisor: %s is down (%s); restarting it", child.name, child.reason)
            child.next_try = now + child.delay
            try:
                await child.restart()
            except Exception as exc:
                child.delay = min(child.delay * 2, self.MAX_DELAY_S)
                log.error(
                    "supervisor: restarting %s failed (%s: %s); next try in %.0f s",
                    child.name, exc.__class__.__name__, exc, child.delay,
                )  # fmt: skip
                continue
            child.restarts += 1
            child.delay = min(child.delay * 2, self.MAX_DELAY_S)
            child.reason = None
            log.warning("supervisor: %s restarted", child.name)
        self.problems()  # notes restarts made by others (the intake restarts a writer lazily) too


def projector_child(projector: Any) -> Child:
    """The projector thread (projections/projector.py): restarted when it ended by a failure."""

    def down() -> str | None:
        return f"the projector thread ended ({projector.error!r})" if projector.dead else None

    async def restart() -> None:
        await asyncio.to_thread(projector.restart)

    return Child("projector", down, restart, lambda: projector.restarts)


def chain_child(chain: Any) -> Child:
    """The audit-chain follower process (hub/adapters/store/chain_follower.py); it counts its own restarts, as
    the writer's watcher thread may restart it too."""

    def down() -> str | None:
        return "the audit-chain follower exited" if chain.dead else None

    async def restart() -> None:
        await asyncio.to_thread(chain.ensure_running)

    return Child("chain-follower", down, restart, lambda: chain.restarts)


def child_pids(pid: int) -> list[int]:
    """Live (not zombie) children of ``pid``, read from /proc (Linux; empty elsewhere)."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (name) ": state ppid …
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


class WriterWatch:
    """Watches the store writer and its recorder (hub/adapters/store/remote.py ``RemoteLedger``).

    A recorder that dies ends its writer today (which the intake restarts on its next batch); the
    writer's exit code tells the two apart: 0 when it followed its recorder, a signal when it was
    killed itself. Each comes back counted under its own name, once the new one runs."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.process: Any = ledger.writer_process
        self.recorder: int | None = self._recorder_of(self.process)
        self.cause: str | None = None
        self.restarts = {"store-writer": 0, "store-recorder": 0}

    @staticmethod
    def _recorder_of(process: Any) -> int | None:
        if process is None or not process.is_alive():
            return None
        kids = child_pids(process.pid)
        return kids[0] if kids else None

    def down(self) -> str | None:
        process = self.ledger.writer_process
        old = self.process
        if old is not None and (process is not old or not old.is_alive()):
            if self.cause is None and not old.is_alive():
                self.cause = "store-recorder" if old.exitcode == 0 else "store-writer"
                log.warning(
                    "the %s died (store writer pid %s exit code %s)",
                    self.cause.replace("-", " "), old.pid, old.exitcode,
                )  # fmt: skip
            self.process = old = None
        if old is None:
            if process is None or not process.is_alive():
                return "the store writer is not running"
            self.process, self.recorder = process, None
        recorder = self._recorder_of(process)
        if recorder is None:
            if self.recorder is not None and self.cause is None:
                self.cause = "store-recorder"
                log.warning("the store recorder died (pid %s)", self.recorder)
            self.recorder = None
            return "the store recorder is not running"
        if recorder != self.recorder:
            if self.cause is not None:
                self.restarts[self.cause] += 1
                log.warning("supervisor: %s restarted (recorder pid %d)", self.cause, recorder)
            self.cause = None
            self.recorder = recorder
        return None

    @property
    def running(self) -> bool:
        """The writer and its recorder run (as of the last :meth:`down`)."""
        return self.process is not None and self.recorder is not None and self.cause is None

    async def restart(self) -> None:
        """An empty batch: the ledger starts a dead writer again before sending it (and a writer
        still starting, or one the intake's next batch restarts, just answers it)."""
        process = self.ledger.writer_process
        if process is not None and process.is_alive():
            return  # alive, its recorder about to be found (or to take it down with it)
        await asyncio.wait_for(self.ledger.submit_batch([]), 120)


@dataclass
class Readiness:
    """What ``/readyz`` needs beyond "is the process there": JetStream writes, the intake moves,
    the start backlog is drained. :meth:`run` refreshes it once a second."""

    nc: NATS
    durables: Callable[[], Sequence[str]]
    progress: Callable[[], int]
    """A counter the intake raises with every batch it settles (received + dead-lettered)."""
    stall_s: float = 30.0
    store_dir: Path | None = None
    """The embedded server's store (for the free-space check), ``None`` with an external NATS."""
    restart_nats: Callable[[str], Awaitable[None]] | None = None
    """Restarts the embedded server (a stream keeps a write error after the disk was full)."""
    probe_every_s: float = 3.0
    probe_timeout_s: float = 2.0
    stuck_restart_s: float = 10.0
    """JetStream not writing for this long while the disk has room: restart the embedded server."""
    min_free_bytes: int = 64 * 1024 * 1024
    """Room the disk needs again before that restart (or a fifth of a smaller disk)."""
    jetstream: str | None = "not probed yet"
    """``None`` while the last probe write was acknowledged, else why not."""
    jetstream_failing_since: float | None = None
    city: str | None = None
    """Why the hub's last publish to CITY was not stored (``None`` once one is): a stream can
    keep a write error from a full disk while the probe stream writes again."""
    city_failing_since: float | None = None
    _city_last_failure: float = 0.0
    _jetstream_ok_since: float = 0.0
    """When the probe last began to write again: a CITY failure older than that went with the
    outage that ended (a killed server), and says nothing about CITY now."""
    intake: str | None = None
    start_backlog: int | None = None
    """Events that were waiting at start and are not yet delivered (``None``: not measured yet)."""
    start_seq: int = 0
    """The stream's last sequence at start: what is beyond it is new, not backlog."""
    _last_probe: float = 0.0
    _last_progress: int = -1
    _progress_at: float = field(default_factory=time.monotonic)
    _last_backlog_log: float = 0.0
    _last_stuck_restart: float = 0.0
    _probe_ready: bool = False

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                await self.tick()
            except Exception as exc:
                log.warning("readiness check failed: %s: %s", exc.__class__.__name__, exc)
            await asyncio.sleep(1.0)

    async def tick(self) -> None:
        now = time.monotonic()
        if (
            now - self._last_probe >= self.probe_every_s
            or self.jetstream is not None
            or not self.nc.is_connected
        ):
            self._last_probe = now
            await self._probe()
        await self._consumers()

    async def _probe(self) -> None:
        reason = await self._probe_write()
        now = time.monotonic()
        if reason is None:
            if self.jetstream is not None:
                self._jetstream_ok_since = now
                if self.jetstream_failing_since is not None:
                    log.warning("JetStream writes again (after %.0f s)", now - self.jetstream_failing_since)
            self.jetstream, self.jetstream_failing_since = None, None
            if self.city is not None and self._city_last_failure < self._jetstream_ok_since:
                self.city, self.city_failing_since = None, None  # it failed with the outage that ended
            elif self.city is not None:
                await self._unstick(now)  # the probe writes, CITY does not: its stream is stuck
            return
        if self.jetstream_failing_since is None:
            self.jetstream_failing_since = now
            log.error("JetStream cannot write: %s", reason)
        self.jetstream = reason
        await self._unstick(now)

    def jetstream_problem(self) -> str | None:
        """Why JetStream cannot store now (the probe, or the hub's own publishes to CITY)."""
        if self.jetstream_failing_since is not None:
            return self.jetstream
        return self.city

    async def _probe_write(self) -> str | None:
        if not self.nc.is_connected:
            return "not connected to NATS (reconnecting)"
        js = self.nc.jetstream(timeout=self.probe_timeout_s)
        try:
            if not self._probe_ready:
                await self._ensure_probe_stream(js)
                self._probe_ready = True
            await js.publish(PROBE_SUBJECT, PROBE_BODY, timeout=self.probe_timeout_s, stream=PROBE_STREAM)
        except TimeoutError:
            return (
                f"JetStream did not acknowledge a write within {self.probe_timeout_s:g} s "
                f"(a full disk, or a stream left with a write error by one)"
            )
        except Exception as exc:
            text = getattr(exc, "description", None) or str(exc) or exc.__class__.__name__
            return f"JetStream refused a write: {text}"
        return None

    async def _ensure_probe_stream(self, js: Any) -> None:
        try:
            await js.stream_info(PROBE_STREAM)
            return
        except NotFoundError:
            pass
        replicas = 1
        try:
            replicas = (await js.stream_info("CITY")).config.num_replicas or 1
        except Exception:  # the intake creates CITY; R1 until then
            replicas = 1
        await js.add_stream(
            StreamConfig(
                name=PROBE_STREAM,
                description="citybrain-hub readiness: one tiny message written every few seconds",
                subjects=[PROBE_SUBJECT],
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                max_msgs=1,
                max_bytes=1024 * 1024,
                num_replicas=replicas,
            )
        )

    def publish_result(self, unstored: str | None) -> None:
        """Ingest reports each request: why its records were not stored in CITY, or ``None``.

        Only unanswered publishes count (a stream with a write error answers nothing); a refusal
        that names a cause (a record over the size limit) says nothing about CITY's disk."""
        if unstored is not None and not any(t in unstored for t in STUCK_SIGNS):
            return
        if unstored is None:
            if self.city is not None:
                log.warning("CITY stores published events again")
            self.city, self.city_failing_since = None, None
            return
        self._city_last_failure = time.monotonic()
        if self.city_failing_since is None:
            self.city_failing_since = self._city_last_failure
            log.error("publishes to CITY are not stored: %s", unstored)
        self.city = unstored

    async def _unstick(self, now: float) -> None:
        """A stream keeps its write error after the disk was full: once there is room again, a
        restart of the embedded server (same port, same store) clears it — nothing else does."""
        if self.restart_nats is None or self.store_dir is None:
            return
        since = min(t for t in (self.jetstream_failing_since, self.city_failing_since, now) if t is not None)
        if now - since < self.stuck_restart_s or now - self._last_stuck_restart < 30:
            return
        if not self.nc.is_connected:
            return  # the supervisor handles a server that is gone
        try:
            usage = shutil.disk_usage(self.store_dir)
        except OSError:
            return
        free = usage.free
        if free < min(self.min_free_bytes, usage.total // 5):
            self.jetstream = f"{self.jetstream}; {free // (1024 * 1024)} MB free under {self.store_dir}"
            return
        self._last_stuck_restart = now
        await self.restart_nats(
            f"JetStream has not written for {now - since:.0f} s although {free // (1024 * 1024)} MB "
            f"are free again (a stream keeps a write error after a full disk)"
        )
        self._probe_ready = False
        self.city, self.city_failing_since = None, None  # the next publish tells again

    async def measure_start(self) -> None:
        """Count the events waiting for the intake, before it pulls any (``hub up`` calls this
        between connecting and starting the intake): the start backlog readiness waits for."""
        js = self.nc.jetstream(timeout=10)
        try:
            last_seq = (await js.stream_info("CITY")).state.last_seq
        except NotFoundError:
            self.start_backlog = 0  # a first start: nothing can be waiting
            return
        total = 0
        for durable in self.durables():
            try:
                total += (await js.consumer_info("CITY", durable)).num_pending or 0
            except NotFoundError:
                continue  # created by the intake in a moment
        self.start_seq, self.start_backlog = last_seq, total
        self._last_backlog_log = time.monotonic()
        if total:
            log.info(
                "%d events were waiting in the stream at start; not ready until they are delivered", total
            )

    async def _consumers(self) -> None:
        if not self.nc.is_connected:
            return
        js = self.nc.jetstream(timeout=2)
        try:
            infos = [await js.consumer_info("CITY", durable) for durable in self.durables()]
            last_seq = (await js.stream_info("CITY")).state.last_seq
        except NotFoundError:
            return  # the intake is still creating its stream and durables
        now = time.monotonic()
        if self.start_backlog is None:  # not measured before the intake started: measured now
            self.start_seq = last_seq
            self.start_backlog = sum(info.num_pending or 0 for info in infos)
        elif self.start_backlog:
            # Drained means applied, not merely delivered: a batch pulled but not yet recorded is
            # still the backlog (its ack moves the consumer's ack floor past the start).
            remaining = sum(
                waiting
                for info in infos
                if (waiting := (info.num_pending or 0) + (info.num_ack_pending or 0))
                and (info.ack_floor.stream_seq or 0) < self.start_seq
            )
            if remaining == 0:
                log.info("the start backlog is drained; ready")
            elif now - self._last_backlog_log >= 10:
                log.info("start backlog: %d of %d events still to apply", remaining, self.start_backlog)
                self._last_backlog_log = now
            self.start_backlog = remaining
        pending = sum(info.num_pending or 0 for info in infos)
        progress = self.progress()
        if progress != self._last_progress or pending == 0:
            self._last_progress, self._progress_at = progress, now
            self.intake = None
        elif now - self._progress_at >= self.stall_s:
            self.intake = (
                f"no progress for {now - self._progress_at:.0f} s while {pending} events wait in the "
                f"stream (HUB_STALL_S={self.stall_s:g})"
            )

    def problems(self) -> dict[str, str]:
        out: dict[str, str] = {}
        jetstream = self.jetstream_problem() if self.jetstream_failing_since or self.city else self.jetstream
        if jetstream is not None:
            out["jetstream"] = jetstream
        if self.intake is not None:
            out["intake"] = self.intake
        if self.start_backlog is None:
            out["start-backlog"] = "not measured yet"
        elif self.start_backlog:
            out["start-backlog"] = f"{self.start_backlog} events waiting at start still to apply"
        return out
