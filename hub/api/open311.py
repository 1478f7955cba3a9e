"""Open311 GeoReport v2 (市民诉求开放接口) for citizen apps, on the hub's closed loop.

Endpoints (under ``/open311/v2``; ``{format}`` is ``json`` or ``xml``, as the spec requires both):

- ``GET  /services.{format}``                      the service list
- ``GET  /services/{service_code}.{format}``       a service definition (attributes)
- ``POST /requests.{format}``                      create a service request (form-encoded or JSON)
- ``GET  /requests.{format}``                      search: service_request_id, service_code, status
                                                   (open/closed), start_date, end_date (ISO 8601)
- ``GET  /requests/{service_request_id}.{format}`` one request

A request is a case of department ``citizens`` (kind ``request``, source ``open311``); its
Open311 ``status`` is derived from the case stage: ``closed`` once the case is closed, evaluated,
rejected (不予立案) or merged, ``open`` before. Errors follow the spec: a list of
``{code, description}`` (``<errors><error>…`` in XML) with the HTTP status.

Why injected collaborators: ``hub.api`` may not import ``connectors`` (design §3). ops passes the
service list and a ``submit("open311", records)`` coroutine (the open311 connector plus the
publisher), and a reader that answers ``case``/``cases`` like :class:`hub.views.ReadModels`
(the projections' implementation, or any adapter with those two methods).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub import messages as m
from hub.api.ingest import SubmitFn
from hub.views import CasePage, CaseRow, Scope

SOURCE = "open311"
DEPARTMENT = "citizens"
CLOSED_STAGES = frozenset({"closed", "evaluated", "rejected", "merged"})
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)


class RequestReads(Protocol):
    """The part of the read-model port Open311 needs (``hub.views.ReadModels`` satisfies it)."""

    def case(self, case_id: uuid.UUID, now: datetime | None = None) -> CaseRow | None: ...

    def cases(
        self,
        scope: Scope = ...,
        stage: str | None = None,
        open_only: bool = False,
        limit: int = 50,
        cursor: str | None = None,
        now: datetime | None = None,
    ) -> CasePage: ...


@dataclass(frozen=True)
class Open311Config:
    services: Sequence[Mapping[str, Any]]  # service_code, service_name, description, metadata, type,
    # keywords, group, category, attributes
    submit: SubmitFn
    reads: RequestReads
    api_keys: frozenset[str] = frozenset()  # empty: POST needs no api_key (development)
    jurisdiction_id: str = "citybrain-hub"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    new_id: Callable[[], str] = lambda: f"SR{datetime.now(UTC):%Y%m%d}{secrets.token_hex(4).upper()}"


class _Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        self.status, self.description = status, description


# --------------------------------------------------------------------------- rendering
def _xml(root: str, item: str, rows: Sequence[Mapping[str, Any]]) -> bytes:
    top = ET.Element(root)
    for row in rows:
        _xml_item(ET.SubElement(top, item), row)
    body: bytes = ET.tostring(top, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>' + body


def _xml_item(el: ET.Element, row: Mapping[str, Any]) -> None:
    for key, value in row.items():
        if isinstance(value, list):
            holder = ET.SubElement(el, key)
            singular = {"attributes": "attribute", "values": "value"}.get(key, key.rstrip("s"))
            for entry in value:
                if isinstance(entry, Mapping):
                    _xml_item(ET.SubElement(holder, singular), entry)
        elif isinstance(value, bool):
            ET.SubElement(el, key).text = "true" if value else "false"
        else:
            ET.SubElement(el, key).text = "" if value is None else str(value)


def _render(fmt: str, root: str, item: str, rows: Sequence[Mapping[str, Any]], status: int = 200) -> Response:
    if fmt == "xml":
        return Response(_xml(root, item, rows), status, media_type="text/xml; charset=utf-8")
    return JSONResponse(list(rows), status)


def _render_one(fmt: str, item: str, row: Mapping[str, Any]) -> Response:
    if fmt == "xml":
        top = ET.Element(item)
        _xml_item(top, row)
        body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(top, encoding="utf-8")
        return Response(body, 200, media_type="text/xml; charset=utf-8")
    return JSONResponse(dict(row))


def _error(fmt: str, exc: _Error) -> Response:
    rows = [{"code": exc.status, "description": exc.description}]
    return _render(fmt, "errors", "error", rows, exc.status)


def _fmt(request: Request) -> str:
    fmt = str(request.path_params.get("format", "json")).lower()
    if fmt not in ("json", "xml"):
        raise _Error(400, f"format {fmt!r} is not supported; use .json or .xml")
    return fmt


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _parse_date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Error(400, f"{name}: not an ISO 8601 date/time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- routes
def open311_routes(cfg: Open311Config, prefix: str = "/open311/v2") -> list[Route]:
    by_code = {str(s["service_code"]): s for s in cfg.services}
    by_category = {str(s["category"]): s for s in cfg.services}

    def public_service(s: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: s[k]
            for k in ("service_code", "service_name", "description", "metadata", "type", "keywords", "group")
        }

    def request_row(row: CaseRow) -> dict[str, Any]:
        svc = by_category.get(row.category)
        closed = row.stage in CLOSED_STAGES
        notes = {
            "rejected": f"不予受理: {row.outcome or ''}".strip(),
            "merged": "已合并到其他诉求 merged into another request",
        }.get(row.stage, row.stage)
        return {
            "service_request_id": row.caseref,
            "status": "closed" if closed else "open",
            "status_notes": notes,
            "service_name": svc["service_name"] if svc else row.category,
            "service_code": svc["service_code"] if svc else row.category,
            "description": row.title,
            "agency_responsible": ",".join(row.responsible_departments),
            "service_notice": "",
            "requested_datetime": _iso(row.reported_at),
            "updated_datetime": _iso(row.updated_at),
            "expected_datetime": _iso(getattr(row, "due", None) or row.extended_until),
            "address": row.address or "",
            "address_id": "",
            "zipcode": "",
            "lat": row.lat,
            "long": row.lon,
            "media_url": "",
        }

    async def services(request: Request) -> Response:
        try:
            fmt = _fmt(request)
        except _Error as exc:
            return _error("json", exc)
        return _render(fmt, "services", "service", [public_service(s) for s in cfg.services])

    async def definition(request: Request) -> Response:
        fmt = "json"
        try:
            fmt = _fmt(request)
            code = request.path_params["code"]
            svc = by_code.get(code)
            if svc is None:
                raise _Error(404, f"service_code {code!r} not found")
            attributes = [
                {
                    "variable": bool(a.get("variable", True)),
                    "code": a["code"],
                    "datatype": a.get("datatype", "string"),
                    "required": bool(a.get("required", False)),
                    "datatype_description": a.get("datatype_description", ""),
                    "order": int(a.get("order", i + 1)),
                    "description": a.get("description", ""),
                    **({"values": list(a["values"])} if a.get("values") else {}),
                }
                for i, a in enumerate(svc.get("attributes", []))
            ]
        except _Error as exc:
            return _error(fmt, exc)
        return _render_one(fmt, "service_definition", {"service_code": code, "attributes": attributes})

    async def create(request: Request) -> Response:
        fmt = "json"
        try:
            fmt = _fmt(request)
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "application/json":
                try:
                    raw = await request.json()
                except ValueError:
                    raise _Error(400, "body is not JSON") from None
                if not isinstance(raw, dict):
                    raise _Error(400, "body must be a JSON object")
                fields: dict[str, Any] = dict(raw)
            else:
                form = await request.form()
                fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            if cfg.api_keys and fields.get("api_key") not in cfg.api_keys:
                raise _Error(403, "api_key is missing or invalid")
            record: dict[str, Any] = {"attribute": dict(fields.pop("attribute", None) or {})}
            for key, value in fields.items():
                if key.startswith("attribute[") and key.endswith("]"):
                    record["attribute"][key[10:-1]] = value
                elif key in ("lat", "long"):
                    try:
                        record[key] = float(value)
                    except (TypeError, ValueError):
                        raise _Error(400, f"{key}: expected a number, got {value!r}") from None
                elif key not in ("api_key", "jurisdiction_id"):
                    record[key] = value
            record["service_request_id"] = cfg.new_id()
            record["requested_datetime"] = cfg.clock().isoformat()
            if "service_code" not in record:
                raise _Error(400, "service_code: field required")
            if record["service_code"] not in by_code:
                raise _Error(404, f"service_code {record['service_code']!r} not found")
            (result,) = await cfg.submit(SOURCE, [record])
            if result["status"] == "rejected":
                raise _Error(400, str(result.get("error", "rejected")))
        except _Error as exc:
            return _error(fmt, exc)
        row = {"service_request_id": record["service_request_id"], "service_notice": "", "account_id": ""}
        return _render(fmt, "service_requests", "request", [row], 201)

    async def search(request: Request) -> Response:
        fmt = "json"
        try:
            fmt = _fmt(request)
            q = request.query_params
            now = cfg.clock()
            ids = [i for i in (q.get("service_request_id") or "").split(",") if i]
            if ids:
                found = [
                    await asyncio.to_thread(cfg.reads.case, m.case_id_for(SOURCE, i))
                    for i in ids[:MAX_RESULTS]
                ]
                rows = [r for r in found if r is not None and r.source == SOURCE]
                return _render(fmt, "service_requests", "request", [request_row(r) for r in rows])
            codes = {c for c in (q.get("service_code") or "").split(",") if c}
            unknown = codes - set(by_code)
            if unknown:
                raise _Error(400, f"service_code: unknown {sorted(unknown)}")
            statuses = {s for s in (q.get("status") or "").split(",") if s}
            if statuses - {"open", "closed"}:
                raise _Error(400, "status: use open, closed or open,closed")
            end = _parse_date(q.get("end_date"), "end_date") or now
            start = _parse_date(q.get("start_date"), "start_date") or end - DEFAULT_WINDOW
            if start > end:
                raise _Error(400, "start_date is after end_date")
            categories = {by_code[c]["category"] for c in codes}
            out: list[dict[str, Any]] = []
            cursor: str | None = None
            while len(out) < MAX_RESULTS:
                page = await asyncio.to_thread(
                    cfg.reads.cases, Scope(department=DEPARTMENT), None, statuses == {"open"}, 500, cursor
                )
                for row in page.rows:
                    if row.source != SOURCE or not start <= row.reported_at <= end:
                        continue
                    if categories and row.category not in categories:
                        continue
                    item = request_row(row)
                    if statuses and item["status"] not in statuses:
                        continue
                    out.append(item)
                cursor = page.next_cursor
                if cursor is None:
                    break
        except _Error as exc:
            return _error(fmt, exc)
        out.sort(key=lambda r: str(r["requested_datetime"]), reverse=True)
        return _render(fmt, "service_requests", "request", out[:MAX_RESULTS])

    async def one(request: Request) -> Response:
        fmt = "json"
        try:
            fmt = _fmt(request)
            ref = request.path_params["id"]
            row = await asyncio.to_thread(cfg.reads.case, m.case_id_for(SOURCE, ref))
            if row is None or row.source != SOURCE:
                raise _Error(404, f"service_request_id {ref!r} not found")
        except _Error as exc:
            return _error(fmt, exc)
        return _render(fmt, "service_requests", "request", [request_row(row)])

    async def discovery(_: Request) -> Response:
        return JSONResponse(
            {
                "changeset": "2026-03-02T00:00:00Z",
                "contact": "city command centre",
                "key_service": "api_key from the command centre",
                "endpoints": [
                    {
                        "specification": "http://wiki.open311.org/GeoReport_v2",
                        "url": prefix,
                        "changeset": "2026-03-02T00:00:00Z",
                        "type": "production",
                        "formats": ["text/xml", "application/json"],
                    }
                ],
            }
        )

    return [
        Route(f"{prefix}/discovery.json", discovery, methods=["GET"]),
        Route(prefix + "/services.{format}", services, methods=["GET"]),
        Route(prefix + "/services/{code}.{format}", definition, methods=["GET"]),
        Route(prefix + "/requests.{format}", create, methods=["POST"]),
        Route(prefix + "/requests.{format}", search, methods=["GET"]),
        Route(prefix + "/requests/{id}.{format}", one, methods=["GET"]),
    ]
