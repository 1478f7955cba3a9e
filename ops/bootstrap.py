"""The composition root (装配): where the hub picks its adapters and wires them together.

Everything the hub runs (``hub up``, ``hub intake``, tests, benchmarks) gets its NATS connection,
event store, intake, read models, access log, chain anchor and HTTP routes from here, so a change
of these adapters is a change in one file: the runtime and the CLI call these functions, and the
child processes (store writer, recorder, chain follower) receive a factory defined here.
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
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from eventsourcing.persistence import PersistenceError
from nats.aio.client import Client as NATS

from hub.adapters.config.loading import load_catalogue, load_domain
from hub.adapters.store.follower import LogFollower
from hub.adapters.store.ledger import SealedCaseLedger
from hub.application import CaseLedger
from hub.application.ports import Ledger
from hub.intake import Intake, IntakeSettings, StreamSettings, ensure_streams
from ops.cluster import stream_settings_for
from ops.nats_auth import HUB_INBOX_PREFIX, HUB_USER, NatsAuthError
from ops.settings import Settings, nats_client_credentials, store_env, time_window
from ops.settings import config_dir as settings_config_dir

# The read and HTTP sides are imported where they are built: a store-writer process needs neither.
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from nats.js import JetStreamContext
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from hub.adapters.audit import AccessLog, AccessStore, AuditChain
    from hub.adapters.store.remote import RemoteLedger
    from hub.api.ingest import IngestConfig, SubmitFn
    from hub.api.open311 import ApiKey, Open311Config, RequestReads
    from ops.natsd import EmbeddedNats
    from projections import ProjectionService

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
    """The case ledger on the configured store, wired to its adapters.

    ``config_dir`` defaults to ``HUB_CONFIG_DIR`` (ops/settings.py): the core reads no environment,
    so the domain configuration and the privacy policy come from the directory passed here. The
    ledger seals personal fields (``SealedCaseLedger``) and its deadline watch follows the log
    through ``LogFollower`` (never past an id that may still become visible on PostgreSQL).

    Several processes starting at once on a fresh PostgreSQL database race in its catalog while
    each creates the tables (``CREATE … IF NOT EXISTS`` is not atomic there): the losers retry.
    """
    env = store_env(store_url)
    env.update(extra_env or {})
    config_dir = config_dir if config_dir is not None else settings_config_dir()
    domain = load_domain(config_dir)
    for attempt in range(6):
        try:
            return SealedCaseLedger(env, domain=domain, config_dir=config_dir, follow_log=LogFollower)
        except PersistenceError as exc:
            if attempt == 5 or not any(race in str(exc) for race in _SCHEMA_RACES):
                raise
            log.info("event store schema being created by another process; retrying (%s)", exc)
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def writer_process_ledger(
    store_url: str, config_dir: Path | None = None, start_timeout: float = 60.0
) -> RemoteLedger:
    """The case ledger in a store-writer process on ``store_url`` (``hub up``'s default), started.

    ``hub.adapters.store.remote.RemoteLedger`` does not know how to open a store: it is handed
    :func:`build_ledger` with these arguments as a ``functools.partial``, which it passes to its
    children (the writer, its recorder, the chain follower). Pickled, that is a reference by name
    to ``ops.bootstrap.build_ledger``: unpickling it imports ``ops.bootstrap`` in the child, which
    calls it there to open the ledger. ``remote`` is imported here, not at module level, so that the
    commands that import this module do not load the writer family."""
    from hub.adapters.store.remote import RemoteLedger

    return RemoteLedger(functools.partial(build_ledger, store_url, config_dir=config_dir), start_timeout)


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
        ledger = await asyncio.to_thread(writer_process_ledger, store_url, config_dir)
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


# ------------------------------------------------------------------------------------ read side
# The read models, the read access log and the chain's anchor: built here for ``hub up`` (runtime)
# and for the commands that read the store themselves (replay, erasure, audit), never by them.


def views_path(settings: Settings) -> Path:
    """Where the read models of this hub live (``DATA_DIR/views.duckdb``)."""
    return settings.data_dir / "views.duckdb"


def projector_decoder(ledger: CaseLedger) -> Callable[[bytes], bytes] | None:
    """The projector's decoder of ``ledger``'s stored states (``None``: plain JSON), from the one
    stored-state reader (hub.adapters.store.state): decrypted, decompressed, personal fields opened."""
    from hub.adapters.store.state import state_decoder as decoder_for

    return decoder_for(ledger.mapper)


def projection_service(ledger: CaseLedger, path: Path) -> ProjectionService:
    """The read models in ``path`` following ``ledger``'s log (not started: ``start`` or ``catch_up``).

    The projections never see the ledger: only its recorder, its name and the stored-state decoder."""
    from projections import ProjectionService

    return ProjectionService(
        path, ledger.recorder, application_name=ledger.name, state_decoder=projector_decoder(ledger)
    )


def start_projections(ledger: CaseLedger, settings: Settings) -> ProjectionService:
    """Build and start the live projector for ``hub up`` (returns the ProjectionService)."""
    import atexit

    service = projection_service(ledger, views_path(settings))
    service.start()
    atexit.register(service.close)  # stop the thread and close DuckDB cleanly when the hub exits
    return service


def publish_commits(service: ProjectionService, nc: NATS, loop: asyncio.AbstractEventLoop) -> None:
    """Every API process (``hub up`` and replicas) feeds its GraphQL subscriptions from the notices
    its projector publishes after each commit."""
    from hub.api.gql import commit_publisher

    service.projector.on_commit = commit_publisher(nc, loop)


def rebuild_views(
    ledger: CaseLedger,
    target: Path,
    *,
    until: int | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    swap: bool = True,
) -> int:
    """``hub replay``: every read model rebuilt from ``ledger``'s log into ``target`` (a fresh file
    swapped in atomically when ``swap``); returns the events applied."""
    from projections import rebuild

    sections = {} if batch_size is None else {"batch_size": batch_size}
    applied: int = rebuild(
        target, ledger.recorder, application_name=ledger.name, until=until, **sections,
        progress=progress, state_decoder=projector_decoder(ledger), swap=swap,
    )  # fmt: skip
    return applied


def access_store(ledger: CaseLedger) -> AccessStore:
    """The read access log's own store beside ``ledger``'s event store (hub.adapters.audit.access):
    ``access.sqlite`` next to a SQLite store, its own tables in the PostgreSQL database."""
    from hub.adapters.audit import open_access_store

    return open_access_store(ledger.env)


def access_log(ledger: CaseLedger, flush_interval: float = 1.0) -> AccessLog:
    """The read access log for the API process: started, to be closed at shutdown."""
    from hub.adapters.audit import AccessLog

    log_ = AccessLog(access_store(ledger), flush_interval=flush_interval)
    log_.start()
    return log_


def export_access_log(store_url: str) -> AccessLog:
    """The access log a command records an export in (not started: ``record_export``, then ``close``)."""
    from hub.adapters.audit import AccessLog, open_access_store

    return AccessLog(open_access_store(store_env(store_url)))


def audit_chain(ledger: CaseLedger) -> AuditChain:
    """The audit chain (审计链) over ``ledger``'s store, for the commands that verify, extend or
    print it (``hub audit verify|chain|head``); a running hub's chain follower keeps it itself."""
    from hub.adapters.audit import AuditChain

    return AuditChain(ledger.recorder)


