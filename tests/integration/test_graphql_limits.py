"""Issue 15, costs bounded before execution: oversized documents refused unparsed (HTTP and the
schema's own check for WebSockets), introspection only with a token, ``asOf`` limited per role,
rate-limited per token, counted in the cost limit and shared per position.

The wired GraphQL app (``graphql_routes``) over real read models (DuckDB projected from a SQLite
event store), called in process through httpx's ASGI transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry.schema.schema as strawberry_schema
from starlette.applications import Starlette

from hub.adapters.config.loading import load_catalogue
from hub.api.gql import ApiContext, Limits, TokenBook, graphql_routes
from hub.api.gql.limits import CostLimiter
from hub.api.gql.schema import build_schema
from ops.bootstrap import build_ledger
from projections import ProjectionService
from tests.projection_history import random_city

OVERVIEW = "query Ov($p: Int) { overview(asOfPosition: $p) { position totals { open } } }"


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[ProjectionService]:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    random_city(ledger, seed=5, n_cases=20, n_steps=120)
    svc = ProjectionService(tmp_path / "views.duckdb", ledger.recorder, batch_size=200)
    svc.catch_up()
    yield svc
    svc.close()
    ledger.close()


def _context(service: ProjectionService, **limits: Any) -> ApiContext:
    return ApiContext(
        views=service.views, tokens=TokenBook.load(None), catalogue=load_catalogue(None), departments={},
        limits=Limits(**limits),
    )  # fmt: skip


@pytest.fixture()
async def client(service: ProjectionService) -> AsyncIterator[tuple[httpx.AsyncClient, ApiContext]]:
    ctx = _context(service, rewinds_per_minute=3)
    app = Starlette(routes=graphql_routes(ctx))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as http:
        yield http, ctx


@pytest.fixture()
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every GraphQL parse strawberry makes (the size of the text it parses)."""
    seen: list[int] = []
    original = strawberry_schema.parse

    def counting(source: Any, **kw: Any) -> Any:
        seen.append(len(str(source)))
        return original(source, **kw)

    monkeypatch.setattr(strawberry_schema, "parse", counting)
    return seen


