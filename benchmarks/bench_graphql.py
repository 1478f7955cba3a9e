"""GraphQL overview at district scope over 1,000,000 cases, beside a bare ASGI endpoint.

Both servers run the same DuckDB work (``ReadModels.overview`` + ``indicators`` for one district
and a 90-day window) on the same file in the same run, behind uvicorn, with 16 concurrent HTTP
clients (httpx) for a fixed duration each. Figures: p50/p99 latency and requests/s for

* ``bare``: a plain ASGI callable that runs the queries and writes orjson;
* ``graphql_uncached``: the full GraphQL path (auth, limits, validation, resolvers, strawberry
  serialisation) with the per-position answer cache bypassed, so every request queries DuckDB;
* ``graphql_cached``: the same with the cache on; the position does not move during the run, so
  this is the cost of a screen polling an idle hub (the cache is keyed by position, never stale).

Sizes: BENCH_GQL_CASES (default 1,000,000), BENCH_GQL_SECONDS per variant (default 8).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from benchmarks.bench_projections import synthetic_cases  # noqa: E402
from hub.adapters.config.loading import load_catalogue  # noqa: E402
from hub.api.gql import ApiContext, TokenBook, graphql_routes  # noqa: E402
from hub.views import Scope, Window  # noqa: E402
from ops.natsd import free_port  # noqa: E402
from projections import DuckDBReadModels, ReadModelStore  # noqa: E402

CLIENTS = 16
DISTRICT = "320101"
NOW = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=90), NOW)
QUERY = """query($scope: ScopeInput, $window: WindowInput) { overview(scope: $scope, window: $window) {
  position totals { reported registered open overdue escalated closed closedOnTime }
  byDepartment { key cases } byStage { key cases } byCategory { key cases }
  indicators { key value } children { grid totals { open overdue } } } }"""


def _bare_app(views: DuckDBReadModels) -> Callable[..., Any]:
    """The baseline: the same two queries behind a raw ASGI callable, no framework, no GraphQL."""

    def work() -> bytes:
        scope = Scope(grid=DISTRICT)
        o = views.overview(scope, WINDOW, NOW)
        return orjson.dumps({"overview": o, "indicators": views.indicators(scope, WINDOW, NOW)})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive())["more_body"] if scope["method"] == "POST" else False:
            pass
        body = await asyncio.to_thread(work)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


class _Uncached(ApiContext):
    def cached(self, key: Any, compute: Callable[[], Any], size: int = 512) -> Any:
        return compute()


def _serve(app: Any) -> tuple[uvicorn.Server, str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


async def _load(url: str, body: bytes, headers: dict[str, str], seconds: float) -> dict[str, Any]:
    timings: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            t = time.perf_counter()
            response = await http.post(url, content=body, headers=headers)
            timings.append((time.perf_counter() - t) * 1000)
            if response.status_code != 200 or b'"errors"' in response.content:
                errors += 1

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await http.post(url, content=body, headers=headers)  # warm up
        started = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(CLIENTS)))
        elapsed = time.monotonic() - started
    timings.sort()
    return {
        "requests": len(timings),
        "errors": errors,
        "p50_ms": round(statistics.median(timings), 1),
        "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 1),
        "requests_per_s": round(len(timings) / elapsed, 1),
    }


def run() -> dict[str, Any]:
    n = int(os.environ.get("BENCH_GQL_CASES", "1000000"))
    seconds = float(os.environ.get("BENCH_GQL_SECONDS", "8"))
    with tempfile.TemporaryDirectory(prefix="bench-gql-") as d:
        store = ReadModelStore(Path(d) / "views.duckdb")
        synthetic_cases(store, n)
        views = DuckDBReadModels(store.reader, lambda: n, fixed_now=NOW)
        ref = views.overview(Scope(grid=DISTRICT), WINDOW, NOW)
        common = {"views": views, "tokens": TokenBook.load(None), "catalogue": load_catalogue(None),
                  "departments": {}}  # fmt: skip
        servers = []
        out: dict[str, Any] = {"cases": n, "district_open": ref.totals.open, "clients": CLIENTS}
        variables = {"scope": {"grid": DISTRICT}, "window": {"since": WINDOW.since, "until": WINDOW.until}}
        gql_body = orjson.dumps({"query": QUERY, "variables": variables})
        auth = {"Authorization": "Bearer dev-screen", "Content-Type": "application/json"}
        try:
            server, base = _serve(_bare_app(views))
            servers.append(server)
            out["bare"] = asyncio.run(_load(base + "/", b"", {}, seconds))
            for name, ctx in (
                ("graphql_uncached", _Uncached(**common)),
                ("graphql_cached", ApiContext(**common)),
            ):
                server, base = _serve(Starlette(routes=graphql_routes(ctx)))
                servers.append(server)
                out[name] = asyncio.run(_load(base + "/graphql", gql_body, auth, seconds))
        finally:
            for server in servers:
                server.should_exit = True
            store.close()
        return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
