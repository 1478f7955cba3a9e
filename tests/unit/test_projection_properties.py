"""Property: incremental application == full rebuild == the domain's own fold, for random histories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.bootstrap import build_ledger
from projections import ProjectionService, rebuild
from tests.projection_history import oracle_case, random_city

TABLES = {
    "events": "SELECT * FROM events ORDER BY seq",
    "cases": "SELECT * FROM cases ORDER BY case_id",
    "case_links": "SELECT * FROM case_links ORDER BY case_id, relation, target_id",
    "case_reporters": "SELECT * FROM case_reporters ORDER BY case_id",
    # the carried fold state: what the live projector continues from after a batch or a replay
    "case_state": "SELECT * FROM case_state ORDER BY ALL",
    "case_parts": "SELECT * FROM case_parts ORDER BY ALL",
}


def _dump(service: ProjectionService) -> dict[str, pa.Table]:
    cur = service.store.reader()
    try:
        return {name: cur.sql(sql).to_arrow_table() for name, sql in TABLES.items()}
    finally:
        cur.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    n_cases=st.integers(1, 12),
    n_steps=st.integers(0, 80),
    batch=st.integers(2, 40),
    fold=st.integers(1, 120),
)
def test_incremental_equals_rebuild_equals_domain_fold(
    tmp_path_factory: Any, seed: int, n_cases: int, n_steps: int, batch: int, fold: int
) -> None:
    tmp: Path = tmp_path_factory.mktemp("prop")
    ledger = build_ledger(f"sqlite:///{tmp / 'events.sqlite'}")
    city = random_city(ledger, seed, n_cases, n_steps)

    incremental = ProjectionService(tmp / "inc.duckdb", ledger.recorder, batch_size=batch)
    full = ProjectionService(tmp / "full.duckdb", ledger.recorder, batch_size=100_000)
    try:
        # incremental, in small batches (case histories span batches), caught up twice
        incremental.catch_up(until=max(1, max(city.stage_after) // 2))
        incremental.catch_up()
        full.catch_up()
        a, b = _dump(incremental), _dump(full)
        for name in TABLES:
            assert a[name].equals(b[name]), f"{name}: incremental != rebuild"

        # == ``hub replay``'s bulk path: sections staged, whole-history fold into the empty file,
        # then (when the log exceeds ``fold``) carried folds of the rest, all in one transaction
        replayed = rebuild(tmp / "replay.duckdb", ledger.recorder, batch_size=batch, fold_size=fold)
        assert replayed == (ledger.recorder.max_notification_id() or 0)
        bulk = ProjectionService(tmp / "replay.duckdb", ledger.recorder)
        try:
            assert bulk.catch_up() == 0
            c = _dump(bulk)
        finally:
            bulk.close()
        for name in TABLES:
            assert a[name].equals(c[name]), f"{name}: incremental != replay (bulk fold)"

        # == the independent pure-Python fold (the aggregate itself)
        rows = {r["case_id"]: r for r in a["cases"].to_pylist()}
        assert len(rows) == len(city.cases)
        for case in city.cases:
            row = rows[str(case.id)]
            expected = oracle_case(case)
            got = {k: row[k] for k in expected}
            assert got == expected, f"case {case.caseref}"
        stages = {r["seq"]: r["stage_after"] for r in a["events"].to_pylist()}
        assert stages == city.stage_after
        links = {(r["case_id"], r["relation"], r["target_id"]) for r in a["case_links"].to_pylist()}
        assert links == {(str(c.id), rel, str(t)) for c in city.cases for rel, t, _ in c.links}
    finally:
        incremental.close()
        full.close()