async def _post(
    http: httpx.AsyncClient, query: str, token: str | None = "dev-screen", **variables: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


async def test_oversized_documents_are_refused_before_parsing(
    client: tuple[httpx.AsyncClient, ApiContext], parses: list[int]
) -> None:
    http, _ = client
    twenty_mb = "{ departments { code } }" + " " * (20 * 1024 * 1024)
    over = "{ departments { code } }" + "#" * 150_000  # over 100 KB, within the 200 KB body cap
    for query in (twenty_mb, over):
        response = await _post(http, query)
        assert response.status_code == 413, response.text
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "QUERY_TOO_LARGE"
        assert error["extensions"]["max_bytes"] == 100_000 and "100000" in error["message"]
    assert parses == [], "an oversized document was parsed"
    ok = await _post(http, "{ departments { code } }")
    assert ok.status_code == 200 and "errors" not in ok.json() and parses  # the limit is not the parser


async def test_the_schema_refuses_an_oversized_document_unparsed(
    service: ProjectionService, parses: list[int]
) -> None:
    """The check WebSocket subscriptions go through (no HTTP body there)."""
    ctx = _context(service, max_bytes=1000)
    schema = build_schema(ctx.limits)
    result = await schema.execute("{ departments { code } }" + " " * 2000, context_value={"api": ctx})
    assert result.errors and result.errors[0].extensions["code"] == "QUERY_TOO_LARGE"  # type: ignore[index]
    big_subscription = "subscription Big { overviewChanged { position } }" + " " * 2000
    stream = await schema.stream(big_subscription, context_value={"api": ctx}, operation_name="Big")
    first = [r async for r in stream]  # what graphql-transport-ws sends: one error, no execution
    assert len(first) == 1 and first[0].errors[0].extensions["code"] == "QUERY_TOO_LARGE"  # type: ignore[union-attr,index]
    assert parses == []


async def test_introspection_needs_a_token(client: tuple[httpx.AsyncClient, ApiContext]) -> None:
    http, _ = client
    for query in ("{ __schema { queryType { name } } }", '{ __type(name: "Case") { name } }'):
        anonymous = await _post(http, query, token=None)
        assert anonymous.status_code == 401, anonymous.text
        body = anonymous.json()
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" and not body.get("data")
        assert "introspection needs a token" in body["errors"][0]["message"]
        unknown = await _post(http, query, token="not-a-token")
        assert unknown.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        with_token = await _post(http, query, token="dev-screen")
        assert with_token.status_code == 200 and "errors" not in with_token.json(), with_token.text
    typename = await _post(http, "{ __typename }", token=None)
    assert typename.json()["data"] == {"__typename": "Query"}  # not introspection of the schema


async def test_as_of_is_limited_per_role_and_rate_limited_per_token(
    client: tuple[httpx.AsyncClient, ApiContext],
) -> None:
    http, ctx = client
    case_as_of = "query($p: Int) { cases(first: 1, asOfPosition: $p) { position } }"
    refused = (await _post(http, case_as_of, "dev-screen", p=10)).json()["errors"][0]
    assert refused["extensions"]["code"] == "FORBIDDEN"
    assert refused["extensions"]["missing_permission"] == "history:read"
    for p in (10, 20, 30):  # screens may rewind the overview: 3 a minute in this test
        answer = (await _post(http, OVERVIEW, "dev-screen", p=p)).json()
        assert answer["data"]["overview"]["position"] == p, answer
    refused = await _post(http, OVERVIEW, "dev-screen", p=40)
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 60
    limited = refused.json()
    error = limited["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED" and 0 < error["extensions"]["retry_after_s"] <= 60
    assert "3 times a minute" in error["message"]
    live = (await _post(http, OVERVIEW, "dev-screen")).json()  # the live overview is not limited
    assert "errors" not in live
    other = (await _post(http, OVERVIEW, "dev-operator", p=40)).json()  # per token: another has its own
    assert other["data"]["overview"]["position"] == 40
    for p in (10, 20, 30, 40, 50):  # history roles are not rate-limited
        assert "errors" not in (await _post(http, OVERVIEW, "dev-auditor", p=p)).json()
    rewinds = ctx.views.rewinds  # type: ignore[attr-defined]
    assert rewinds.built == 5  # positions 10..50, each built once and shared by every role


async def test_as_of_counts_in_the_cost_limit(client: tuple[httpx.AsyncClient, ApiContext]) -> None:
    http, ctx = client
    limiter = CostLimiter()
    from graphql import parse

    doc = parse("query($p: Int) { a: overview { position } b: overview(asOfPosition: $p) { position } }")
    estimate_live = limiter.check(parse("{ overview { position } }").definitions, {})
    assert estimate_live == []
    four = " ".join(f"o{i}: overview(asOfPosition: {i + 1}) {{ position }}" for i in range(4))
    response = (await _post(http, "{ " + four + " }", "dev-auditor")).json()
    error = response["errors"][0]
    assert error["extensions"]["code"] == "COST_LIMIT" and response.get("data") is None
    assert error["extensions"]["cost"] > 4 * ctx.limits.as_of_cost - 1
    assert ctx.views.rewinds is None, "a refused query built a snapshot"  # type: ignore[attr-defined]
    # a variable set to null is no rewind: only the one given counts
    assert limiter.check(doc.definitions, {"p": None}) == []
    tight = type("Tight", (CostLimiter,), {"limits": Limits(max_cost=5_000)})()
    assert tight.check(doc.definitions, {"p": 3})[0].extensions["code"] == "COST_LIMIT"  # type: ignore[index]
    assert tight.check(doc.definitions, {"p": None}) == []


def test_rewinds_are_shared_per_position_and_the_build_queue_is_bounded(service: ProjectionService) -> None:
    import threading

    from projections.queries import RewindBusy, RewindCache

    views = service.views
    position = views.position()
    cache = RewindCache(views, size=2, max_waiting=1)
    release = threading.Event()
    build = cache._build

    def held(n: int) -> Any:
        release.wait(30)
        return build(n)

    cache._build = held  # type: ignore[method-assign]
    first = cache.get(position=10)
    again = cache.get(position=10)  # the same position: waits for the same build
    with pytest.raises(RewindBusy, match="1 rewinds are waiting"):
        cache.get(position=20)
    release.set()
    assert first.result(30) is again.result(30) and cache.built == 1
    assert first.result().position() == 10
    # a time resolves to its position: the moment shares the snapshot of that position
    stamp = views.arrow("SELECT recorded_at FROM events WHERE seq = 30").to_pylist()[0]["recorded_at"]
    at = views.position_at(stamp)
    assert cache.get(position=at).result(30).position() == at and cache.built == 2
    moment = cache.get(time=stamp).result(30)
    assert moment.position() == at and moment.fixed_now == stamp  # type: ignore[attr-defined]
    assert cache.built == 2  # the moment shares the snapshot of its position
    assert cache.get(position=position).result(30).position() == position and cache.built == 3
    cache.close()
