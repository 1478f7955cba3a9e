"""Issue 15: Open311 hardened — keys, rate limits, body limit, type checks, evaluations, id searches.

The Open311 app runs in-process (ASGI) over a fake submit and a fake read model that counts its
queries; the real read model's id lookup is covered by tests/e2e/test_ingest_http.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Message

from hub import messages as m
from hub.api.open311 import ApiKey, Open311Config, open311_routes
from hub.views import CaseFilter, CasePage, CaseRow, Scope

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SERVICES = [
    {
        "service_code": "CM-LIGHT", "service_name": "路灯不亮", "description": "", "metadata": False,
        "type": "realtime", "keywords": "", "group": "", "category": "citymgmt.light", "attributes": [],
    }
]  # fmt: skip
KEY = "k" * 32
VALID = {"service_code": "CM-LIGHT", "address_string": "江东中路1号", "description": "路灯不亮"}


def row(ref: str, stage: str = "closed") -> CaseRow:
    values: dict[str, Any] = {f.name: None for f in dataclasses.fields(CaseRow)}
    values.update(
        case_id=m.case_id_for("open311", ref), source="open311", caseref=ref, kind="request",
        origin_department="citizens", category="citymgmt.light", priority="normal", channel="open311",
        title=ref, grid_path=(), stage=stage, responsible_departments=(), reported_at=NOW, updated_at=NOW,
        overdue=False, overruns=0, breaches=0, returns=0, reworks=0, escalations=0, escalation_level=0,
        last_position=1, version=1,
    )  # fmt: skip
    return CaseRow(**values)


class Reads:
    """A read model that counts its queries: an id search must be one ``cases`` call, no ``case``."""

    def __init__(self, rows: Sequence[CaseRow] = ()) -> None:
        self.rows = {r.case_id: r for r in rows}
        self.calls: list[str] = []

    def case(self, case_id: uuid.UUID, now: datetime | None = None) -> CaseRow | None:
        self.calls.append("case")
        return self.rows.get(case_id)

    def cases(
        self,
        scope: Scope = Scope(),
        stage: str | None = None,
        open_only: bool = False,
        limit: int = 50,
        cursor: str | None = None,
        now: datetime | None = None,
        where: CaseFilter | None = None,
    ) -> CasePage:
        self.calls.append("cases")
        ids = set(where.case_ids) if where is not None and where.case_ids is not None else set(self.rows)
        return CasePage(tuple(r for cid, r in self.rows.items() if cid in ids)[:limit], None)


class Submitted:
    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []

    async def __call__(self, name: str, records: Sequence[Any]) -> Sequence[Mapping[str, Any]]:
        self.records.extend(records)
        return [{"index": i, "status": "accepted", "event_id": "e"} for i, _ in enumerate(records)]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def app(reads: Reads, submit: Submitted, keys: Mapping[str, ApiKey] | None = None, **kw: Any) -> Starlette:
    cfg = Open311Config(SERVICES, submit, reads, api_keys=keys or {}, clock=lambda: NOW, **kw)
    return Starlette(routes=open311_routes(cfg))


def client(asgi: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://hub")


URL = "/open311/v2/requests.json"


def assert_spec_error(response: httpx.Response, status: int, *words: str) -> None:
    """GeoReport v2 errors: a list of {code, description}, the code being the HTTP status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and body[0]["code"] == status and set(body[0]) == {"code", "description"}
    for word in words:
        assert word in body[0]["description"], body


async def test_api_key_required_when_keys_are_configured() -> None:
    submit = Submitted()
    keys = {KEY: ApiKey("12345 app", per_minute=60, burst=5)}
    async with client(app(Reads(), submit, keys)) as c:
        assert_spec_error(await c.post(URL, data=VALID), 401, "api_key")
        assert_spec_error(await c.post(URL, data={**VALID, "api_key": "x" * 32}), 403, "api_key")
        xml = await c.post("/open311/v2/requests.xml", data=VALID)
        assert xml.status_code == 401 and b"<errors><error><code>401</code>" in xml.content
        assert not submit.records
        assert (await c.post(URL, data={**VALID, "api_key": KEY})).status_code == 201
        assert (await c.post(URL, json={**VALID, "api_key": KEY})).status_code == 201
        assert (await c.post(URL, params={"api_key": KEY}, data=VALID)).status_code == 201
        assert_spec_error(await c.post(URL, json={**VALID, "api_key": {"k": KEY}}), 400, "api_key")
    assert len(submit.records) == 3


