# mypy: disable-error-code="untyped-decorator, misc"
"""The ASGI side: strawberry's GraphQL view (GraphiQL at GET /graphql, graphql-transport-ws) with
the caller authenticated from the bearer token of the request, the WebSocket handshake or the
``connection_init`` payload (browsers cannot set headers on a WebSocket).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from hub.api.gql.auth import AuthError
from hub.api.gql.context import ApiContext, authenticate
from hub.api.gql.limits import too_large
from hub.api.gql.schema import build_schema


class HubGraphQL(GraphQL):
    """One per process; the context holds the process-wide ``ApiContext`` and the caller."""

    def __init__(self, ctx: ApiContext, allowed_origins: Sequence[str] = ()) -> None:
        super().__init__(
            build_schema(ctx.limits),
            graphql_ide="graphiql",
            allow_queries_via_get=False,  # GET serves GraphiQL; queries are POSTed (no CSRF via GET)
            keep_alive=True,
            keep_alive_interval=15,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=allowed_origins,
        )
        self.ctx = ctx

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Any:
        return {"request": request, "response": response, "api": self.ctx}

    async def on_ws_connect(self, context: Any) -> Any:
        try:
            context["principal"] = authenticate(context)
        except AuthError as exc:
            raise ConnectionRejectionError({"reason": str(exc)}) from exc
        return {"role": context["principal"].role}


class BodyLimit:
    """Refuse an oversized GraphQL request before strawberry reads or parses it (HTTP 413).

    The body is read up to twice ``max_bytes`` (the document plus its variables) and no further;
    a body within that whose ``query`` alone is over ``max_bytes`` is refused too. JSON is decoded
    to find the query, the GraphQL text is never parsed. The answer is a GraphQL-style error
    (``errors[0].extensions.code = "QUERY_TOO_LARGE"``). WebSocket messages are checked by
    ``DocumentSizeLimiter`` in the schema.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        cap = 2 * self.max_bytes
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await self._refuse(send, too_large(int(declared), self.max_bytes, body=True))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await self._refuse(send, too_large(size, self.max_bytes, body=True))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        query_size = _query_size(body, scope)
        if query_size > self.max_bytes:
            await self._refuse(send, too_large(query_size, self.max_bytes))
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, error: GraphQLError) -> None:
        body = orjson.dumps({"data": None, "errors": [error.formatted]})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _query_size(body: bytes, scope: Scope) -> int:
    """Bytes of the ``query`` of a JSON body (0 when it is not JSON: strawberry answers that)."""
    content_type = dict(scope.get("headers") or ()).get(b"content-type", b"")
    if b"json" not in content_type:
        return len(body)  # multipart / form bodies: the whole body counts
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    items = data if isinstance(data, list) else [data]
    return max(
        (len(q.encode("utf-8", "surrogatepass")) for d in items if isinstance(d, dict)
         if isinstance(q := d.get("query"), str)),
        default=0,
    )  # fmt: skip


def graphql_routes(
    ctx: ApiContext, allowed_origins: Sequence[str] = (), path: str = "/graphql"
) -> list[BaseRoute]:
    """Routes to add to the hub's Starlette app (HTTP POST + GraphiQL, and the WebSocket)."""
    app = HubGraphQL(ctx, allowed_origins)
    limited = BodyLimit(app, ctx.limits.max_bytes)
    return [Route(path, limited, methods=["GET", "POST"]), WebSocketRoute(path, app)]
