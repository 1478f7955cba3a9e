"""The command-centre screen (一屏统管) at ``/``: static files that speak only the public GraphQL API.

What is served, all from the hub's own origin (the Content-Security-Policy says so to the browser):

- ``/``                          the page (``static/index.html``)
- ``/screen/*``                  its ES modules and stylesheet (``static/``)
- ``/screen/vendor/echarts.min.js`` ECharts, installed by ``make`` with ``npm ci`` into
                                 ``hub/api/screen/node_modules`` (gitignored: nothing third-party
                                 is committed)
- ``/screen/grids.geojson``      the grid polygons of the deployment (the GraphQL ``grids`` query gives
                                 the tree but no geometry), the file the grid
                                 configuration is loaded from
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
ECHARTS = HERE / "node_modules" / "echarts" / "dist" / "echarts.min.js"

CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
"""Only the hub's origin: the page may not load or call anything else (ECharts' tooltips need inline
style attributes; ``connect-src 'self'`` covers the same-origin WebSocket in current browsers)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _WithHeaders:
    """Adds the screen's security headers to every response of the wrapped ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _file(path: Path, media_type: str, missing: str) -> Response:
    if not path.is_file():
        return PlainTextResponse(missing, status_code=503, headers=SECURITY_HEADERS)
    return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS)


def screen_routes(grids_geojson: Path) -> list[BaseRoute]:
    """Routes of the screen; mount them after the API routes (they own ``/`` and ``/screen``)."""

    async def index(_: Request) -> Response:
        return _file(STATIC_DIR / "index.html", "text/html; charset=utf-8", "screen files missing")

    async def echarts(_: Request) -> Response:
        return _file(
            ECHARTS,
            "text/javascript; charset=utf-8",
            "ECharts is not installed: run `make install` (npm ci in hub/api/screen)",
        )

    async def geojson(_: Request) -> Response:
        return _file(grids_geojson, "application/geo+json", "no grids.geojson")

    return [
        Route("/", index, methods=["GET"]),
        Route("/screen/vendor/echarts.min.js", echarts, methods=["GET"]),
        Route("/screen/grids.geojson", geojson, methods=["GET"]),
        Mount("/screen", app=_WithHeaders(StaticFiles(directory=STATIC_DIR)), name="screen"),
    ]
