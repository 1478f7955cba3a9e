"""The ``hub`` command: run the hub, publish events, inspect and re-drive dead letters.

The root Typer app lives here, apart from the package's ``__init__``: each room's module
(audit, cluster, connectors, read) adds its commands with ``register(app)`` below, and none of them
imports this module or the package back, so the CLI has no import cycle.

Every command documents itself (``hub --help``, ``hub COMMAND --help``); names and flags are a
public interface operators script against, so they are extended, never renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from nats.js import JetStreamContext
from rich.markup import escape
from rich.table import Table

from hub import messages as m
from hub.adapters.logs import limit_repeats
from hub.intake import IntakeSettings, ensure_streams, read_dead_letters, replay_dead_letters
from ops.bootstrap import connect_nats, start_intake
from ops.cli import audit as cli_audit
from ops.cli import cluster as cli_cluster
from ops.cli import connectors as cli_connectors
from ops.cli import read as cli_read
from ops.cluster import stream_settings_for
from ops.console import console, err
from ops.logs import setup_logging
from ops.natsd import NatsStartError
from ops.production import EXIT_REFUSED, ProductionRefused
from ops.runtime import HubRuntime, RuntimeOptions
from ops.settings import (
    DEFAULT_HTTP_PORT,
    DEFAULT_NATS_PORT,
    Settings,
    SettingsError,
    intake_worker,
    time_window,
)
from ops.settings import demo_rate as settings_demo_rate
from ops.settings import demo_speed as settings_demo_speed
from ops.settings import nats_port as settings_nats_port

T = TypeVar("T")
app = typer.Typer(
    help="citybrain-hub: the integration hub of a city command centre (一屏统管).",
    no_args_is_help=True,
    add_completion=False,
)
dlq_app = typer.Typer(
    help="Dead letters (死信): events the hub could not apply, with the reason.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="State directory (NATS storage, event store, read models). Env HUB_DATA_DIR."
    ),
]
NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url", help="NATS server URL; default HUB_NATS_URL, else the running hub's embedded server."
    ),
]


def _setup_logging(verbose: bool = False) -> None:
    setup_logging(verbose)
    limit_repeats()  # identical lines: one per interval, then one line with the count (hub/adapters/logs.py)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _on_jetstream(url: str, name: str, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Connect, make sure the hub's streams exist, run ``work``, disconnect (one-shot commands)."""

    async def main() -> T:
        nc = await connect_nats(url, name)
        try:
            js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
            await ensure_streams(js, stream_settings_for(nc))  # never resize a cluster's R3 streams to 1
            return await work(js)
        finally:
            await nc.close()

    return asyncio.run(main())


STOP_DEADLINE_S = 15.0
"""A stop asked for by SIGINT/SIGTERM ends the process within this, whatever is stuck."""


class _StopSignals:
    """SIGINT/SIGTERM for a long-running command: the first asks for a graceful stop, a second
    SIGINT kills the children and exits at once, and a watchdog thread does the same when the
    stop has not ended the process within :data:`STOP_DEADLINE_S`.

    Why plain ``signal.signal`` and a thread, not ``loop.add_signal_handler``: the loop's handler
    runs only when the loop gets a turn; a wedged loop (once, a parser spinning on a corrupt pipe)
    ignored SIGINT twice and SIGTERM, and only SIGKILL ended the hub. A Python-level handler runs
    between any two bytecodes of the main thread, and the watchdog needs no loop at all.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline_s: float = STOP_DEADLINE_S) -> None:
        self.loop = loop
        self.deadline_s = deadline_s
        self.requested = asyncio.Event()
        self.count = 0
        self._watchdog: threading.Thread | None = None

    def install(self) -> None:
        """For the rest of the process (kept through the interpreter's teardown after the stop)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            if signum == signal.SIGINT:
                _say("second Ctrl-C: killing the hub's child processes and exiting now")
                _die(130)
            return  # a repeated SIGTERM: the stop (and its watchdog) is already under way
        _say(f"{signal.Signals(signum).name}: stopping (Ctrl-C again kills at once)")
        self.start_watchdog()
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.requested.set)

    def start_watchdog(self) -> None:
        """From now on the process ends within the deadline (also for a stop not caused by a signal)."""
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._expire, name="stop-watchdog", daemon=True)
            self._watchdog.start()

    def _expire(self) -> None:
        time.sleep(self.deadline_s)
        _say(f"the stop did not finish within {self.deadline_s:.0f}s; where each thread was:")
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(all_threads=True)
        _die(1)


