"""HTTP push (``POST /ingest/{connector}``): department systems send native records, get one answer each.

Body: a JSON array of native records (``application/json``) or one record per line
(``application/x-ndjson``). Auth: ``Authorization: Bearer <token>``; each token belongs to one
department (部门令牌, from configuration) and may only push through that department's connectors, and every
event a record becomes must be the token's department's (:func:`hub.messages.published_as`: not
another department's, never an operator command), else the record is rejected ``not_permitted``;
whether that department may act on the case it names is the case's to decide (the intake
dead-letters ``not_permitted``, hub.domain.authority).
Answer: ``202 Accepted`` with one result per record (index, event id, status accepted / duplicate /
rejected, and for a rejection the error naming the record's own field). 202, not 200, because
"accepted" means durably in the JetStream stream; the case is updated by the intake moments later.

Poison is answered per record, never with a 500: a record with bytes that are not UTF-8, a number
out of range or nesting too deep is split out of the body (:func:`hub.messages.split_array`) and
rejected alone naming its field, a time outside the plausible-time window (``HUB_TIME_WINDOW``) is
rejected by its connector's validation; only a body that is not JSON at all is a 400.

Why the mapping is injected: ``hub.api`` may not import ``connectors`` (design §3). ops passes a
``submit(connector, records)`` coroutine (the connector registry plus the publisher) and the
connector → department table; this module only does HTTP: auth, limits, parsing, status codes.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub import messages as m


class SubmitFn(Protocol):
    """``submit(connector_name, records, department=…)`` → one result dict per record: index,
    status, event_id, error, field. ``department``, when given, is the authenticated sender's: a
    record whose events are published as anyone else is rejected (``not_permitted``), unpublished."""

    def __call__(
        self, connector: str, records: Sequence[Any], /, *, department: str | None = None
    ) -> Awaitable[Sequence[Mapping[str, Any]]]: ...


ADMIN = "*"
"""A token whose department is ``*`` may push through every connector (the hub's own tools)."""


@dataclass(frozen=True)
class IngestConfig:
    """What ops injects: the connectors offered, who may use them, and the limits."""

    submit: SubmitFn
    connectors: Mapping[str, str]  # connector name → department whose token may push through it
    tokens: Mapping[str, str]  # bearer token → department (or ADMIN)
    max_bytes: int = 8 * 1024 * 1024
    max_records: int = 10_000
    descriptions: Mapping[str, str] | None = None  # connector → native format summary (OpenAPI)
    unavailable: Callable[[], str | None] | None = None
    """Why records cannot be stored right now (JetStream not writing, NATS gone), or ``None``:
    answered 503 at once, instead of a request that waits for publish timeouts."""
    report: Callable[[str | None], None] | None = None
    """Told after each request why its records were not stored (an infrastructure failure), or
    ``None`` when they were: the hub's readiness learns that CITY stopped taking writes."""
    submit_timeout_s: float = 15.0
    """Longest a request waits for JetStream to confirm its records before it is answered 503."""


UNSTORED = (
    "no acknowledgement from JetStream",
    "JetStream unavailable",
    "JetStream refused",
    "connection problem",
)
"""How the publisher words a record it could not store (an infrastructure failure, not the record's)."""
RETRY_AFTER_S = "5"


class _Problem(Exception):
    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        self.status, self.detail, self.headers = status, detail, dict(headers or {})


def _problem(exc: _Problem) -> JSONResponse:
    return JSONResponse({"error": exc.detail, "status": exc.status}, exc.status, headers=exc.headers)


def _authorise(request: Request, cfg: IngestConfig, connector: str) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _Problem(
            401, "missing bearer token (Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"}
        )
    department = next((d for t, d in cfg.tokens.items() if hmac.compare_digest(t, token.strip())), None)
    if department is None:
        raise _Problem(401, "unknown token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if department not in (ADMIN, cfg.connectors[connector]):
        raise _Problem(403, f"a {department} token may not push through the {connector} connector")
    return department


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Problem(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Problem(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _BadRecord:
    """A record that is not JSON (bad bytes, broken syntax, too deep, a number out of range):
    answered as a rejected record naming its ``field`` where it can be found; the others go on."""

    def __init__(self, detail: str, field: str = "") -> None:
        self.detail = detail
        self.field = field


def _bad(raw: bytes, exc: Exception, what: str) -> _BadRecord:
    where = m.undecodable_path(raw)
    try:
        raw.decode("utf-8")
        hint = "send valid JSON"
    except UnicodeDecodeError:
        hint = "send UTF-8 text (convert it at the source, e.g. from GBK/GB18030)"
    return _BadRecord(f"{what} is not valid JSON ({exc}); {hint}", where)


def _parse(body: bytes, content_type: str) -> list[Any]:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq"):
        records: list[Any] = []
        for number, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                records.append(_bad(line, exc, f"line {number}"))
        return records
    if ctype not in ("application/json", ""):
        raise _Problem(
            415, f"unsupported content type {ctype!r}; send application/json or application/x-ndjson"
        )
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _split(body, exc)
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list):
        raise _Problem(400, "body must be a JSON array of records (or one record object)")
    return parsed


def _split(body: bytes, exc: orjson.JSONDecodeError) -> list[Any]:
    """A JSON body orjson refused: when it is still an array of records, each record is judged
    on its own, so one poison record (bad bytes, a huge number, deep nesting) is rejected alone
    and its neighbours go on; otherwise the whole body is answered 400, saying why."""
    members = m.split_array(body)
    if members is None:
        try:
            body.decode("utf-8")
            hint = "send a JSON array of records (or one record object)"
        except UnicodeDecodeError as bad:
            hint = f"the body is not UTF-8 at byte {bad.start}; send UTF-8 JSON"
        raise _Problem(400, f"body is not JSON: {exc}; {hint}") from None
    records: list[Any] = []
    for index, raw in enumerate(members):
        try:
            records.append(orjson.loads(raw))
        except orjson.JSONDecodeError as bad:
            records.append(_bad(raw, bad, f"record {index}"))
    return records


def ingest_routes(cfg: IngestConfig) -> list[Route]:
    """The routes ops mounts: ``POST /ingest/{connector}`` and ``GET /ingest/openapi.json``."""

    async def ingest(request: Request) -> Response:
        connector = request.path_params["connector"]
        try:
            if connector not in cfg.connectors:
                raise _Problem(
                    404, f"unknown connector {connector!r}; known: {', '.join(sorted(cfg.connectors))}"
                )
            department = _authorise(request, cfg, connector)
            if department == ADMIN:  # the hub's own tools: as the connector's department
                department = cfg.connectors[connector]
            records = _parse(await _body(request, cfg.max_bytes), request.headers.get("content-type", ""))
            if len(records) > cfg.max_records:
                raise _Problem(
                    413, f"{len(records)} records exceed the limit of {cfg.max_records} per request"
                )
        except _Problem as exc:
            return _problem(exc)
        bad = {i: r for i, r in enumerate(records) if isinstance(r, _BadRecord)}
        try:
            records = [None if i in bad else r for i, r in enumerate(records)]
            results = await _submit(cfg, connector, records, department)
        except _Problem as exc:
            return _problem(exc)
        out = []
        for i, result in enumerate(results):
            row = dict(result)
            if i in bad:
                row.update(status="rejected", error=bad[i].detail, field=bad[i].field, event_id="")
            out.append(row)
        counts = {s: sum(1 for r in out if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
        body: dict[str, Any] = {"connector": connector, **counts, "results": out}
        unstored = [
            r for r in out if r["status"] == "rejected" and str(r.get("error", "")).startswith(UNSTORED)
        ]
        if cfg.report is not None:
            cfg.report(str(unstored[0]["error"]) if unstored else None)
        if unstored:
            # Not the records' fault: the whole request may be sent again (stored ones come back
            # as duplicates, by their event ids), so say so with a status clients retry on.
            body.update(
                error=f"{len(unstored)} records could not be stored: {unstored[0]['error']}", status=503
            )
            return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        return JSONResponse(body, status_code=202)

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document(cfg))

    return [
        Route("/ingest/openapi.json", openapi, methods=["GET"]),
        Route("/ingest/{connector}", ingest, methods=["POST"]),
    ]


async def _submit(
    cfg: IngestConfig, connector: str, records: list[Any], department: str
) -> list[Mapping[str, Any]]:
    """Publish the records, but answer 503 as soon as the hub learns that JetStream cannot store
    them (or after ``cfg.submit_timeout_s``), instead of holding the request through every retry
    of every record: the sender retries the whole request, and the event ids make that safe."""
    reason = cfg.unavailable() if cfg.unavailable is not None else None
    if reason:  # known before publishing anything: answered at once
        raise _Problem(
            503, f"cannot store records now: {reason}; retry later", {"Retry-After": RETRY_AFTER_S}
        )
    task = asyncio.ensure_future(cfg.submit(connector, records, department=department))
    deadline = asyncio.get_running_loop().time() + cfg.submit_timeout_s
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return list(task.result())
            reason = cfg.unavailable() if cfg.unavailable is not None else None
            if reason is None and asyncio.get_running_loop().time() > deadline:
                reason = f"JetStream did not confirm the records within {cfg.submit_timeout_s:g} s"
                if cfg.report is not None:
                    cfg.report(reason)
            if reason:
                raise _Problem(
                    503,
                    f"cannot store records now: {reason}; send them again later (records already "
                    f"stored are answered as duplicates)",
                    {"Retry-After": RETRY_AFTER_S},
                )
    finally:
        if not task.done():
            task.cancel()


def ingest_app(cfg: IngestConfig) -> Starlette:
    """A stand-alone ASGI app (tests, or a separate ingest process behind a proxy)."""
    return Starlette(routes=ingest_routes(cfg))


def openapi_document(cfg: IngestConfig) -> dict[str, Any]:
    """OpenAPI 3.1 for integrators: the push endpoint, its answers, and the canonical event schemas."""
    result_schema = {
        "type": "object",
        "required": ["index", "status", "event_id"],
        "properties": {
            "index": {"type": "integer", "description": "0-based position of the record in the request"},
            "status": {"type": "string", "enum": ["accepted", "duplicate", "rejected"]},
            "event_id": {"type": "string", "description": "id of the record's first canonical event"},
            "event_ids": {"type": "array", "items": {"type": "string"}},
            "error": {"type": "string", "description": "why the record was rejected"},
            "field": {"type": "string", "description": "the record's field at fault"},
        },
    }
    error = {"type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}
    descriptions = cfg.descriptions or {}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "citybrain-hub ingest",
            "version": "1",
            "description": "Department systems push native records; each is mapped by its connector to "
            "canonical CloudEvents (city.<department>.<kind>.<action>) and answered individually. "
            "Connectors: "
            + "; ".join(f"{n} ({d}): {descriptions.get(n, '')}" for n, d in sorted(cfg.connectors.items())),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "RecordResult": result_schema,
                "Error": error,
                "CanonicalEvent": m.json_schemas()["envelope"],
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/ingest/{connector}": {
                "post": {
                    "summary": "Push native records of one department system",
                    "parameters": [
                        {
                            "name": "connector",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": sorted(cfg.connectors)},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "description": f"At most {cfg.max_bytes} bytes and {cfg.max_records} records.",
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "one result per record, in order",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "connector": {"type": "string"},
                                            "accepted": {"type": "integer"},
                                            "duplicate": {"type": "integer"},
                                            "rejected": {"type": "integer"},
                                            "results": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/RecordResult"},
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        **{
                            str(code): {
                                "description": text,
                                "content": {
                                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                                },
                            }
                            for code, text in (
                                (400, "body is not JSON at all (a poison record is rejected alone)"),
                                (401, "missing or unknown token"),
                                (403, "token of another department"),
                                (404, "unknown connector"),
                                (413, "body or record count over the limit"),
                                (415, "unsupported content type"),
                                (
                                    503,
                                    "JetStream cannot store records now (e.g. a full disk): the "
                                    "reason is given; send the request again later (Retry-After)",
                                ),
                            )
                        },
                    },
                }
            }
        },
    }
