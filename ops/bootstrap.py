"""The composition root (装配): where the hub picks its adapters and wires them together.

Everything the hub runs (``hub up``, ``hub intake``, tests, benchmarks) gets its NATS connection,
event store and intake from here, so a change of these adapters is a change in one file. Not yet
the only place: ``ops/wiring_connectors.py``, ``ops/runtime.py``, ``ops/cli/read.py``,
``ops/cli/audit.py`` and ``ops/writer.py`` still wire parts of their own (issue 16 moves them here).
Values from the environment come from ``ops/settings.py``, the one reader of ``HUB_*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eventsourcing.persistence import PersistenceError
from nats.aio.client import Client as NATS

from hub.adapters.config.loading import load_catalogue, load_domain
from hub.adapters.store import remote
from hub.application import CaseLedger
from hub.application.ports import Ledger
from hub.intake import Intake, IntakeSettings, StreamSettings, ensure_streams
from ops.cluster import stream_settings_for
from ops.nats_auth import HUB_INBOX_PREFIX, HUB_USER, NatsAuthError
from ops.settings import Settings, nats_client_credentials, store_env, time_window
from ops.settings import config_dir as settings_config_dir

log = logging.getLogger("hub")


async def connect_nats(url: str, name: str, *, connect_timeout: float = 5.0) -> NATS:
    """Connect with endless reconnects; credentials from the URL or HUB_NATS_CREDS / HUB_NATS_TOKEN.

    After a reconnect nats-py subscribes every subscription again (the intake's pull inboxes keep
    their ids) and sends what it buffered meanwhile; the intake's pull requests that died with the
    old connection expire (``expires_s``) and are sent again, so it resumes by itself."""

    client: list[NATS] = []

    async def on_error(exc: Exception) -> None:
        if not client and "authorization violation" in str(exc).lower():
            raise NatsAuthError(url, exc)  # ends the first connect: retrying forever would hang
        log.warning("nats %s: %s", name, exc)

    async def on_disconnect() -> None:
        if client and not (client[0].is_closed or client[0].is_draining):
            log.warning("nats %s: disconnected, reconnecting", name)

    async def on_reconnect() -> None:
        log.info("nats %s: reconnected", name)

    servers = [u.strip() for u in url.split(",") if u.strip()]
    options: dict[str, object] = url_credentials(servers)
    if options.get("user") == HUB_USER:  # replies on an inbox no department may subscribe to
        options["inbox_prefix"] = HUB_INBOX_PREFIX
    options.update(nats_client_credentials())  # HUB_NATS_CREDS / HUB_NATS_TOKEN
    nc = NATS()
    connect: Any = nc.connect  # typed stricter than nats.connect (its timeouts as int)
    try:
        await connect(
            servers=servers,
            name=name,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # bounded: a restarted server is found again within half a second
            allow_reconnect=True,
            ping_interval=20,  # a server that hangs without closing the socket is left after ≈ 1 min, not 4
            max_outstanding_pings=3,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            pending_size=64 * 1024 * 1024,
            **options,
        )
    except NatsAuthError:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    client.append(nc)
    return nc


def url_credentials(servers: list[str]) -> dict[str, object]:
    """``user``/``password`` (or ``token``) taken from the first server URL that carries them.

    Why not leave them in the URLs: nats-py applies credentials written in a URL to that server only,
    and the servers a cluster gossips (its other nodes' addresses, tried after a node dies) carry
    none, so a reconnect to a surviving node failed with 'Authorization Violation' and the hub's
    publishers stalled until the dead node came back. As connect options they hold for every node.
    """
    for server in servers:
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        if parts.username and parts.password is not None:
            return {"user": unquote(parts.username), "password": unquote(parts.password)}
        if parts.username:
            return {"token": unquote(parts.username)}
    return {}


_SCHEMA_RACES = ("already exists", "tuple concurrently updated")


def build_ledger(
    store_url: str, extra_env: Mapping[str, str] | None = None, *, config_dir: Path | None = None
) -> CaseLedger:
    """The case ledger on the configured store.

    ``config_dir`` defaults to ``HUB_CONFIG_DIR`` (ops/settings.py): the core reads no environment,
    so the domain configuration and the privacy policy come from the directory passed here.

    Several processes starting at once on a fresh PostgreSQL database race in its catalog while
    each creates the tables (``CREATE … IF NOT EXISTS`` is not atomic there): the losers retry.
    """
    env = store_env(store_url)
    env.update(extra_env or {})
    config_dir = config_dir if config_dir is not None else settings_config_dir()
    domain = load_domain(config_dir)
    for attempt in range(6):
        try:
            return CaseLedger(env, domain=domain, config_dir=config_dir)
        except PersistenceError as exc:
            if attempt == 5 or not any(race in str(exc) for race in _SCHEMA_RACES):
                raise
            log.info("event store schema being created by another process; retrying (%s)", exc)
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


class RemoteLedger(remote.RemoteLedger):
    """The case ledger in a store-writer process on ``store_url`` (``hub up``'s default).

    The hub's ``RemoteLedger`` does not know how to open a store; its children (the writer, its
    recorder, the chain follower) are handed :func:`build_ledger` with these arguments, pickled as
    a reference and called there, so that they never import ``ops`` (no import cycle)."""

    def __init__(self, store_url: str, config_dir: Path | None = None, start_timeout: float = 60.0) -> None:
        super().__init__(functools.partial(build_ledger, store_url, config_dir=config_dir), start_timeout)


async def start_intake(
    nc: NATS,
    store_url: str,
    config_dir: Path | None = None,
    settings: IntakeSettings | None = None,
    streams: StreamSettings | None = None,
    *,
    writer_process: bool = True,
) -> tuple[Intake, asyncio.Task[None]]:
    """Ensure the streams, start the ledger (in a store-writer process by default) and run the intake.

    ``writer_process=False`` keeps the ledger in this process (tests that inspect it, tools).
    """
    # R3 on a cluster (design §9), else 1; HUB_STREAM_REPLICAS overrides.
    await ensure_streams(nc.jetstream(), streams or stream_settings_for(nc))
    ledger: Ledger
    if writer_process:
        ledger = await asyncio.to_thread(RemoteLedger, store_url, config_dir)
    else:
        ledger = await asyncio.to_thread(build_ledger, store_url, config_dir=config_dir)
    catalogue = replace(load_catalogue(config_dir), window=time_window())  # HUB_TIME_WINDOW
    intake = Intake(nc, ledger, catalogue, settings)

    async def run() -> None:
        try:
            await intake.run()
        finally:
            close = getattr(ledger, "close", None)
            if close is not None:
                await asyncio.to_thread(close)

    task = asyncio.create_task(run(), name="intake")
    return intake, task


def settings_for(data_dir: Path | None) -> Settings:
    return Settings.from_env(data_dir)