async def test_without_keys_post_needs_none() -> None:
    async with client(app(Reads(), Submitted())) as c:
        assert (await c.post(URL, data=VALID)).status_code == 201


async def test_rate_limit_per_key_answers_429_with_retry_after() -> None:
    clock = Clock()
    other = "o" * 32
    keys = {KEY: ApiKey("12345 app", per_minute=6, burst=2), other: ApiKey("WeChat", per_minute=6, burst=2)}
    async with client(app(Reads(), Submitted(), keys, monotonic=clock)) as c:
        for _ in range(2):
            assert (await c.post(URL, data={**VALID, "api_key": KEY})).status_code == 201
        limited = await c.post(URL, data={**VALID, "api_key": KEY})
        assert_spec_error(limited, 429, "12345 app", "6 requests per minute")
        assert limited.headers["Retry-After"] == "10"  # one token per 10 s at 6 a minute
        assert (await c.post(URL, data={**VALID, "api_key": other})).status_code == 201  # its own bucket
        clock.t = 10.0
        assert (await c.post(URL, data={**VALID, "api_key": KEY})).status_code == 201
        assert (await c.post(URL, data={**VALID, "api_key": KEY})).status_code == 429


async def test_body_over_the_limit_is_413_without_reading_it_all() -> None:
    asgi = app(Reads(), Submitted())
    async with client(asgi) as c:
        big = await c.post(URL, content=b"a=" + b"x" * (1024 * 1024), headers={"content-type": "text/plain"})
        assert_spec_error(big, 413, "limit of 1048576 bytes")

    # a 50 MB chunked body (no Content-Length): refused once it passes 1 MB, the rest never read
    chunk, chunks = b"x" * 65536, 800
    taken = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal taken
        taken += 1
        return {"type": "http.request", "body": chunk, "more_body": taken < chunks}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": URL, "raw_path": URL.encode(), "query_string": b"", "root_path": "", "server": ("hub", 80),
        "client": ("127.0.0.1", 5000), "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    }  # fmt: skip
    await asgi(scope, receive, send)
    assert sent[0]["status"] == 413
    assert taken == 1024 * 1024 // len(chunk) + 1, taken  # 17 of 800 chunks: 1.06 MB of 52 MB read


async def test_every_field_is_type_checked() -> None:
    submit = Submitted()
    async with client(app(Reads(), submit)) as c:
        assert_spec_error(await c.post(URL, json={**VALID, "service_code": {"a": 1}}), 400, "service_code")
        assert_spec_error(
            await c.post(URL, json={**VALID, "service_code": ["CM-LIGHT"]}), 400, "service_code"
        )
        assert_spec_error(await c.post(URL, json={**VALID, "description": 5}), 400, "description")
        assert_spec_error(await c.post(URL, json={**VALID, "lat": "north", "long": 1}), 400, "lat")
        assert_spec_error(await c.post(URL, json={**VALID, "lat": True, "long": 1}), 400, "lat")
        huge = b'{"service_code": "CM-LIGHT", "description": "d", "lat": 1e400, "long": 1}'
        assert_spec_error(await c.post(URL, content=huge, headers={"content-type": "application/json"}), 400)
        assert_spec_error(await c.post(URL, json={**VALID, "lat": 91, "long": 1}), 400, "lat")
        assert_spec_error(await c.post(URL, json={**VALID, "attribute": [1]}), 400, "attribute")
        assert_spec_error(
            await c.post(URL, json={**VALID, "attribute": {"a": {"b": 1}}}), 400, "attribute[a]"
        )
        assert_spec_error(await c.post(URL, json={**VALID, "media_url": {"u": 1}}), 400, "media_url")
        assert_spec_error(await c.post(URL, json={**VALID, "surprise": 1}), 400, "'surprise'")
        assert_spec_error(await c.post(URL, json=[VALID]), 400, "JSON object")
        assert_spec_error(await c.post(URL, content=b"{", headers={"content-type": "application/json"}), 400)
        assert_spec_error(await c.post(URL, data={**VALID, "description": "a", "x": "1"}), 400, "'x'")
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert_spec_error(await c.post(URL, content=b"service_code=%FF", headers=form), 400, "UTF-8")
        assert_spec_error(await c.post(URL, content=b"<a/>", headers={"content-type": "text/xml"}), 415)
        assert_spec_error(await c.post(URL, json={**VALID, "service_code": "NOPE"}), 404, "NOPE")
        assert_spec_error(
            await c.post(URL, json={**VALID, "service_request_id": "SR1"}), 400, "service_request_id"
        )
        files = {"media": ("a.jpg", b"\xff\xd8", "image/jpeg")}
        assert_spec_error(await c.post(URL, data=VALID, files=files), 400, "media_url")
        assert (await c.post(URL, json={**VALID, "lat": 32.0, "long": "118.7"})).status_code == 201
        assert (await c.post(URL, data=VALID, files={})).status_code == 201
    assert submit.records[0]["lat"] == 32.0 and submit.records[0]["long"] == 118.7


