"""Open311 id search (issue 15), beside its baseline measured in the same run.

* ``GET /open311/v2/requests.json?service_request_id=<100 ids>`` through the Open311 app (ASGI, in
  process) over DuckDB read models of BENCH_OPEN311_CASES case rows (default 200,000, of which
  1,000 are Open311 requests): one set-based query (``CaseFilter.case_ids``);
* baseline: the same 100 ids looked up the way the endpoint did before, one ``case()`` query per
  id on a worker thread each (a 1,000-id search cost 15 s that way);
* a search for 1,000 ids: refused (400) before any query.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from benchmarks.bench_projections import synthetic_cases  # noqa: E402
from hub import messages as m  # noqa: E402
from hub.api.open311 import Open311Config, open311_routes  # noqa: E402
from projections import DuckDBReadModels, ReadModelStore  # noqa: E402

REQUESTS = 1000


def _as_open311(store: ReadModelStore) -> list[str]:
    """Turn the first ``REQUESTS`` synthetic rows into Open311 requests (their ids as the API names them)."""
    refs = [f"SR{i:06d}" for i in range(REQUESTS)]
    cur = store.reader()
    cur.execute("CREATE TEMP TABLE ids (i INTEGER, ref VARCHAR, cid UUID)")
    cur.executemany(
        "INSERT INTO ids VALUES (?, ?, ?)",
        [(i, r, str(m.case_id_for("open311", r))) for i, r in enumerate(refs)],
    )
    cur.execute(
        "UPDATE cases SET source = 'open311', caseref = ids.ref, case_id = ids.cid, "
        "origin_department = 'citizens' FROM ids WHERE cases.caseref = 'X' || ids.i"
    )
    cur.close()
    return refs


async def _measure(views: DuckDBReadModels, refs: Sequence[str]) -> dict[str, Any]:
    async def submit(name: str, records: Sequence[Any]) -> Sequence[dict[str, Any]]:
        return []

    app = Starlette(routes=open311_routes(Open311Config([], submit, views)))
    wanted = ",".join(refs[:100])
    url = "/open311/v2/requests.json"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        for _ in range(3):
            assert len((await client.get(url, params={"service_request_id": wanted})).json()) == 100
        one_query = []
        for _ in range(20):
            t = time.perf_counter()
            found = (await client.get(url, params={"service_request_id": wanted})).json()
            one_query.append((time.perf_counter() - t) * 1000)
            assert len(found) == 100
        t = time.perf_counter()
        refused = await client.get(url, params={"service_request_id": ",".join(refs)})
        refused_ms = (time.perf_counter() - t) * 1000
        assert refused.status_code == 400
    per_id = []
    for _ in range(5):
        t = time.perf_counter()
        rows = [await asyncio.to_thread(views.case, m.case_id_for("open311", r)) for r in refs[:100]]
        per_id.append((time.perf_counter() - t) * 1000)
        assert all(rows)
    return {
        "ids": 100,
        "one_query_p50_ms": round(statistics.median(one_query), 1),
        "one_query_max_ms": round(max(one_query), 1),
        "baseline_per_id_loop_p50_ms": round(statistics.median(per_id), 1),
        "speedup": round(statistics.median(per_id) / statistics.median(one_query), 1),
        "1000_ids_refused_ms": round(refused_ms, 1),
    }


def run() -> dict[str, Any]:
    n = int(os.environ.get("BENCH_OPEN311_CASES", "200000"))
    with tempfile.TemporaryDirectory(prefix="bench-open311-") as d:
        store = ReadModelStore(Path(d) / "open311.duckdb")
        synthetic_cases(store, n)
        refs = _as_open311(store)
        views = DuckDBReadModels(store.reader, lambda: 0)
        try:
            return {"cases": n, **asyncio.run(_measure(views, refs))}
        finally:
            store.close()


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
