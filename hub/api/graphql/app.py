# mypy: disable-error-code="untyped-decorator, misc"
"""The ASGI side: strawberry's GraphQL view (GraphiQL at GET /graphql, graphql-transport-ws) with
the caller authenticated from the bearer token of the request, the WebSocket handshake or the
``connection_init`` payload (browsers cannot set headers on a WebSocket).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from hub.api.graphql.auth import AuthError
from hub.api.graphql.context import ApiContext, authenticate
from hub.api.graphql.schema import build_schema


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


def graphql_routes(
    ctx: ApiContext, allowed_origins: Sequence[str] = (), path: str = "/graphql"
) -> list[BaseRoute]:
    """Routes to add to the hub's Starlette app (HTTP POST + GraphiQL, and the WebSocket)."""
    app = HubGraphQL(ctx, allowed_origins)
    return [Route(path, app, methods=["GET", "POST"]), WebSocketRoute(path, app)]
