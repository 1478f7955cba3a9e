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

The doors are narrow on purpose (issue 15; docs/security.md): with keys configured, ``POST`` needs
an ``api_key`` (401 without, 403 unknown) and keeps within its holder's token bucket (429 with
``Retry-After``); the body is read only up to ``max_bytes`` (413, the rest never read); every field
is type-checked and an unknown one named (400, never a 500); an evaluation must name a request the
hub knows (404) and has closed (409); an id search names at most ``max_ids`` ids (400) and costs one
set-based query of the read model, however many it names.

Why injected collaborators: ``hub.api`` may not import ``connectors`` (design §3). ops passes the
service list and a ``submit("open311", records)`` coroutine (the open311 connector plus the
publisher), and a reader that answers ``case``/``cases`` like :class:`hub.views.ReadModels`
(the projections' implementation, or any adapter with those two methods).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from hub import messages as m
from hub.api.ingest import SubmitFn
from hub.api.limits import BodyTooLarge, Pace, TokenBuckets, read_limited
from hub.views import CaseFilter, CasePage, CaseRow, Scope
from hub.vocabulary import CONCLUDED_STAGES
from hub.vocabulary import EVALUABLE_STAGES as EVALUABLE_STAGES

SOURCE = "open311"
DEPARTMENT = "citizens"
CLOSED_STAGES = CONCLUDED_STAGES
"""A citizen evaluates (评价) a request the hub has closed; evaluated again: the same score is a
duplicate, another is refused by the case."""
MAX_RESULTS = 1000
MAX_IDS = 100
"""Most ``service_request_id`` values one search may name (a longer list is answered 400)."""
DEFAULT_MAX_BYTES = 1024 * 1024
"""Default body limit of ``POST /requests`` (``HUB_OPEN311_MAX_BYTES``)."""
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
        where: CaseFilter | None = None,
    ) -> CasePage: ...


@dataclass(frozen=True, slots=True)
class ApiKey:
    """Who holds an Open311 ``api_key`` (one ``[[key]]`` of ``open311_keys.toml``) and its pace.

    ``name`` and ``department`` say whose app it is (the 12345 hotline app, a district's WeChat
    mini-program …) so a refusal or a rate limit can name the holder; ``per_minute`` and ``burst``
    are its token bucket: ``burst`` requests at once, then ``per_minute`` on average.
    """

    name: str
    department: str = DEPARTMENT
    per_minute: float = 60.0
    burst: int = 10

    @property
    def pace(self) -> Pace:
        return Pace(self.per_minute, self.burst)


@dataclass(frozen=True)
class Open311Config:
    services: Sequence[Mapping[str, Any]]  # service_code, service_name, description, metadata, type,
    # keywords, group, category, attributes
    submit: SubmitFn
    reads: RequestReads
    api_keys: Mapping[str, ApiKey] | AbstractSet[str] = frozenset()
    """api_key → its holder; empty: POST needs no api_key (development only: ``hub up`` warns,
    production mode refuses). A plain set of keys is accepted too (each with the default pace)."""
    jurisdiction_id: str = "citybrain-hub"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    new_id: Callable[[], str] = lambda: f"SR{datetime.now(UTC):%Y%m%d}{secrets.token_hex(4).upper()}"
    max_bytes: int = DEFAULT_MAX_BYTES
    max_ids: int = MAX_IDS
    monotonic: Callable[[], float] = time.monotonic
    """The rate limiter's clock (tests pass their own)."""


class _Error(Exception):
    def __init__(self, status: int, description: str, headers: Mapping[str, str] | None = None) -> None:
        self.status, self.description, self.headers = status, description, dict(headers or {})


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


