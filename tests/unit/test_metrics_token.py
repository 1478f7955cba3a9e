"""Issue 15: ``/metrics`` can require a bearer token (HUB_METRICS_TOKEN; production mode insists)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from hub.api.metrics import Sample, metrics_routes


async def samples() -> list[Sample]:
    return [Sample("hub_component_up", "gauge", "1 when ready", 1.0, {"component": "intake"})]


async def test_metrics_with_a_token_required() -> None:
    app = Starlette(routes=metrics_routes(samples, token="m" * 32))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        anonymous = await c.get("/metrics")
        assert anonymous.status_code == 401 and "HUB_METRICS_TOKEN" in anonymous.text
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        assert "hub_component_up" not in anonymous.text
        wrong = await c.get("/metrics", headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 401
        assert (await c.get("/metrics", headers={"Authorization": "Basic " + "m" * 32})).status_code == 401
        ok = await c.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert ok.status_code == 200 and 'hub_component_up{component="intake"} 1' in ok.text


async def test_metrics_without_a_token_configured_stay_open() -> None:
    app = Starlette(routes=metrics_routes(samples))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as c:
        assert (await c.get("/metrics")).status_code == 200
