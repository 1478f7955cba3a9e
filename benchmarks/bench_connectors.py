"""Connector figures for ``make bench``: file import rate and the simulator's sustained publish rate.

Each figure is printed beside a baseline measured in the same run on the same nats-server: the bare
publisher sending the same canonical events already mapped. The difference is the connector's own
cost (reading the file, mapping, validating every event against the contract).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors import registry
from connectors.importer import import_file, read_rows
from connectors.publisher import publish_events
from connectors.simulator import Simulator
from hub.intake import ensure_streams
from ops.bootstrap import connect_nats
from ops.natsd import EmbeddedNats, free_port
from tests.connector_data import write_12345_export

ROOT = Path(__file__).resolve().parents[1]
ROWS = 100_000


async def _measure(url: str, tmp: Path) -> dict[str, Any]:
    nc = await connect_nats(url, "bench-connectors")
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    await ensure_streams(js)

    async def publish(events: Sequence[dict[str, Any]]) -> Sequence[Any]:
        return await publish_events(js, events)

    data = tmp / "export.csv"
    write_12345_export(data, ROWS, bad_every=1000)
    connector = registry.build("tabular", ROOT / "connectors" / "mappings" / "hotline_12345.toml")
    t0 = time.perf_counter()
    await import_file(connector, data, publish, tmp / "cp.json", chunk=5000)
    import_s = time.perf_counter() - t0
    mapped = [e for r in read_rows(data, "csv") for e in _safe(connector, r)]
    for e in mapped:  # baseline: the bare publisher, same events under fresh ids (no dedup shortcut)
        e["id"] = "b:" + e["id"]
    t0 = time.perf_counter()
    await publish(mapped)
    base_s = time.perf_counter() - t0

    sim = Simulator(seed=1, rate=1500)
    t0 = time.perf_counter()
    counts = await sim.run(publish, speed=float("inf"))
    sim_s = time.perf_counter() - t0
    await nc.close()
    return {
        "import_rows": ROWS,
        "import_events": len(mapped),
        "import_rows_per_s": round(ROWS / import_s),
        "import_events_per_s": round(len(mapped) / import_s),
        "baseline_publisher_events_per_s": round(len(mapped) / base_s),
        "simulator_day_cases_per_hour": 1500,
        "simulator_events": counts["events"],
        "simulator_events_per_s": round(counts["events"] / sim_s),
        "simulator_day_seconds_flat_out": round(sim_s, 2),
    }


def _safe(connector: Any, row: Any) -> list[dict[str, Any]]:
    try:
        return list(connector.map_checked(row))
    except Exception:
        return []


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNats(store_dir=Path(tmp) / "nats", port=free_port(), server_name="bench-connectors")
        server.start()
        try:
            figures = asyncio.run(_measure(server.url, Path(tmp)))
        finally:
            server.stop()
    for key, value in figures.items():
        print(f"{key:40s} {value}")
    return figures


if __name__ == "__main__":
    run()