def _render(
    fmt: str,
    root: str,
    item: str,
    rows: Sequence[Mapping[str, Any]],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    if fmt == "xml":
        return Response(_xml(root, item, rows), status, headers, media_type="text/xml; charset=utf-8")
    return JSONResponse(list(rows), status, headers)


def _render_one(fmt: str, item: str, row: Mapping[str, Any]) -> Response:
    if fmt == "xml":
        top = ET.Element(item)
        _xml_item(top, row)
        body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(top, encoding="utf-8")
        return Response(body, 200, media_type="text/xml; charset=utf-8")
    return JSONResponse(dict(row))


def _error(fmt: str, exc: _Error) -> Response:
    rows = [{"code": exc.status, "description": exc.description}]
    return _render(fmt, "errors", "error", rows, exc.status, exc.headers)


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


# --------------------------------------------------------------------------- POST body: fields
TEXT_FIELDS: Mapping[str, int] = {
    "api_key": 200,
    "jurisdiction_id": 200,
    "service_code": 100,
    "description": 4000,
    "address_string": 500,
    "address_id": 200,
    "email": 254,
    "device_id": 200,
    "account_id": 200,
    "first_name": 100,
    "last_name": 100,
    "phone": 50,
    "service_request_id": 200,
    "comment": 4000,
}
"""Text fields of ``POST /requests`` and the longest value each may have."""
NUMBER_FIELDS: Mapping[str, float] = {"lat": 90.0, "long": 180.0}
REQUEST_FIELDS = frozenset(TEXT_FIELDS) - {"service_request_id", "comment"} | {
    *NUMBER_FIELDS,
    "media_url",
    "attribute",
}
"""What a new request may carry (GeoReport v2 ``POST /requests``)."""
EVALUATION_FIELDS = frozenset({"api_key", "jurisdiction_id", "service_request_id", "evaluation", "comment"})
"""What a citizen's evaluation (评价) of a closed request may carry."""
MAX_ATTRIBUTES = 100
MAX_FORM_FIELDS = 200


def _replay(body: bytes) -> Receive:
    """An ASGI ``receive`` that hands over a body already read (within the limit) in one piece."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _kind(value: Any) -> str:
    """A value's JSON type name, for error messages a client's developer recognises."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def _form_fields(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs → fields: ``attribute[code]=v`` into ``attribute``, ``attribute[code][]`` as a
    list (the spec's multivaluelist); any other field named twice is an error, not a silent pick."""
    if len(pairs) > MAX_FORM_FIELDS:
        raise _Error(400, f"{len(pairs)} form fields; at most {MAX_FORM_FIELDS}")
    fields: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for key, value in pairs:
        if key.startswith("attribute[") and key.endswith("[]"):
            code = key[10:-3]
            if not code or not key.endswith("][]"):
                raise _Error(400, f"{key}: expected attribute[CODE][]")
            listed = attributes.setdefault(code, [])
            if not isinstance(listed, list):
                raise _Error(400, f"{key}: attribute[{code}] is given both as one value and as a list")
            listed.append(value)
        elif key.startswith("attribute[") and key.endswith("]"):
            code = key[10:-1]
            if not code or code in attributes:
                raise _Error(400, f"{key}: {'given more than once' if code else 'expected attribute[CODE]'}")
            attributes[code] = value
        elif key in fields:
            raise _Error(400, f"{key}: given more than once")
        else:
            fields[key] = value
    if attributes:
        if "attribute" in fields:
            raise _Error(400, "attribute: give attribute[CODE]=VALUE fields, not a plain 'attribute'")
        fields["attribute"] = attributes
    return fields


async def _body_fields(request: Request, body: bytes) -> dict[str, Any]:
    """The POST body as fields: JSON object, form-encoded, or multipart form (no file parts)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Error(400, f"body is not JSON: {exc}; send one JSON object") from None
        if not isinstance(raw, dict):
            raise _Error(400, f"body must be a JSON object, got {_kind(raw)}")
        return raw
    if ctype in ("", "application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, errors="strict",
                max_num_fields=MAX_FORM_FIELDS,
            )  # fmt: skip
        except UnicodeDecodeError as exc:
            raise _Error(400, f"form body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        except ValueError as exc:
            raise _Error(400, f"form body: {exc}") from None
        return _form_fields(pairs)
    if ctype == "multipart/form-data":
        replayed = Request(request.scope, _replay(body))
        try:
            form = await replayed.form(max_files=MAX_FORM_FIELDS, max_fields=MAX_FORM_FIELDS)
        except Exception as exc:  # python-multipart's and starlette's own refusals alike
            raise _Error(400, f"multipart body cannot be read: {exc}") from None
        parts: list[tuple[str, str]] = []
        for key, value in form.multi_items():
            if not isinstance(value, str):
                raise _Error(400, f"{key}: file uploads are not taken; give a media_url instead")
            parts.append((key, value))
        return _form_fields(parts)
    raise _Error(
        415,
        f"unsupported content type {ctype!r}; send application/x-www-form-urlencoded, "
        "multipart/form-data or application/json",
    )


def _text(fields: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise _Error(400, f"{name}: field required")
        return None
    if not isinstance(value, str):
        raise _Error(400, f"{name}: expected text (a string), got {_kind(value)}")
    limit = TEXT_FIELDS[name]
    if len(value) > limit:
        raise _Error(400, f"{name}: longer than {limit} characters")
    return value


def _number(fields: Mapping[str, Any], name: str) -> float | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Error(400, f"{name}: expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except ValueError:
        raise _Error(400, f"{name}: expected a number, got {str(value)[:40]!r}") from None
    limit = NUMBER_FIELDS[name]
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise _Error(400, f"{name}: {value!r} is outside ±{limit:g}")
    return number


def _attributes(fields: Mapping[str, Any]) -> dict[str, Any]:
    raw = fields.get("attribute")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise _Error(400, f"attribute: expected an object {{code: value}}, got {_kind(raw)}")
    if len(raw) > MAX_ATTRIBUTES:
        raise _Error(400, f"attribute: {len(raw)} attributes; at most {MAX_ATTRIBUTES}")
    for code, value in raw.items():
        where = f"attribute[{code}]"
        if len(code) > 100:
            raise _Error(400, "attribute: a code is longer than 100 characters")
        values = value if isinstance(value, list) else [value]
        for one in values:
            if isinstance(one, bool) or not isinstance(one, str | int | float):
                raise _Error(400, f"{where}: expected text, a number or a list of them, got {_kind(one)}")
            if isinstance(one, str) and len(one) > 1000:
                raise _Error(400, f"{where}: longer than 1000 characters")
    return dict(raw)


def _media(fields: Mapping[str, Any]) -> str | list[str] | None:
    value = fields.get("media_url")
    if value is None or value == "":
        return None
    values = value if isinstance(value, list) else [value]
    if len(values) > 20 or not all(isinstance(v, str) and len(v) <= 2000 for v in values):
        raise _Error(400, "media_url: expected a URL (text, or a list of at most 20 URLs)")
    return value  # type: ignore[no-any-return]


def _score(fields: Mapping[str, Any]) -> int:
    value = fields.get("evaluation")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        shown = repr(value) if isinstance(value, str | int) else _kind(value)
        raise _Error(400, f"evaluation: expected a whole score 1–5, got {shown[:40]}")
    return value


def _unknown(fields: Mapping[str, Any], allowed: AbstractSet[str], what: str) -> None:
    extra = sorted(k for k in fields if k not in allowed)
    if extra:
        names = ", ".join(repr(k[:40]) for k in extra[:5])
        raise _Error(400, f"unknown field {names} for {what}; the fields are {', '.join(sorted(allowed))}")


def request_record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A new request's fields, each type-checked, as the open311 connector's native record
    (without ``service_request_id`` and ``requested_datetime``, which the hub assigns)."""
    _unknown(fields, REQUEST_FIELDS, "a request")
    record: dict[str, Any] = {}
    for name in sorted(REQUEST_FIELDS & set(TEXT_FIELDS) - {"api_key", "jurisdiction_id"}):
        value = _text(fields, name, required=name == "service_code")
        if value is not None:
            record[name] = value
    for name in NUMBER_FIELDS:
        number = _number(fields, name)
        if number is not None:
            record[name] = number
    media = _media(fields)
    if media is not None:
        record["media_url"] = media
    record["attribute"] = _attributes(fields)
    return record


def _keys(api_keys: Mapping[str, ApiKey] | AbstractSet[str]) -> dict[str, ApiKey]:
    if isinstance(api_keys, Mapping):
        return dict(api_keys)
    return {key: ApiKey(name=f"key {i + 1}") for i, key in enumerate(sorted(api_keys))}


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

    keys = _keys(cfg.api_keys)
    buckets = TokenBuckets(cfg.monotonic)

    def authenticate(given: Any) -> None:
        """With keys configured: a known ``api_key`` (401 without one, 403 for an unknown one),
        within its holder's pace (429 with ``Retry-After``). Without keys (development): open."""
        if not keys:
            return
        if given is None or given == "":
            raise _Error(401, "api_key required: this hub takes requests only with an api_key it issued")
        if not isinstance(given, str):
            raise _Error(400, f"api_key: expected text (a string), got {_kind(given)}")
        found = next((k for k in keys if hmac.compare_digest(k.encode(), given.encode())), None)
        if found is None:
            raise _Error(403, "api_key is not valid here; ask the command centre for one")
        holder = keys[found]
        wait = buckets.take(found, holder.pace)
        if wait > 0:
            retry = TokenBuckets.retry_after(wait)
            raise _Error(
                429,
                f"api_key of {holder.name} ({holder.department}) is over its limit of "
                f"{holder.per_minute:g} requests per minute (burst {holder.burst}); retry in {retry} s",
                {"Retry-After": retry},
            )

    async def evaluation(fields: Mapping[str, Any]) -> dict[str, Any]:
        """评价: only for a request this hub knows (404) and has closed (409)."""
        _unknown(fields, EVALUATION_FIELDS, "an evaluation")
        ref = _text(fields, "service_request_id", required=True)
        assert ref is not None
        score = _score(fields)
        comment = _text(fields, "comment")
        row = await asyncio.to_thread(cfg.reads.case, m.case_id_for(SOURCE, ref))
        if row is None or row.source != SOURCE:
            raise _Error(404, f"service_request_id {ref!r} not found")
        if row.stage not in EVALUABLE_STAGES:
            raise _Error(
                409, f"service_request_id {ref!r} is not closed yet ({row.stage}); evaluate it once closed"
            )
        record: dict[str, Any] = {"service_request_id": ref, "evaluation": score}
        if comment:
            record["comment"] = comment
        return record

    async def create(request: Request) -> Response:
        fmt = "json"
        try:
            fmt = _fmt(request)
            in_query = request.query_params.get("api_key")
            if in_query is not None:
                authenticate(in_query)  # before a byte of the body is read
            try:
                body = await read_limited(request, cfg.max_bytes)
            except BodyTooLarge as exc:
                raise _Error(413, str(exc)) from None
            fields = await _body_fields(request, body)
            if in_query is None:
                authenticate(fields.get("api_key"))
            else:
                fields.pop("api_key", None)
            _text(fields, "jurisdiction_id")
            if "evaluation" in fields:
                record = await evaluation(fields)
            else:
                record = request_record(fields)
                if record["service_code"] not in by_code:
                    raise _Error(404, f"service_code {record['service_code']!r} not found")
                record["service_request_id"] = cfg.new_id()
            record["requested_datetime"] = cfg.clock().isoformat()
            (result,) = await cfg.submit(SOURCE, [record])
            if result["status"] == "rejected":
                raise _Error(400, str(result.get("error", "rejected")))
        except _Error as exc:
            return _error(fmt, exc)
        row = {"service_request_id": record["service_request_id"], "service_notice": "", "account_id": ""}
        return _render(fmt, "service_requests", "request", [row], 201)

    async def by_ids(ids: Sequence[str]) -> list[CaseRow]:
        """The requests named, in the order named: one set-based query for all of them (a loop of
        one query per id once made a 1,000-id search cost 15 s)."""
        if len(ids) > cfg.max_ids:
            raise _Error(400, f"service_request_id: {len(ids)} ids; at most {cfg.max_ids} per search")
        wanted = {m.case_id_for(SOURCE, ref): ref for ref in dict.fromkeys(ids)}
        if any(len(ref) > TEXT_FIELDS["service_request_id"] for ref in wanted.values()):
            raise _Error(400, "service_request_id: an id is longer than 200 characters")
        where = CaseFilter(case_ids=tuple(wanted))
        page = await asyncio.to_thread(
            functools.partial(cfg.reads.cases, Scope(), limit=len(wanted), where=where)
        )
        found = {row.case_id: row for row in page.rows if row.source == SOURCE}
        return [found[cid] for cid in wanted if cid in found]

    async def search(request: Request) -> Response:
        fmt = "json"
        try:
            fmt = _fmt(request)
            q = request.query_params
            now = cfg.clock()
            ids = [i.strip() for i in (q.get("service_request_id") or "").split(",") if i.strip()]
            if ids:
                rows = await by_ids(ids)
                return _render(fmt, "service_requests", "request", [request_row(r) for r in rows])
            codes = {c for c in (q.get("service_code") or "").split(",") if c}
            unknown = codes - set(by_code)
            if unknown:
                raise _Error(400, f"service_code: unknown {sorted(unknown)[:10]}")
            statuses = {s for s in (q.get("status") or "").split(",") if s}
            if statuses - {"open", "closed"}:
                raise _Error(400, "status: use open, closed or open,closed")
            end = _parse_date(q.get("end_date"), "end_date") or now
            start = _parse_date(q.get("start_date"), "start_date") or end - DEFAULT_WINDOW
            if start > end:
                raise _Error(400, "start_date is after end_date")
            categories = {by_code[c]["category"] for c in codes}
            # the window and a single category are filtered by the read model, not page by page here
            where = CaseFilter(
                category=next(iter(categories)) if len(categories) == 1 else None,
                since=start, until=end + timedelta(microseconds=1),
            )  # fmt: skip
            out: list[dict[str, Any]] = []
            cursor: str | None = None
            while len(out) < MAX_RESULTS:
                page = await asyncio.to_thread(
                    functools.partial(
                        cfg.reads.cases, Scope(department=DEPARTMENT), open_only=statuses == {"open"},
                        limit=500, cursor=cursor, where=where,
                    )
                )  # fmt: skip
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