def _say(line: str) -> None:
    """Straight to file descriptor 2: a signal handler may interrupt a write to ``sys.stderr``, and
    writing to it again from there would fail ("reentrant call")."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def _die(code: int) -> None:
    """Kill every child process by its id and leave without any further clean-up."""
    from ops.runtime import kill_children

    with contextlib.suppress(Exception):
        killed = kill_children()
        if killed:
            _say(f"killed child processes {killed}")
    os._exit(code)


@app.command()
def up(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Address the HTTP API binds to.")] = "127.0.0.1",
    http_port: Annotated[
        int, typer.Option("--http-port", help="HTTP port of the API and screen.")
    ] = DEFAULT_HTTP_PORT,
    nats_port: Annotated[
        int | None,
        typer.Option(
            "--nats-port",
            help=f"Port of the embedded NATS server. Default {DEFAULT_NATS_PORT}, or a free port when "
            "that is taken; an explicitly requested port that is taken is an error.",
        ),
    ] = None,
    no_demo: Annotated[bool, typer.Option("--no-demo", help="Do not run the demo city simulation.")] = False,
    demo_rate: Annotated[
        float,
        typer.Option("--demo-rate", help="Demo-city cases per hour (mean over the day). Env HUB_DEMO_RATE."),
    ] = 600.0,
    demo_speed: Annotated[
        float | None,
        typer.Option(
            "--demo-speed",
            help="Demo-city clock: simulated seconds per second (1 = real time; e.g. 20 for ten demo "
            "minutes in thirty seconds). Env HUB_DEMO_SPEED.",
        ),
    ] = None,
    production: Annotated[
        bool,
        typer.Option(
            "--production",
            help="Production mode (same as HUB_ENV=production): refuse to start while any development "
            "token, password or unauthenticated endpoint is configured, naming each (docs/security.md).",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the hub: embedded NATS JetStream (unless HUB_NATS_URL), intake into the event store."""
    _setup_logging(verbose)
    try:
        settings = Settings.from_env(data_dir)
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    if production:
        settings = dataclasses.replace(settings, env="production")
    try:
        port = settings_nats_port(nats_port)  # HUB_NATS_PORT (the flag wins)
        rate = settings_demo_rate(demo_rate)  # HUB_DEMO_RATE
        speed = settings_demo_speed(demo_speed)
        asyncio.run(_up(settings, host, http_port, port, no_demo, rate, speed))
    except ProductionRefused as exc:
        err.print(escape(str(exc)), style="red", highlight=False)
        raise typer.Exit(EXIT_REFUSED) from None
    except (NatsStartError, SettingsError, RuntimeError) as exc:
        raise _fail(escape(str(exc))) from None


