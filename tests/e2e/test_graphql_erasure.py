"""Issue 15: the API stops serving an erased person at once — no `hub replay`, the hub keeps running.

The real stack (nats-server, intake, projector holding its DuckDB file, the GraphQL app on uvicorn);
`hub privacy erase` runs as its own process; the auditor's next reads of the case show the
reporter, the title (sealed: a department's own title may name someone) and the crisis note as
``[erased]``, the stage and the timeline's steps unchanged.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gql import GraphQLRequest

from hub import messages as m
from hub.adapters.privacy.erasure import ERASED
from ops.natsd import EmbeddedNats
from tests.e2e.graphql_stack import document, graphql_stack
from tests.factories import event
from tests.support import eventually

CASES = document("cases")
ROOT = Path(__file__).resolve().parents[2]


async def test_an_erased_person_is_gone_from_the_running_api(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    person = {"name": "王小明", "phone": "13911112222"}
    report = event("ERA-1", m.Action.REPORTED)
    report["data"]["reporter"] = person
    note = event(
        "ERA-1", m.Action.REGISTERED, n=1, data={"note": f"回访{person['name']}，电话{person['phone']}"}
    )
    case_id = str(m.case_id_for("citymgmt-dcm", "ERA-1"))
    async with graphql_stack(nats_server.url, store, tmp_path) as stack:
        await stack.publish([report, note])
        await stack.settled(1)

        async def detail(**as_of: Any) -> Any:
            async with stack.http("dev-auditor") as session:
                answer = await session.execute(
                    GraphQLRequest(
                        CASES, variable_values={"id": case_id, **as_of}, operation_name="CaseDetail"
                    )
                )
            return answer["case"]

        await eventually(lambda: _noted(detail()), what="the note projected")
        before = await detail()
        assert before["reporter"]["phone"] == person["phone"]
        rewound = await detail(asOfPosition=2)  # the auditor's rewind: a snapshot kept for reuse
        assert rewound["reporter"]["phone"] == person["phone"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HUB_DATA_DIR": str(tmp_path)}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ops.cli", "privacy", "erase", person["name"], "--store-url", store,
             "--nats-url", nats_server.url],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "running hub" in done.stdout, done.stdout

        async def erased() -> bool:
            case = await detail()
            return bool(case["reporter"]["name"] == ERASED)

        await eventually(erased, what="the API serves the erasure")
        after = await detail()
        # the snapshot kept from before the erasure is not served again
        rewound_after = await detail(asOfPosition=2)
    assert after["reporter"] == {"name": ERASED, "phone": ERASED, "masked": before["reporter"]["masked"]}
    assert [t["note"] for t in after["timeline"] if t["type"] == "registered"] == [ERASED]
    assert after["title"] == ERASED and after["stage"] == before["stage"]
    assert len(after["timeline"]) == len(before["timeline"])
    assert rewound_after["reporter"]["name"] == ERASED and rewound_after["reporter"]["phone"] == ERASED
    assert [t["note"] for t in rewound_after["timeline"] if t["type"] == "registered"] == [ERASED]


async def _noted(case: Any) -> bool:
    return any(t["note"] for t in (await case)["timeline"])
