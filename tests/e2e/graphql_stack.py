"""The real stack for GraphQL tests: nats-server, intake, projector, the wired app on uvicorn.

Why not the schema in-process: the acceptance is about the wire (HTTP, graphql-transport-ws) and
the path a mutation really takes (NATS → intake → store → projector → NATS notice → subscriber).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from gql import Client, gql
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette

from hub.api.gql import commit_publisher
from hub.intake import IntakeSettings
from ops.bootstrap import (
    access_log,
    build_ledger,
    connect_nats,
    graphql_app_routes,
    projector_decoder,
    start_intake,
)
from ops.natsd import free_port
from projections import ProjectionService
from tests.support import eventually

OPERATIONS = Path(__file__).resolve().parents[2] / "graphql" / "operations"
# Retries that outlast a loaded machine's slow batch (an event whose predecessor is still in flight
# must not be dead-lettered after 0.7 s); the ack wait is at most half their sum (IntakeSettings).
FAST = IntakeSettings(retry_delays_s=(0.2, 0.5, 1.0, 2.0, 4.0), ack_wait_s=2.0)


def document(name: str) -> Any:
    """All operations of one graphql/operations file (select with operation_name)."""
    return gql((OPERATIONS / f"{name}.graphql").read_text())


@dataclass
class Stack:
    url: str
    nc: Any
    service: ProjectionService
    reader: Any = None
    access: Any = None

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def http(self, token: str) -> Client:
        auth = {"Authorization": f"Bearer {token}"}
        transport = HTTPXAsyncTransport(url=self.url, headers=auth, timeout=30)
        return Client(transport=transport, fetch_schema_from_transport=False, execute_timeout=30)

    def ws(self, token: str) -> Client:
        transport = WebsocketsTransport(
            url=self.ws_url,
            init_payload={"Authorization": f"Bearer {token}"},
            subprotocols=["graphql-transport-ws"],
        )
        return Client(transport=transport, fetch_schema_from_transport=False, execute_timeout=30)

    async def publish(self, events: Iterable[dict[str, Any]]) -> int:
        """Publish department events (acked) and wait until the projection reflects them."""
        js = self.nc.jetstream(timeout=10)
        last = 0
        for ev in events:
            subject = f"city.{ev['department']}.{ev['type']}"
            await js.publish(subject, orjson.dumps(ev), headers={"Nats-Msg-Id": ev["id"]})
            last += 1
        return last

    async def settled(self, cases: int) -> None:
        def count() -> bool:
            return int(self.service.store.counts()["cases"]) >= cases

        await eventually(count, every=0.05)


@contextlib.asynccontextmanager
async def graphql_stack(nats_url: str, store_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """One hub: the intake and one API replica in this process (the intake wakes its projector)."""
    nc = await connect_nats(nats_url, "test-graphql")
    intake, task = await start_intake(nc, store_url, settings=FAST, writer_process=False)
    try:
        async with graphql_replica(nc, store_url, tmp_path / "views.duckdb") as stack:
            intake.on_committed = stack.service.notify
            yield stack
    finally:
        intake.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        await nc.close()


@contextlib.asynccontextmanager
async def graphql_replica(nc: Any, store_url: str, views_path: Path) -> AsyncIterator[Stack]:
    """One API replica: its own DuckDB (``views_path``) following the store's log, its own port.

    Why separate from the intake: API replicas (issue 9) each follow the shared log with their own
    read models and publish their own commit notices; the intake may live anywhere.
    """
    reader = await asyncio.to_thread(build_ledger, store_url)
    service = ProjectionService(
        views_path,
        reader.recorder,
        application_name=reader.name,
        poll_interval=0.05,
        state_decoder=projector_decoder(reader),  # the hub's own decoder (opens sealed personal fields)
    )
    service.projector.on_commit = commit_publisher(nc, asyncio.get_running_loop())
    service.start()
    access = access_log(reader, flush_interval=0.1)  # the read access log, as `hub up` wires it
    app = Starlette(routes=graphql_app_routes(nc, service.views, None, access=access))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, every=0.02)
    try:
        yield Stack(f"http://127.0.0.1:{port}/graphql", nc, service, reader, access)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 10)
        await asyncio.to_thread(access.close)
        await asyncio.to_thread(service.close)
        getattr(reader, "close", lambda: None)()
