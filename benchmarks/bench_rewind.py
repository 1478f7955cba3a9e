"""The live overview while eight screens rewind (issue 15): p99 idle vs p99 under rewinds, one run.

Found before: eight clients rewinding (``overview(asOf: …)``) pushed the live overview from 0.1 s
to a 3.9 s median. Now a rewind is a snapshot shared per position, built in a worker thread one
at a time, counted in the cost limit and rate-limited per screen token. Goal: the live overview's
p99 with eight rewinding clients stays within 2× of its idle p99.

Set-up: the wired GraphQL app (``graphql_routes``) in a server process of its own (uvicorn, as in
``hub up``) over DuckDB read models: BENCH_REWIND_EVENTS synthetic events (8-step closed loops,
default 400,000: 50,000 cases) for the snapshots, the same number of live case rows. The live
position moves on every request (a busy hub: every live overview is computed, never served from
the per-position cache). Clients in this process:

* ``live``: LIVE_CLIENTS screens polling the live overview of one district (90-day window);
* ``rewinders``: eight screens, each with its own ``screen`` token, asking the overview at a random
  half-hour mark of the history, back to back with REWIND_PAUSE_S between requests (they do not
  wait for ``retry_after_s``: the worst polite-looking client). Rate limit: the default
  (HUB_GRAPHQL_REWINDS_PER_MINUTE = 10 per token).

Phases of BENCH_REWIND_SECONDS (default 30) each: idle (live only), then rewinding (live +
rewinders). Figures: live p50/p99 per phase and the ratio, rewinds answered / refused
(RATE_LIMITED, REWIND_BUSY), snapshots built, the server's RSS before and after.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

LIVE_CLIENTS = 2
REWINDERS = 8
REWIND_PAUSE_S = 0.05
DISTRICT = "320101"
NOW = datetime(2026, 3, 1, tzinfo=UTC)
HISTORY_START = datetime(2026, 3, 2, tzinfo=UTC)  # _synthetic_events: one event per 0.5 s from here
LIVE = """query Live($scope: ScopeInput, $window: WindowInput) { overview(scope: $scope, window: $window) {
  position totals { reported registered open overdue escalated closed closedOnTime }
  byDepartment { key cases } byStage { key cases } byCategory { key cases }
  indicators { key value } children { grid totals { open overdue } } } }"""
REWIND = """query Rewind($asOf: DateTime) { overview(asOf: $asOf) {
  position totals { open overdue closed } byStage { key cases } children { grid totals { open } } } }"""


def _tokens_dir(root: Path) -> Path:
    """An api_tokens.toml with one screen token per rewinding wall, plus the live walls' token."""
    lines = ['[[token]]\ntoken = "live"\nrole = "screen"\nactor = "screen:live"\n']
    for i in range(REWINDERS):
        lines.append(f'[[token]]\ntoken = "wall-{i}"\nrole = "screen"\nactor = "screen:wall-{i}"\n')
    config = root / "config"
    config.mkdir()
    (config / "api_tokens.toml").write_text("\n".join(lines))
    return config


