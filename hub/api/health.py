"""Liveness and readiness (健康检查) for operators and orchestrators.

``/healthz`` answers while the process serves HTTP; ``/readyz`` reflects the components the hub
needs (NATS connection, intake, store) as reported by the composition root, with 503 while any of
them is down so a load balancer stops sending traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

StatusFn = Callable[[], Mapping[str, bool]]


def health_routes(status: StatusFn) -> list[Route]:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        components = dict(status())
        ready = all(components.values())
        return JSONResponse({"ready": ready, "components": components}, status_code=200 if ready else 503)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]
