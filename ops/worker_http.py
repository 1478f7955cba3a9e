"""``/healthz``, ``/readyz`` and ``/metrics`` of an intake worker (``hub intake --http-port``).

Why: beyond one machine the intake runs as N worker processes without the API (systemd
``hub-intake@.service``); an orchestrator needs their readiness (NATS connected, intake running,
store recording) and Prometheus their counters. The metric names and meanings are the hub's own
(``HubRuntime.samples``), so one set of alert rules covers ``hub up`` and the workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import uvicorn
from nats.aio.client import Client as NATS
from starlette.applications import Starlette

from hub.api.health import health_routes
from hub.api.metrics import metrics_routes
from hub.intake import Intake
from ops.runtime import HubRuntime, RuntimeOptions, _Server
from ops.settings import Settings


@dataclass
class WorkerRuntime(HubRuntime):
    """A hub runtime holding only an intake: its status is NATS, intake and store."""

    def status(self) -> Mapping[str, bool]:
        intake = self.tasks.get("intake")
        return {
            "nats": bool(self.nc and self.nc.is_connected),
            "intake": bool(intake and not intake.done()),
            "store": bool(self.intake is not None and self.intake.store_healthy()),
        }


async def serve_worker_endpoints(
    settings: Settings, nc: NATS, intake: Intake, task: asyncio.Task[None], host: str, port: int
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve the worker's health and metrics; returns once listening (raises when the port is taken)."""
    worker = WorkerRuntime(
        settings, RuntimeOptions(host=host, http_port=port, demo=False), nc=nc, intake=intake
    )
    worker.tasks["intake"] = task
    app = Starlette(
        routes=[*health_routes(worker.status), *metrics_routes(worker.samples, settings.metrics_token)]
    )
    server = _Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(), name="worker-http")
    for _ in range(200):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.05)
    if serving.done() or not server.started:
        raise RuntimeError(f"the intake worker could not listen on {host}:{port}; choose another --http-port")
    return server, serving