def stopped_hub_nats(settings: Settings) -> EmbeddedNats:
    """A stopped hub's embedded NATS server, started on its stream store (``DATA_DIR/nats``) with
    the hub's own users (its generated password, the deployment's departments), so that the
    configuration written beside the stream store stays the hub's: ``stop()`` it when done."""
    from ops.nats_auth import NatsAuth
    from ops.natsd import EmbeddedNats, free_port

    auth = NatsAuth.load(settings.data_dir, settings.config_dir)
    embedded = EmbeddedNats(store_dir=settings.data_dir / "nats", port=free_port(), auth=auth)
    embedded.start()
    return embedded


def start_anchoring(nc: NATS, ledger: CaseLedger) -> asyncio.Task[None]:
    """For ``hub up``: anchor the audit chain's head in NATS KV whenever it moved."""
    from hub.adapters.audit.anchor import anchor_forever

    return asyncio.create_task(anchor_forever(nc, ledger.recorder, ledger.name), name="audit-anchor")


# ------------------------------------------------------------------------------------ HTTP side
# What ``hub up`` mounts: the GraphQL API, the screen, and the connectors' ways in (HTTP ingest,
# Open311). ``hub.api`` may not import ``connectors`` (design §3), so the connector registry and
# the JetStream publisher are joined to the API modules here.

OPS_DEFAULTS = Path(__file__).parent / "defaults"
"""ops' shipped configuration (the development ingest tokens)."""
DESCRIPTIONS = {
    "police": "110 incidents and anti-fraud warnings (connectors/police.py)",
    "citymgmt": "数字城管 案卷 workflow steps with national component/matter codes",
    "health": "public-health reports, 120 dispatches, psychological crises, food rapid tests",
    "courts": "pre-litigation mediation and labour arbitration steps",
    "open311": "GeoReport v2 service requests and citizen evaluations",
}


def graphql_app_routes(
    nc: NATS,
    views: Any,
    config_dir: Path | None,
    allowed_origins: Sequence[str] = (),
    access: AccessLog | None = None,
) -> list[BaseRoute]:
    """The GraphQL API (/graphql, GraphiQL, graphql-transport-ws) over the read models and NATS."""
    from hub.adapters.config.loading import load_departments, load_grids
    from hub.api.gql import ApiContext, DepartmentInfo, Limits, TokenBook, graphql_routes
    from ops.settings import graphql_limits

    departments = {
        code: DepartmentInfo(d.code, d.name, d.name_en, d.kinds)
        for code, d in load_departments(config_dir).items()
    }
    ctx = ApiContext(
        views=views, tokens=TokenBook.load(config_dir), catalogue=load_catalogue(config_dir),
        departments=departments, grids=load_grids(config_dir).tree, nc=nc, limits=Limits(**graphql_limits()),
        record_access=None if access is None else (
            lambda role, case_id, fields, principal, operation, request: access.record_access(
                role, case_id, fields, principal=principal, operation=operation, request=request
            )
        ),
    )  # fmt: skip
    return graphql_routes(ctx, allowed_origins)


