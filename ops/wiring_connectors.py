"""Wiring of the connectors' ways in (composition root): HTTP ingest, Open311, CLI import, simulator.

``hub.api`` may not import ``connectors`` (design §3), so this module builds what the API modules
need: the ``submit(connector, records)`` coroutine (connector registry + JetStream publisher), the
token table and the Open311 service list. ``hub up`` mounts
:func:`connector_routes`; tests build a stand-alone app with :func:`connector_app`.

Open311's reads come from the projections' ``hub.views.ReadModels`` (``hub up`` passes its own).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from starlette.applications import Starlette
from starlette.routing import Route

from connectors import base, registry
from connectors.open311 import services
from connectors.publisher import publish_events
from hub.api.ingest import IngestConfig, SubmitFn, ingest_routes
from hub.api.open311 import DEFAULT_MAX_BYTES, ApiKey, Open311Config, RequestReads, open311_routes
from ops.open311_keys import load_open311_keys
from ops.settings import ingest_tokens, time_window

DEFAULTS = Path(__file__).parent / "defaults"
DESCRIPTIONS = {
    "police": "110 incidents and anti-fraud warnings (connectors/police.py)",
    "citymgmt": "数字城管 案卷 workflow steps with national component/matter codes",
    "health": "public-health reports, 120 dispatches, psychological crises, food rapid tests",
    "courts": "pre-litigation mediation and labour arbitration steps",
    "open311": "GeoReport v2 service requests and citizen evaluations",
}


def make_submit(js: JetStreamContext, mappings: Mapping[str, Path] | None = None) -> SubmitFn:
    """``submit(name, records)``: map with the named connector, publish, one result dict per record."""
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
    path = (
        config_dir / "ingest_tokens.toml"
        if config_dir and (config_dir / "ingest_tokens.toml").exists()
        else None
    )
    path = path or DEFAULTS / "ingest_tokens.toml"
    with path.open("rb") as fh:
        raw = tomllib.load(fh).get("tokens", {})
    tokens: dict[str, str] = {}
    for department, values in raw.items():
        for token in [values] if isinstance(values, str) else values:
            tokens[str(token)] = department
    tokens.update(ingest_tokens())  # HUB_INGEST_TOKENS
    return tokens


def ingest_config(submit: SubmitFn, config_dir: Path | None = None, **limits: Any) -> IngestConfig:
    connectors = {name: registry.build(name).department for name in registry.NATIVE}
    return IngestConfig(submit, connectors, load_tokens(config_dir), descriptions=DESCRIPTIONS, **limits)


def open311_config(
    submit: SubmitFn,
    reads: RequestReads,
    api_keys: Mapping[str, ApiKey] | frozenset[str] = frozenset(),
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Open311Config:
    return Open311Config(
        services=services(), submit=submit, reads=reads, api_keys=api_keys, max_bytes=max_bytes
    )


def connector_routes(
    js: JetStreamContext,
    reads: RequestReads,
    config_dir: Path | None = None,
    *,
    open311_keys: Mapping[str, ApiKey] | None = None,
    open311_max_bytes: int = DEFAULT_MAX_BYTES,
    **limits: Any,
) -> list[Route]:
    """Every connector route for ``hub up``: ``/ingest/…`` and ``/open311/v2/…``. Open311 keys
    default to ``HUB_CONFIG_DIR/open311_keys.toml`` (none: POST needs no api_key, development)."""
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
    open311_max_bytes: int = DEFAULT_MAX_BYTES,
    **limits: Any,
) -> Starlette:
    routes = connector_routes(
        js, reads, config_dir, open311_keys=open311_keys, open311_max_bytes=open311_max_bytes, **limits
    )
    return Starlette(routes=routes)
