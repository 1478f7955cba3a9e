"""``hub up`` as a set of cooperating tasks: NATS, intake, deadline watcher, HTTP API, demo city.

Why one module: the order of starting (NATS before streams before intake before the API) and of
stopping (the reverse, each awaited, so no acked-but-unsaved state exists) is the operational
contract of the hub; keeping it in one place makes it reviewable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from nats.aio.client import Client as NATS
from starlette.applications import Starlette

from hub.api.health import health_routes
from hub.api.metrics import Sample, metrics_routes
from hub.intake import Intake
from ops.bootstrap import (
    access_log,
    build_ledger,
    connect_nats,
    connector_routes,
    graphql_app_routes,
    publish_commits,
    screen_app_routes,
    start_anchoring,
    start_intake,
    start_projections,
)
from ops.cluster import stream_settings_for
from ops.nats_auth import NatsAuth, NatsUsersError, redact
from ops.natsd import EmbeddedNats, NatsStartError
from ops.settings import DEFAULT_NATS_PORT, Settings
from ops.supervisor import Readiness, Supervisor, WriterWatch

log = logging.getLogger("hub")


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    host: str = "127.0.0.1"
    http_port: int = 8000
    nats_port: int | None = None
    demo: bool = True
    demo_rate: float = 600.0
    """New cases per simulated hour in the demo city (the programmes see a few hundred)."""
    demo_speed: float = 1.0
    """Simulated seconds per wall second of the demo city (1 = real time; ``hub up --demo-speed``).
    Above 1 the deadline watcher follows the demo's simulated time and ticks that much faster."""
    watch_every_s: float = 15.0
    watch_backlog: int = 1000
    """The deadline watcher waits while more events than this wait for the intake: the cases'
    later steps are still on the way then (a catch-up, a back-fill), so their breaches are not real."""


def _writer_died(error: str) -> bool:
    """The intake's last store failure was its writer dying (not the store refusing a commit)."""
    return any(text in error for text in ("store writer died", "store recorder died", "closed the pipe"))


