"""Liveness and readiness (健康检查) for operators and orchestrators.

``/healthz`` answers while the process serves HTTP; ``/readyz`` reflects the components the hub
needs (NATS connection, JetStream writes, intake progress, store commits, …) as reported by the
composition root, with 503 while any of them is down so a load balancer stops sending traffic.
A component is ``True`` when ready, or the reason it is not (``False`` when there is none to
give); the body names each failing component under ``reasons``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

StatusFn = Callable[[], Mapping[str, bool | str]]


def health_routes(status: StatusFn) -> list[Route]:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        states = dict(status())
        components = {name: state is True for name, state in states.items()}
        reasons = {
            name: state if isinstance(state, str) and state else "down"
            for name, state in states.items()
            if state is not True
        }
        ready = not reasons
        body = {"ready": ready, "components": components, "reasons": reasons}
        return JSONResponse(body, status_code=200 if ready else 503)

    return [Route("/healthz", healthz), Route("/readyz", readyz)]
