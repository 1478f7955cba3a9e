"""Connector names (used in URLs, the CLI and docs) → connector factories.

Why a registry: ``POST /ingest/{connector}``, ``hub import --connector NAME`` and the simulator all
resolve a name the same way, and ops injects :func:`build` into the API (which may not import
connectors itself).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from connectors.base import Connector
from connectors.citymgmt import CityMgmtConnector
from connectors.courts import CourtsConnector
from connectors.health import HealthConnector
from connectors.open311 import Open311Connector
from connectors.police import PoliceConnector
from connectors.tabular import TableMapping, TabularConnector
from hub import messages as m

NATIVE: dict[str, type[Connector]] = {
    "police": PoliceConnector,
    "citymgmt": CityMgmtConnector,
    "health": HealthConnector,
    "courts": CourtsConnector,
    "open311": Open311Connector,
}
NAMES = (*NATIVE, "tabular")


def build(name: str, mapping: Path | None = None, window: m.TimeWindow | None = None) -> Connector:
    """The connector called ``name``; ``tabular`` needs a mapping file. ``window`` is the
    plausible-time window its events are checked against (``HUB_TIME_WINDOW``; default 1970/+1d)."""
    connector: Connector
    if name == "tabular":
        if mapping is None:
            raise ValueError("the tabular connector needs --mapping FILE (see docs/connectors.md)")
        connector = TabularConnector(mapping=TableMapping.load(mapping))
    else:
        try:
            connector = NATIVE[name]()
        except KeyError:
            raise ValueError(f"unknown connector {name!r}; known: {', '.join(NAMES)}") from None
    if window is not None:
        connector.catalogue = replace(connector.catalogue, window=window)
    return connector