async def _nothing() -> None:
    """The recorder is restarted with its writer (see ``WriterWatch``): nothing of its own to do."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``hub up`` owns SIGINT/SIGTERM and stops in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class HubRuntime:
    settings: Settings
    options: RuntimeOptions
    embedded: EmbeddedNats | None = None
    nats_url: str = ""
    nc: NATS | None = None
    intake: Intake | None = None
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    server: _Server | None = None
    projections: Any = None
    reader: Any = None
    """The read-only ledger the projector follows (kept: a dropped Application closes its pool)."""
    access: Any = None
    """The read access log (hub.adapters.audit.AccessLog) the GraphQL API records personal-data reads in."""
    notices: list[str] = field(default_factory=list)
    breaches_escalated: int = 0
    supervisor: Supervisor | None = None
    writer_watch: WriterWatch | None = None
    readiness: Readiness | None = None
    development_credentials: list[str] = field(default_factory=list)
    stop_requested: bool = False
    """``stop()`` has begun: a background task failing now (its writer thread shut down under it)
    is part of stopping, not an error to report."""
    """What production mode would refuse (development tokens, open doors): the banner names them."""

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        self._check_doors()  # production mode: refuse before anything starts or is written
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = self.settings.nats_url
        if url is None:
            kept = self.settings.nats_port_file
            port, fell_back = EmbeddedNats.choose_port(self.options.nats_port, DEFAULT_NATS_PORT, kept)
            if fell_back:
                self.notices.append(
                    f"port {DEFAULT_NATS_PORT} is taken; the embedded NATS uses {port} "
                    f"(kept in {kept} for every later start)"
                )
            try:  # the hub's generated user (DATA_DIR, 0600) and the departments' (HUB_CONFIG_DIR)
                auth = NatsAuth.load(self.settings.data_dir, self.settings.config_dir)
            except NatsUsersError as exc:
                raise NatsStartError(str(exc)) from None
            self.embedded = EmbeddedNats(
                store_dir=self.settings.data_dir / "nats", port=port,
                max_file_store=self.settings.nats_max_file_store, auth=auth,
            )  # fmt: skip
            self.embedded.start()  # on the main thread: the server's parent-death signal follows it
            if self.options.nats_port is None and not kept.exists():
                kept.write_text(f"{port}\n")  # the first start's port, reused from now on
            url = self.embedded.url  # with the hub's credentials; nats.url gets the bare address
            self.settings.nats_url_file.write_text(self.embedded.address + "\n")
        # the banner's: never a password (the embedded server's bare address, else HUB_NATS_URL redacted)
        self.nats_url = self.embedded.address if self.embedded is not None else redact(url)
        self.nc = await connect_nats(url, "hub-up")
        self.readiness = self._readiness()
        await self.readiness.measure_start()  # before the intake pulls: what waits is the backlog
        self.intake, self.tasks["intake"] = await start_intake(
            self.nc,
            self.settings.store_url,
            self.settings.config_dir,
            streams=stream_settings_for(self.nc, self.settings.stream_retention),
        )
        await self._start_projections()
        self.tasks["watcher"] = asyncio.create_task(self._watch_deadlines(), name="deadline-watcher")
        self._start_supervision()
        await self._start_http()
        if self.options.demo:
            self.tasks["demo"] = asyncio.create_task(self._demo_city(), name="demo-city")

    def _check_doors(self) -> None:
        """Production mode refuses development credentials and open doors (``ProductionRefused``
        names each); development mode lists them in ``development_credentials`` for the banner,
        and says loudly that Open311 takes requests from anyone when no keys are configured."""
        from ops.production import open311_without_keys, refuse_if_unfit

        self.development_credentials = refuse_if_unfit(self.settings)
        if self.development_credentials:
            log.warning(
                "development mode, development credentials active: %s",
                " | ".join(self.development_credentials),
            )
        if open311_without_keys(self.settings):
            self.notices.append(
                "WARNING: Open311 takes new requests WITHOUT an api_key (no key entry in "
                "HUB_CONFIG_DIR/open311_keys.toml): anyone who reaches this port can create cases; "
                "see docs/security.md"
            )

    def status(self) -> Mapping[str, bool | str]:
        """Each component: ``True`` when ready, else why not (``/readyz`` names it)."""
        intake = self.tasks.get("intake")
        projector = getattr(self.projections, "projector", None)  # its thread records a failure in .error
        watcher = self.tasks.get("watcher")
        down = self.supervisor.problems() if self.supervisor is not None else {}
        probes = self.readiness.problems() if self.readiness is not None else {}
        out: dict[str, bool | str] = {}
        if self.nc is None or not self.nc.is_connected:
            out["nats"] = down.get("nats-server") or "not connected to NATS (reconnecting)"
        else:
            out["nats"] = down.get("nats-server") or True
        out["jetstream"] = probes.get("jetstream", True)
        if intake is None or intake.done():
            out["intake"] = "the intake task ended"
        else:
            out["intake"] = probes.get("intake", True)
        store: bool | str = True
        if "store-writer" in down or "store-recorder" in down:
            store = down.get("store-writer") or f"the store recorder {down['store-recorder']}"
        elif self.intake is not None and not self.intake.store_healthy():
            error = self.intake.store_error
            if not (self.writer_watch is not None and _writer_died(error) and self.writer_watch.running):
                # (a batch lost with a dead writer says nothing about a writer running again)
                store = f"the store cannot commit: {error}" if error else "a commit has waited for over 5 s"
        out["store"] = store
        if projector is None:
            out["projector"] = "not started"
        elif down.get("projector"):
            out["projector"] = down["projector"]
        elif projector.error is not None:
            out["projector"] = f"{projector.error.__class__.__name__}: {projector.error}"
        else:
            out["projector"] = True
        out["audit-chain"] = down.get("chain-follower") or True
        out["watcher"] = True if watcher is not None and not watcher.done() else "the deadline watcher ended"
        out["start-backlog"] = probes.get("start-backlog", True)
        return out

    def cannot_take(self) -> str | None:
        """Why ingest cannot store records right now (answered 503 at once), or ``None``."""
        if self.nc is None or not self.nc.is_connected:
            return "not connected to NATS (reconnecting)"
        problem = None
        if self.readiness is not None and self.readiness.jetstream_failing_since is not None:
            problem = self.readiness.jetstream  # the probe fails (a CITY failure alone does not stop
            # ingest: its next publish is what tells that CITY stores again)
        if problem is None and self.intake is not None and not self.intake.store_ok:
            error = self.intake.store_error
            if not _writer_died(error):  # a store that refuses commits (full disk, PostgreSQL down)
                problem = f"the event store cannot commit ({error})"
        return problem

    def _ingested(self, unstored: str | None) -> None:
        """Ingest's word on each request: CITY stored it, or why not (see ``Readiness``)."""
        if self.readiness is not None:
            self.readiness.publish_result(unstored)

    def _readiness(self) -> Readiness:
        """The probes behind ``/readyz`` (JetStream writes, intake progress, the start backlog)."""
        from hub.intake import IntakeSettings

        def durables() -> list[str]:
            if self.intake is not None:
                return self.intake.durables
            return [durable for durable, _ in IntakeSettings().consumers()]  # what start_intake uses

        def progress() -> int:
            return 0 if self.intake is None else self.intake.stats.received + self.intake.stats.batches

        assert self.nc is not None
        return Readiness(
            self.nc, durables, progress, stall_s=self.settings.stall_s,
            store_dir=self.embedded.store_dir if self.embedded is not None else None,
        )  # fmt: skip

    def _start_supervision(self) -> None:
        """Restart any child that dies; probe JetStream, intake progress and the start backlog."""
        from ops.supervisor import Child, Supervisor, chain_child, projector_child

        assert self.nc is not None and self.intake is not None
        intake = self.intake
        children: list[Child] = []
        nats_child: Child | None = None
        embedded = self.embedded
        if embedded is not None:

            def nats_down() -> str | None:
                code = embedded.exit_code
                return None if code is None else f"the embedded nats-server exited (code {code})"

            async def nats_restart() -> None:
                await embedded.restart()
                log.warning("the embedded nats-server runs again on %s (same store)", embedded.address)

            nats_child = Child("nats-server", nats_down, nats_restart)
            children.append(nats_child)
        ledger: Any = intake.ledger  # hub.adapters.store.remote.RemoteLedger in hub up
        if hasattr(ledger, "writer_process"):
            watch = self.writer_watch = WriterWatch(ledger)
            children.append(
                Child("store-writer", watch.down, watch.restart, lambda: watch.restarts["store-writer"])
            )
            children.append(
                Child("store-recorder", lambda: None, _nothing, lambda: watch.restarts["store-recorder"])
            )
            children.append(chain_child(ledger.chain_follower))
        children.append(projector_child(self.projections.projector))

        def stopping() -> bool:
            return self.server is not None and self.server.should_exit

        self.supervisor = Supervisor(children, stopping)
        self.tasks["supervisor"] = asyncio.create_task(self.supervisor.run(), name="supervisor")

        async def restart_nats(why: str) -> None:
            if embedded is None or nats_child is None:
                return
            log.warning("supervisor: restarting the embedded nats-server: %s", why)
            await embedded.restart()
            nats_child.restarts += 1

        assert self.readiness is not None
        self.readiness.restart_nats = restart_nats if embedded is not None else None
        self.tasks["readiness"] = asyncio.create_task(self.readiness.run(stopping), name="readiness")

    async def _start_projections(self) -> None:
        """The read side follows the store's notification log (its own reader, its own DuckDB file)."""
        self.reader = await asyncio.to_thread(build_ledger, self.settings.store_url)
        self.projections = await asyncio.to_thread(start_projections, self.reader, self.settings)
        assert self.intake is not None and self.nc is not None
        self.intake.on_committed = self.projections.notify  # wake the projector after each batch
        self.access = access_log(self.reader)
        self.tasks["anchor"] = start_anchoring(self.nc, self.reader)
        publish_commits(self.projections, self.nc, asyncio.get_running_loop())

    async def _start_http(self) -> None:
        assert self.nc is not None
        js = self.nc.jetstream(timeout=10, publish_async_max_pending=4000)
        reads = self.projections.views
        app = Starlette(
            routes=[
                *health_routes(self.status),
                *metrics_routes(self.samples, self.settings.metrics_token),
                *connector_routes(
                    js,
                    reads,
                    self.settings.config_dir,
                    unavailable=self.cannot_take,
                    report=self._ingested,
                    open311_max_bytes=self.settings.open311_max_bytes,
                ),
                *graphql_app_routes(self.nc, reads, self.settings.config_dir, access=self.access),
                *screen_app_routes(self.settings.config_dir),
            ]
        )
        config = uvicorn.Config(
            app, host=self.options.host, port=self.options.http_port, log_level="warning", lifespan="off"
        )
        self.server = _Server(config)
        self.tasks["http"] = asyncio.create_task(self.server.serve(), name="http")
        for _ in range(200):  # wait until it listens (or failed to bind)
            if self.server.started or self.tasks["http"].done():
                break
            await asyncio.sleep(0.05)
        if self.tasks["http"].done() or not self.server.started:
            raise RuntimeError(
                f"the HTTP API could not listen on {self.options.host}:{self.options.http_port}; "
                f"is the port taken? choose another with --http-port"
            )

    # ------------------------------------------------------------------ background work
    async def _watch_deadlines(self) -> None:
        """督办 on SLA breach: breach events go through NATS like any other (one writer, exactly once).

        The watcher never fills the dead-letter queue with its own escalations. While the intake
        has a backlog (the demo day caught up at start, a back-fill, a restart) it waits: the store
        does not yet hold the cases' later steps, so a "breach" seen there is mostly stale. A breach
        it published is not published again for ten minutes (it is on its way). And whatever still
        arrives for a deadline the case has meanwhile left, or one already escalated, the case
        treats as already done (``AlreadyDone``): acknowledged as a duplicate, never refused.
        """
        from connectors.publisher import publish_events
        from ops.demo import demo_catching_up, demo_time

        assert self.nc is not None and self.intake is not None
        intake = self.intake
        js = self.nc.jetstream(timeout=10, publish_async_max_pending=4000)
        speed = self.options.demo_speed if self.options.demo else 1.0
        every = self.options.watch_every_s / max(1.0, speed)
        loop = asyncio.get_running_loop()
        published: dict[str, float] = {}  # breach event id → when it was published (loop time)
        waiting = False

        async def backlog() -> str | None:
            """Why the store does not show the cases as they are yet, or None when it does."""
            if self.options.demo and demo_catching_up(self.settings.data_dir, datetime.now(UTC)):
                return "the demo city is publishing the past"
            infos = [await js.consumer_info("CITY", durable) for durable in intake.durables]
            pending = sum(info.num_pending or 0 for info in infos)
            return f"{pending} events pending" if pending > self.options.watch_backlog else None

        while True:
            await asyncio.sleep(every)
            try:
                behind = await backlog()
                if behind is not None:
                    if not waiting:
                        log.info("deadline watcher: waiting for the intake to catch up (%s)", behind)
                    waiting = True
                    continue
                if waiting:
                    log.info("deadline watcher: the intake has caught up; watching deadlines again")
                    waiting = False
                now = datetime.now(UTC)
                if speed != 1.0:  # an accelerated demo: its simulated time runs ahead of the wall clock
                    now = demo_time(self.settings.data_dir, now)
                events = await intake.on_writer(intake.ledger.breach_events, now)
                tick = loop.time()
                published = {k: t for k, t in published.items() if tick - t < 600}
                events = [e for e in events if e["id"] not in published]
                if events:
                    await publish_events(js, events)
                    published.update(dict.fromkeys((e["id"] for e in events), tick))
                    self.breaches_escalated += len(events)
                    log.info("deadline watcher: %d breaches escalated", len(events))
            except Exception:
                if self.stop_requested:
                    return  # the hub is stopping: its intake's writer is gone, nothing to report
                log.exception("deadline watcher failed; retrying at the next tick")

    async def _demo_city(self) -> None:
        """The demo city: each day a seeded simulation, joined at the current time on a fresh start.

        It resumes where it stopped: the position of the day (``demo-city.json`` in the data dir,
        :mod:`ops.demo`) is saved after each acknowledged publish, so a restart publishes only what
        happened while the hub was down instead of the whole day again. ``demo_speed`` above 1 runs
        the simulated clock that much faster (from the wall clock, or from where an accelerated run
        stopped), for demonstrations and tests of many demo minutes in one.
        """
        from connectors.base import CHINA_TZ
        from connectors.publisher import publish_events
        from connectors.simulator import Position, PublishIncomplete, Simulator
        from ops.demo import DemoState

        assert self.nc is not None
        js = self.nc.jetstream(timeout=10, publish_async_max_pending=4000)
        data_dir, rate, speed = self.settings.data_dir, self.options.demo_rate, self.options.demo_speed
        loop = asyncio.get_running_loop()

        async def publish(events: Any) -> Any:
            return await publish_events(js, events)

        def clock_at_start() -> datetime:
            now = datetime.now(CHINA_TZ)
            saved = DemoState.load(data_dir)
            if speed != 1.0 and saved is not None and saved.position.at > now:
                return saved.position.at.astimezone(CHINA_TZ)  # an accelerated run went on ahead
            return now

        clock = clock_at_start()
        while True:
            day = clock.replace(hour=0, minute=0, second=0, microsecond=0)
            saved = DemoState.load(data_dir)
            after = saved.resumes(day.date(), rate) if saved is not None else None
            # Say where the day starts before publishing (the deadline watcher waits for a catch-up).
            DemoState(day.date(), rate, after or Position(day, 0)).save(data_dir)
            if after is not None:
                log.info("demo city: resuming %s after %s", day.date(), after.at.isoformat())

            def remember(position: Position, day: datetime = day) -> None:
                DemoState(day.date(), rate, position).save(data_dir)

            seed = zlib.crc32(day.date().isoformat().encode())
            sim = Simulator(seed=seed, rate=rate, duration=timedelta(days=1), start=day)
            wall0 = loop.time()
            try:
                await sim.run(
                    publish, speed=speed, tick=1.0, from_time=clock, after=after, on_published=remember
                )
            except PublishIncomplete as exc:
                log.warning("demo city: %s in 10 s", exc)
                await asyncio.sleep(10)
                clock = clock_at_start()
                continue
            except Exception:
                log.exception("demo city stopped; restarting it in 10 s")
                await asyncio.sleep(10)
                clock = clock_at_start()
                continue
            # Every record of the day is out: wait for the simulated midnight, then the next day.
            next_day = day + timedelta(days=1)
            simulated = clock + timedelta(seconds=(loop.time() - wall0) * speed)
            await asyncio.sleep(max(0.0, (next_day - simulated).total_seconds() / speed))
            clock = max(next_day, datetime.now(CHINA_TZ)) if speed == 1.0 else next_day

    # ------------------------------------------------------------------ metrics
    async def samples(self) -> list[Sample]:
        """What ``/metrics`` reports: intake throughput and lag, projector lag, SLA breaches, health."""
        out: list[Sample] = []

        def add(name: str, kind: str, text: str, value: float, **labels: str) -> None:
            out.append(Sample(name, kind, text, float(value), labels))

        for component, up in self.status().items():
            add("hub_component_up", "gauge", "1 when the component is ready", up is True, component=component)
        if self.supervisor is not None:
            for process, count in self.supervisor.restarts().items():
                add(
                    "hub_child_restarts_total", "counter",
                    "children of hub up started again after they died", count, process=process,
                )  # fmt: skip
        if self.readiness is not None and self.readiness.start_backlog is not None:
            add(
                "hub_start_backlog_events", "gauge",
                "events waiting in the stream at start, not yet delivered (0 once drained)",
                self.readiness.start_backlog,
            )  # fmt: skip
        add(
            "hub_sla_breaches_escalated_total",
            "counter",
            "督办 by the deadline watcher",
            self.breaches_escalated,
        )
        if self.intake is not None:
            st = self.intake.stats
            add(
                "hub_intake_received_total",
                "counter",
                "events delivered (redeliveries included)",
                st.received,
            )
            add("hub_intake_applied_total", "counter", "events recorded in the event store", st.applied)
            add("hub_intake_duplicates_total", "counter", "events skipped as already applied", st.duplicates)
            add("hub_intake_retries_total", "counter", "events delayed to wait for earlier ones", st.retried)
            add("hub_intake_batches_total", "counter", "batches, one store transaction each", st.batches)
            add(
                "hub_intake_batch_seconds_total",
                "counter",
                "time spent per batch, summed",
                st.batch_seconds_total,
            )
            add("hub_intake_last_batch_seconds", "gauge", "latency of the last batch", st.last_batch_seconds)
            for reason, count in st.dead_letter_reasons.items():
                add(
                    "hub_intake_dead_letters_total",
                    "counter",
                    "events copied to CITY_DLQ",
                    count,
                    reason=reason,
                )
            if self.nc is not None and self.nc.is_connected:
                with contextlib.suppress(Exception):
                    # Summed over the durables this process pulls (its partitions, ADR 0006).
                    js = self.nc.jetstream(timeout=2)
                    infos = [await js.consumer_info("CITY", durable) for durable in self.intake.durables]
                    add(
                        "hub_intake_consumer_pending",
                        "gauge",
                        "events not yet delivered",
                        sum(info.num_pending or 0 for info in infos),
                    )
                    ack_pending = sum(info.num_ack_pending or 0 for info in infos)
                    add("hub_intake_consumer_ack_pending", "gauge", "delivered, not yet acked", ack_pending)
        if self.projections is not None and self.reader is not None:
            position = self.projections.projector.position
            head = await asyncio.to_thread(self.reader.recorder.max_notification_id) or 0
            add("hub_projector_position", "gauge", "last notification in the read models", position)
            add("hub_store_head_position", "gauge", "last notification in the event store", head)
            add(
                "hub_projector_lag_events",
                "gauge",
                "events recorded, not yet projected",
                max(0, head - position),
            )
        return out

    # ------------------------------------------------------------------ stop
    async def wait(self) -> None:
        """Return when a core task ends (it should not): its failure is re-raised."""
        core = [self.tasks[name] for name in ("intake", "http") if name in self.tasks]
        if not core:
            return
        done, _ = await asyncio.wait(core, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled():
                task.result()

    async def stop(self, budget_s: float | None = None) -> None:
        """Stop in the reverse order of starting, every step bounded, the sum within ``budget_s``.

        Why bounded: an operator's Ctrl-C (or a supervisor's SIGTERM) must end the hub within 15 s
        whatever is stuck — a graceful stop once hung for over 90 s on one await. Each step gets a
        share of the budget; what has not stopped when its share is spent is left behind, and at
        the end every child process still alive (store writer, recorder, chain follower,
        nats-server) is killed by its process id. Nothing acknowledged is lost by that: the intake
        acks only what the store committed, and a killed writer's batch in flight is redelivered.
        """
        self.stop_requested = True
        deadline = time.monotonic() + (STOP_BUDGET_S if budget_s is None else budget_s)

        def share(seconds: float) -> float:
            return max(0.05, min(seconds, deadline - time.monotonic()))

        def off_loop(fn: Any, *args: Any) -> asyncio.Future[Any]:
            """``fn`` on a daemon thread of its own: one that overruns its share is left behind and
            does not hold the interpreter's exit (the default executor's threads would)."""
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()

            def settle_future(result: Any, error: BaseException | None) -> None:
                if future.done():
                    return
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

            def run() -> None:
                result: Any = None
                error: BaseException | None = None
                try:
                    result = fn(*args)
                except BaseException as exc:  # reported through the future
                    error = exc
                with contextlib.suppress(RuntimeError):  # the loop may be gone by then
                    loop.call_soon_threadsafe(settle_future, result, error)

            threading.Thread(target=run, name=f"stop-{getattr(fn, '__name__', 'step')}", daemon=True).start()
            return future

        async def settle(what: str, awaitable: Any, seconds: float) -> bool:
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(awaitable)), share(seconds))
            except TimeoutError:
                log.warning("stop: %s did not finish within its %.1f s; moving on", what, seconds)
                return False
            except (asyncio.CancelledError, Exception):
                pass  # stopping: a task that failed or was cancelled has stopped
            return True

        names = ("supervisor", "readiness", "demo", "watcher", "anchor")  # nothing restarts behind the stop
        background = [t for name in names if (t := self.tasks.get(name))]
        for task in background:
            task.cancel()
        if background:
            await settle("the background tasks", asyncio.wait(background), 1.0)
        if self.server and "http" in self.tasks:
            self.server.should_exit = True
            await settle("the HTTP API", self.tasks["http"], 1.0)
        intake = self.tasks.get("intake")
        if self.intake and intake:
            self.intake.stop()  # finishes the batches with the writer, acks them, closes the writer
            closing = getattr(self.intake.ledger, "closing", None)
            if callable(closing):
                closing()  # no writer is started again behind the stop's back
            if not await settle("the intake", intake, 4.5):
                intake.cancel()
                await settle("the intake (cancelled)", intake, 0.5)
        if self.access is not None:
            await settle("the read access log", off_loop(self.access.close), 1.0)
        if self.projections is not None:
            await settle("the projector", off_loop(self.projections.close), 1.0)
        if self.nc:
            await settle("the NATS connection", self.nc.close(), 0.5)
        if self.embedded:
            await settle("nats-server", off_loop(self.embedded.stop, 1.0), 1.5)
            self.settings.nats_url_file.unlink(missing_ok=True)
        killed = kill_children(spare_tracker=True)
        if killed:
            log.warning("stop: killed child processes that had not exited in time: %s", killed)


STOP_BUDGET_S = 10.0
"""What :meth:`HubRuntime.stop` may take in all; the command's own watchdog kills at 15 s (the
rest is the margin for the interpreter's own teardown)."""


def kill_children(pid: int | None = None, *, spare_tracker: bool = False) -> list[str]:
    """SIGKILL every process descended from ``pid`` (default: this one), deepest first; returns
    "pid name" of each killed. By process id, from ``/proc``: the writer's recorder is the writer's
    child, not ours, and a wedged child must not outlive a stop that promised to end within 15 s.
    ``spare_tracker`` leaves multiprocessing's resource tracker alone (it ends with this process)."""
    root = os.getpid() if pid is None else pid
    found: list[int] = []
    todo = [root]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    todo.append(child)
    killed: list[str] = []
    for child in reversed(found):
        try:
            name = Path(f"/proc/{child}/comm").read_text().strip()
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue  # gone already
        if spare_tracker and b"resource_tracker" in command:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
            killed.append(f"{child} {name}")
    return killed