async def _up(
    settings: Settings,
    host: str,
    http_port: int,
    nats_port: int | None,
    no_demo: bool,
    demo_rate: float = 600.0,
    demo_speed: float = 1.0,
) -> None:
    options = RuntimeOptions(
        host=host, http_port=http_port, nats_port=nats_port, demo=not no_demo, demo_rate=demo_rate,
        demo_speed=demo_speed,
    )  # fmt: skip
    runtime = HubRuntime(settings, options)
    signals = _StopSignals(asyncio.get_running_loop())
    signals.install()
    starting = asyncio.create_task(runtime.start())
    asked = asyncio.create_task(signals.requested.wait())
    await asyncio.wait({starting, asked}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # a signal while starting: stop what has started
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        asked.cancel()
        console.print("stopping…")
        await runtime.stop()
        return
    try:
        starting.result()
    except BaseException:
        asked.cancel()
        signals.start_watchdog()
        await runtime.stop()
        raise
    for notice in runtime.notices:
        console.print(f"[yellow]{notice}[/yellow]")
    _print_banner(runtime, settings, host, http_port, no_demo, demo_rate)
    waiter = asyncio.create_task(runtime.wait())
    done, _ = await asyncio.wait({waiter, asked}, return_when=asyncio.FIRST_COMPLETED)
    signals.start_watchdog()
    console.print("stopping…")
    waiter.cancel()
    asked.cancel()
    await runtime.stop()
    for task in done:
        if task is waiter and not task.cancelled():
            task.result()


def _print_banner(
    runtime: HubRuntime, settings: Settings, host: str, http_port: int, no_demo: bool, demo_rate: float
) -> None:
    base = f"http://{host}:{http_port}"
    demo_speed = runtime.options.demo_speed
    mode = "production" if settings.production else "development"
    console.print(f"[bold green]citybrain-hub is up[/bold green]  data: {settings.data_dir}  mode: {mode}")
    if settings.production:
        console.print(f"  screen 一屏统管 : {base}/   (sign in with a screen token of api_tokens.toml)")
    else:
        console.print(
            f"  screen 一屏统管 : {base}/?token=dev-screen   (operator: {base}/?token=dev-operator)"
        )
    console.print(f"  GraphQL        : {base}/graphql  (GraphiQL in a browser; tokens: docs/api.md)")
    console.print(f"  NATS JetStream : {runtime.nats_url}{'  (embedded)' if runtime.embedded else ''}")
    console.print(f"  event store    : {settings.store_url}")
    console.print(f"  HTTP ingest    : {base}/ingest/{{connector}}  (OpenAPI: {base}/ingest/openapi.json)")
    console.print(f"  Open311        : {base}/open311/v2/services.json")
    console.print(f"  health         : {base}/healthz  {base}/readyz")
    console.print(
        "  demo city      : "
        + (
            f"running, ~{demo_rate:g} cases/hour (a seeded day, joined at the current time"
            + (f", clock ×{demo_speed:g}" if demo_speed != 1.0 else "")
            + "; resumes where it stopped)"
            if not no_demo
            else "off (--no-demo)"
        )
    )
    if runtime.development_credentials:
        console.print(
            "  [bold red]DEVELOPMENT CREDENTIALS ACTIVE[/bold red] (fine on a laptop; "
            "`hub up --production` refuses to start with them, see docs/security.md):"
        )
        for problem in runtime.development_credentials:
            console.print(f"    - {escape(problem)}", highlight=False)
    console.print(
        "  publish events : hub publish FILE.jsonl   ·   dead letters: hub dlq list   ·   stop: Ctrl-C"
    )


@app.command()
def intake(
    data_dir: DataDir = None,
    nats_url: NatsUrl = None,
    store_url: Annotated[
        str | None,
        typer.Option("--store-url", help="Event store URL; default HUB_STORE_URL or SQLite in the data dir."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Events per pull and per store transaction.")] = 500,
    retry_delays: Annotated[
        str,
        typer.Option(help="Comma-separated seconds between retries of events their case cannot take yet."),
    ] = "1,2,5,10,30,60",
    ack_wait: Annotated[
        float,
        typer.Option(help="Seconds before JetStream redelivers an unacknowledged event (after a crash)."),
    ] = 30.0,
    http_port: Annotated[
        int | None,
        typer.Option("--http-port", help="Serve /healthz, /readyz and /metrics of this worker on 127.0.0.1."),
    ] = None,
    worker: Annotated[
        int | None,
        typer.Option(
            "--worker",
            help="This worker's number, from 0: it pulls the case partitions k with "
            "k mod WORKERS = WORKER; worker 0 also takes 4-token (unpartitioned) subjects. "
            "Default: env HUB_INTAKE_WORKER, else 0.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help=f"How many intake workers share the stream (1-{m.PARTITIONS}); run one process per "
            "--worker 0..WORKERS-1. Default: env HUB_INTAKE_WORKERS, else 1.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run only the intake (a worker): CITY stream → event store, against an existing NATS.

    Several workers share the city by case partitions (ADR 0006): each case's events stay in one
    partition, so they are applied in order by whichever worker owns it.
    """
    _setup_logging(verbose)
    settings = Settings.from_env(data_dir, store_url)
    delays = tuple(float(x) for x in retry_delays.split(",") if x.strip())
    try:
        number, count = intake_worker(worker, workers)  # HUB_INTAKE_WORKER / HUB_INTAKE_WORKERS
        config = IntakeSettings(
            batch_size=batch_size,
            retry_delays_s=delays,
            ack_wait_s=ack_wait,
            worker=number,
            workers=count,
        )
        time_window()  # a malformed HUB_TIME_WINDOW is refused here, before connecting
    except ValueError as exc:
        raise _fail(str(exc)) from None

    async def main() -> None:
        signals = _StopSignals(asyncio.get_running_loop())
        signals.install()
        await run_worker(signals)

    async def run_worker(signals: _StopSignals) -> None:
        from ops.runtime import kill_children

        nc = await connect_nats(settings.resolve_nats_url(nats_url), "hub-intake")
        streams = stream_settings_for(nc, settings.stream_retention)
        worker, task = await start_intake(nc, settings.store_url, settings.config_dir, config, streams)
        endpoints = None
        if http_port is not None:
            from ops.worker_http import serve_worker_endpoints

            endpoints, _ = await serve_worker_endpoints(settings, nc, worker, task, "127.0.0.1", http_port)
        asked = asyncio.create_task(signals.requested.wait())
        await asyncio.wait({asked, task}, return_when=asyncio.FIRST_COMPLETED)
        signals.start_watchdog()
        asked.cancel()
        if endpoints is not None:
            endpoints.should_exit = True
        worker.stop()  # finishes the batches with the writer, then closes the writer
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 10)
        if not task.done():
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2)
        kill_children()  # a writer, recorder or chain follower that did not stop in time
        if task.done() and not task.cancelled() and not signals.requested.is_set():
            task.result()

    asyncio.run(main())


@app.command()
def publish(
    file: Annotated[
        Path, typer.Argument(help="JSONL file of canonical events (one CloudEvents JSON per line).")
    ],
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Publish canonical events to JetStream (acks in flight; each event id is its dedup id)."""
    from connectors.publisher import publish_events

    settings = Settings.from_env(data_dir)
    if not file.exists():
        raise _fail(f"{file}: no such file")
    events: list[dict[str, Any]] = []
    bad = 0
    with file.open("rb") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
                if not isinstance(event, dict):
                    raise ValueError("a line must hold one JSON object")
            except (orjson.JSONDecodeError, ValueError) as exc:
                err.print(f"{file}:{line_no}: not published: {exc}")
                bad += 1
                continue
            events.append(event)

    url = settings.resolve_nats_url(nats_url)
    results = _on_jetstream(url, "hub-publish", lambda js: publish_events(js, events))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == "rejected":
            err.print(f"event {r.index + 1} ({r.event_id or 'no id'}): {r.error}")
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing"
    console.print(f"published {file}: {summary}" + (f", {bad} unreadable lines" if bad else ""))
    if bad or counts.get("rejected"):
        raise typer.Exit(1)


@dlq_app.command("list")
def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per dead letter (JSONL).")] = False,
    reason: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Show dead letters with their reason, field, original subject and sequence."""
    settings = Settings.from_env(data_dir)

    letters = _on_jetstream(
        settings.resolve_nats_url(nats_url), "hub-dlq", lambda js: read_dead_letters(js, reason)
    )
    if as_json:
        for letter in letters:
            sys.stdout.write(orjson.dumps(letter.as_json()).decode() + "\n")
        return
    table = Table(title=f"{m.DLQ_STREAM}: {len(letters)} dead letters")
    for column in ("seq", "reason", "field", "subject", "orig seq", "tries", "detail"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.seq), letter.reason, letter.field, letter.subject, str(letter.stream_seq),
            str(letter.deliveries), letter.detail,
        )  # fmt: skip
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[str | None, typer.Option(help="Only dead letters with this reason code.")] = None,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """Re-drive dead letters onto their original subjects once the cause is fixed.

    A dead letter stays in CITY_DLQ until its replay is applied (then it is deleted) or dead-lettered
    again (then the new dead letter replaces it).
    """
    settings = Settings.from_env(data_dir)
    valid_reasons = {r.value for r in m.Reason}
    if reason is not None and reason not in valid_reasons:
        raise _fail(
            f"--reason {reason!r} is not a dead-letter reason; use one of {', '.join(sorted(valid_reasons))}"
        )

    url = settings.resolve_nats_url(nats_url)
    letters = _on_jetstream(url, "hub-dlq", lambda js: replay_dead_letters(js, reason))
    console.print(f"re-drove {len(letters)} dead letters" + (f" with reason {reason}" if reason else ""))


# each room registers its own commands
cli_read.register(app)
cli_connectors.register(app)
cli_audit.register(app)
cli_cluster.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