async def test_evaluation_of_an_unknown_request_is_404() -> None:
    submit = Submitted()
    reads = Reads([row("SR1", "closed"), row("SR2", "handling")])
    async with client(app(reads, submit)) as c:
        unknown = await c.post(URL, data={"service_request_id": "SR404", "evaluation": "5"})
        assert_spec_error(unknown, 404, "SR404")
        assert_spec_error(
            await c.post(URL, data={"service_request_id": "SR2", "evaluation": "5"}), 409, "SR2"
        )
        assert_spec_error(
            await c.post(URL, data={"service_request_id": "SR1", "evaluation": "9"}), 400, "1–5"
        )
        assert_spec_error(await c.post(URL, json={"service_request_id": "SR1", "evaluation": True}), 400)
        assert_spec_error(await c.post(URL, data={"evaluation": "4"}), 400, "service_request_id")
        assert not submit.records
        done = await c.post(URL, json={"service_request_id": "SR1", "evaluation": 4, "comment": "好"})
        assert done.status_code == 201 and done.json()[0]["service_request_id"] == "SR1"
    assert submit.records == [
        {"service_request_id": "SR1", "evaluation": 4, "comment": "好", "requested_datetime": NOW.isoformat()}
    ]


async def test_id_search_is_capped_and_one_query() -> None:
    refs = [f"SR{i:04d}" for i in range(150)]
    reads = Reads([row(r, "handling") for r in refs])
    async with client(app(reads, Submitted())) as c:
        too_many = await c.get(URL, params={"service_request_id": ",".join(refs[:101])})
        assert_spec_error(too_many, 400, "101 ids", "at most 100")
        assert reads.calls == []
        wanted = list(reversed(refs[:100]))
        found = (await c.get(URL, params={"service_request_id": ",".join(wanted)})).json()
        assert [r["service_request_id"] for r in found] == wanted  # in the order asked
        assert reads.calls == ["cases"]  # one set-based query, not one per id


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_errors_keep_the_spec_format(fmt: str) -> None:
    async with client(app(Reads(), Submitted())) as c:
        response = await c.post(f"/open311/v2/requests.{fmt}", json={"service_code": 1})
        assert response.status_code == 400
        if fmt == "xml":
            assert response.headers["content-type"].startswith("text/xml")
            assert b"<errors><error><code>400</code><description>service_code" in response.content


async def test_hub_wiring_reads_the_keys_from_the_config_dir(tmp_path: Any) -> None:
    """What `hub up` mounts (ops.bootstrap) takes its keys from HUB_CONFIG_DIR/open311_keys.toml."""
    from ops.bootstrap import connector_app

    keys = f'[[key]]\napi_key = "{KEY}"\nname = "12345 app"\nburst = 1\n'
    (tmp_path / "open311_keys.toml").write_text(keys)
    asgi = connector_app(None, Reads(), tmp_path, open311_max_bytes=2048)  # type: ignore[arg-type]
    async with client(asgi) as c:
        assert_spec_error(await c.post(URL, data=VALID), 401, "api_key")
        assert_spec_error(await c.post(URL, data={**VALID, "api_key": KEY, "description": "x" * 3000}), 413)
        keyed = {"api_key": KEY}
        assert_spec_error(await c.post(URL, params=keyed, data={**VALID, "lat": "x"}), 400, "lat")
        assert_spec_error(await c.post(URL, params=keyed, data=VALID), 429, "12345 app")  # burst 1 spent