def _serve(root: str, n_events: int, port: int, ready: Any) -> None:
    """The server process: read models, the wired GraphQL app, uvicorn."""
    import itertools

    import uvicorn
    from starlette.applications import Starlette

    from benchmarks.bench_projections import _synthetic_events, synthetic_cases
    from hub.adapters.config.loading import load_catalogue
    from hub.api.gql import ApiContext, Limits, TokenBook, graphql_routes
    from ops.settings import graphql_limits
    from projections import DuckDBReadModels, ReadModelStore, queries

    nice = os.environ.get("BENCH_REWIND_NICE")  # e.g. 0: the builder at normal priority, to compare
    if nice is not None:
        queries.BUILDER_NICE = int(nice)
    store = ReadModelStore(Path(root) / "views.duckdb")
    events = _synthetic_events(store, n_events)
    synthetic_cases(store, n_events // 8)
    moving = itertools.count(events)  # a busy hub: the position moves with every question
    views = DuckDBReadModels(store.reader, lambda: next(moving), fixed_now=NOW)
    ctx = ApiContext(
        views=views, tokens=TokenBook.load(Path(root) / "config"), catalogue=load_catalogue(None),
        departments={}, limits=Limits(**graphql_limits()),
    )  # fmt: skip
    app = Starlette(routes=graphql_routes(ctx))

    async def snapshots(scope: dict[str, Any], receive: Any, send: Any) -> None:
        built = views.rewinds.built if views.rewinds is not None else 0
        body = orjson.dumps({"built": built, "rss_mb": _rss_mb(os.getpid())})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    from starlette.routing import Mount

    app.routes.append(Mount("/stats", snapshots))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    ready.set()
    server.run()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _figures(timings: list[float]) -> dict[str, Any]:
    timings = sorted(timings)
    return {
        "requests": len(timings),
        "p50_ms": round(statistics.median(timings), 1),
        "p99_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 1),
    }


async def _phase(url: str, seconds: float, rewinding: bool, n_events: int) -> dict[str, Any]:
    live: list[float] = []
    outcome = {"answered": 0, "rate_limited": 0, "busy": 0, "other_errors": 0}
    answered: list[float] = []
    stop = time.monotonic() + seconds
    window = {"since": (NOW - timedelta(days=90)).isoformat(), "until": NOW.isoformat()}
    live_body = orjson.dumps({"query": LIVE, "variables": {"scope": {"grid": DISTRICT}, "window": window}})
    span_s = n_events * 0.5
    marks = [HISTORY_START + timedelta(minutes=30 * k) for k in range(1, int(span_s // 1800))]

    async def live_client(http: httpx.AsyncClient) -> None:
        headers = {"Authorization": "Bearer live", "Content-Type": "application/json"}
        while time.monotonic() < stop:
            t = time.perf_counter()
            r = await http.post(url, content=live_body, headers=headers)
            live.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200 or b'"errors"' in r.content:
                raise RuntimeError(f"live overview failed: {r.text[:300]}")

    async def rewinder(http: httpx.AsyncClient, i: int, rng: random.Random) -> None:
        headers = {"Authorization": f"Bearer wall-{i}", "Content-Type": "application/json"}
        while time.monotonic() < stop:
            body = orjson.dumps({"query": REWIND, "variables": {"asOf": rng.choice(marks).isoformat()}})
            t = time.perf_counter()
            r = await http.post(url, content=body, headers=headers)
            if b"RATE_LIMITED" in r.content:
                outcome["rate_limited"] += 1
            elif b"REWIND_BUSY" in r.content:
                outcome["busy"] += 1
            elif r.status_code == 200 and b'"errors"' not in r.content:
                outcome["answered"] += 1
                answered.append((time.perf_counter() - t) * 1000)
            else:
                outcome["other_errors"] += 1
            await asyncio.sleep(REWIND_PAUSE_S)

    limits = httpx.Limits(max_connections=LIVE_CLIENTS + REWINDERS)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        jobs = [live_client(http) for _ in range(LIVE_CLIENTS)]
        if rewinding:
            jobs += [rewinder(http, i, random.Random(i)) for i in range(REWINDERS)]
        await asyncio.gather(*jobs)
    out = _figures(live)
    if rewinding:
        out["rewinds"] = {**outcome, **({"answered_" + k: v for k, v in _figures(answered).items()
                                         if k != "requests"} if answered else {})}  # fmt: skip
    return out


def run() -> dict[str, Any]:
    from ops.natsd import free_port

    n_events = int(os.environ.get("BENCH_REWIND_EVENTS", "400000"))
    seconds = float(os.environ.get("BENCH_REWIND_SECONDS", "30"))
    with tempfile.TemporaryDirectory(prefix="bench-rewind-") as d:
        _tokens_dir(Path(d))
        port = free_port()
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        proc = ctx.Process(target=_serve, args=(d, n_events, port, ready), daemon=True)
        proc.start()
        try:
            if not ready.wait(600):
                raise RuntimeError("the server did not start")
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(base + "/stats/", timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            url = base + "/graphql"
            asyncio.run(_phase(url, 2, False, n_events))  # warm up
            rss_before = httpx.get(base + "/stats/").json()["rss_mb"]
            idle = asyncio.run(_phase(url, seconds, False, n_events))
            rewinding = asyncio.run(_phase(url, seconds, True, n_events))
            stats = httpx.get(base + "/stats/").json()
        finally:
            proc.terminate()
            proc.join(10)
    ratio = rewinding["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else None
    return {
        "events": n_events,
        "live_clients": LIVE_CLIENTS,
        "rewinding_clients": REWINDERS,
        "seconds_per_phase": seconds,
        "live_idle": idle,
        "live_while_rewinding": {k: v for k, v in rewinding.items() if k != "rewinds"},
        "rewinds": rewinding["rewinds"],
        "snapshots_built": stats["built"],
        "p99_ratio": round(ratio, 2) if ratio is not None else None,
        "goal_p99_within_2x": ratio is not None and ratio <= 2.0,
        "server_rss_mb": {"before": rss_before, "after": stats["rss_mb"]},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
