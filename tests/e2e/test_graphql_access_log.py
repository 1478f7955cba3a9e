"""Issue 8, read access log: every read of a case's personal detail through GraphQL is on the audit
record — which case, which fields, which role and principal, when — for a screen and an auditor."""

from __future__ import annotations

from pathlib import Path

from gql import GraphQLRequest

from hub import messages as m
from hub.audit.access import read_access
from ops.natsd import EmbeddedNats
from tests.e2e.graphql_stack import document, graphql_stack
from tests.factories import event
from tests.support import eventually

CASES = document("cases")


async def test_screen_and_auditor_reads_are_recorded_with_fields(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        await stack.publish([event("ACC-1", m.Action.REPORTED)])
        await stack.settled(1)
        case_id = str(m.case_id_for("citymgmt-dcm", "ACC-1"))
        for token in ("dev-screen", "dev-auditor"):
            async with stack.http(token) as session:
                await session.execute(
                    GraphQLRequest(CASES, variable_values={"id": case_id}, operation_name="CaseDetail")
                )
        stack.access.flush()

        def recorded() -> list[object]:
            return read_access(
                stack.reader.recorder, stack.reader.mapper, m.case_id_for("citymgmt-dcm", "ACC-1")
            )

        await eventually(lambda: len(recorded()) >= 3)
        reads = recorded()
    by_role: dict[str, set[str]] = {}
    for access in reads:
        by_role.setdefault(access.role, set()).update(access.fields)  # type: ignore[attr-defined]
        assert access.operation == "CaseDetail" and access.at is not None  # type: ignore[attr-defined]
    assert by_role["screen"] == {"reporter (masked)"}
    assert by_role["auditor"] == {"reporter.name", "reporter.phone", "timeline.actor", "timeline.note"}