def screen_app_routes(config_dir: Path | None) -> list[BaseRoute]:
    """The command-centre screen at ``/`` (static files over the public GraphQL API)."""
    from hub.adapters.config.loading import config_file
    from hub.api.screen import screen_routes

    return list(screen_routes(config_file("grids.geojson", config_dir)))


def make_submit(js: JetStreamContext, mappings: Mapping[str, Path] | None = None) -> SubmitFn:
    """``submit(name, records)``: map with the named connector, publish, one result dict per record."""
    from connectors import base, registry
    from connectors.publisher import publish_events

    cache: dict[str, base.Connector] = {}
    window = time_window()  # HUB_TIME_WINDOW: answered per record at 202-time

    async def publish(events: Sequence[dict[str, Any]]) -> Sequence[Any]:
        return await publish_events(js, events)

    async def submit(
        name: str, records: Sequence[Any], /, *, department: str | None = None
    ) -> Sequence[Mapping[str, Any]]:
        if name not in cache:
            cache[name] = registry.build(name, (mappings or {}).get(name), window)
        results = await base.submit(cache[name], records, publish, department=department)
        return [r.as_json() | {"error": r.error, "field": r.field} for r in results]

    return submit


def load_tokens(config_dir: Path | None) -> dict[str, str]:
    """Bearer token → department, from ``ingest_tokens.toml`` (deployment's, else the dev default).

    ``HUB_INGEST_TOKENS="police=secret1,health=secret2"`` adds tokens from the environment.
    """
    import tomllib

    from ops.settings import ingest_tokens

    path = (
        config_dir / "ingest_tokens.toml"
        if config_dir and (config_dir / "ingest_tokens.toml").exists()
        else None
    )
    path = path or OPS_DEFAULTS / "ingest_tokens.toml"
    with path.open("rb") as fh:
        raw = tomllib.load(fh).get("tokens", {})
    tokens: dict[str, str] = {}
    for department, values in raw.items():
        for token in [values] if isinstance(values, str) else values:
            tokens[str(token)] = department
    tokens.update(ingest_tokens())  # HUB_INGEST_TOKENS
    return tokens


def ingest_config(submit: SubmitFn, config_dir: Path | None = None, **limits: Any) -> IngestConfig:
    from connectors import registry
    from hub.api.ingest import IngestConfig

    connectors = {name: registry.build(name).department for name in registry.NATIVE}
    return IngestConfig(submit, connectors, load_tokens(config_dir), descriptions=DESCRIPTIONS, **limits)


def open311_config(
    submit: SubmitFn,
    reads: RequestReads,
    api_keys: Mapping[str, ApiKey] | frozenset[str] = frozenset(),
    max_bytes: int | None = None,
) -> Open311Config:
    from connectors.open311 import services
    from hub.api.open311 import DEFAULT_MAX_BYTES, Open311Config

    return Open311Config(
        services=services(), submit=submit, reads=reads, api_keys=api_keys,
        max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
    )  # fmt: skip


def connector_routes(
    js: JetStreamContext,
    reads: RequestReads,
    config_dir: Path | None = None,
    *,
    open311_keys: Mapping[str, ApiKey] | None = None,
    open311_max_bytes: int | None = None,
    **limits: Any,
) -> list[BaseRoute]:
    """Every connector route for ``hub up``: ``/ingest/…`` and ``/open311/v2/…``. Open311 keys
    default to ``HUB_CONFIG_DIR/open311_keys.toml`` (none: POST needs no api_key, development)."""
    from hub.api.ingest import ingest_routes
    from hub.api.open311 import open311_routes
    from ops.open311_keys import load_open311_keys

    submit = make_submit(js)
    keys = load_open311_keys(config_dir) if open311_keys is None else open311_keys
    return [
        *ingest_routes(ingest_config(submit, config_dir, **limits)),
        *open311_routes(open311_config(submit, reads, keys, open311_max_bytes)),
    ]


def connector_app(
    js: JetStreamContext,
    reads: RequestReads,
    config_dir: Path | None = None,
    *,
    open311_keys: Mapping[str, ApiKey] | None = None,
    open311_max_bytes: int | None = None,
    **limits: Any,
) -> Starlette:
    """The connector routes as a stand-alone app (tests)."""
    from starlette.applications import Starlette

    routes = connector_routes(
        js, reads, config_dir, open311_keys=open311_keys, open311_max_bytes=open311_max_bytes, **limits
    )
    return Starlette(routes=routes)
