"""Carried fold state: a file written before ``case_state``/``case_parts`` existed continues correctly.

Why: batches now continue each case from its stored state instead of its whole history, so a
read-model file from the previous version (cases and events, but no carried state) must get
that state back-filled from its events when opened; otherwise its next batches would fold from
nothing (wrong responsible departments, overruns, grid paths).
"""

from __future__ import annotations

from pathlib import Path

from ops.bootstrap import build_ledger
from projections import ProjectionService
from projections.store import connect
from tests.projection_history import random_city
from tests.unit.test_projection_properties import TABLES, _dump


def test_old_file_without_carried_state_is_backfilled(tmp_path: Path) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    city = random_city(ledger, 7, 12, 160)
    half = max(city.stage_after) // 2

    old = ProjectionService(tmp_path / "old.duckdb", ledger.recorder, batch_size=7)
    old.catch_up(until=half)
    state = _state(old)
    old.close()
    con = connect(tmp_path / "old.duckdb")  # what the previous version left: no carried state
    con.execute("DROP TABLE case_state")
    con.execute("DROP TABLE case_parts")
    con.close()

    reopened = ProjectionService(tmp_path / "old.duckdb", ledger.recorder, batch_size=7)
    full = ProjectionService(tmp_path / "full.duckdb", ledger.recorder, batch_size=100_000)
    try:
        assert _state(reopened) == state
        assert state["parts"] and state["state"]
        reopened.catch_up()
        full.catch_up()
        a, b = _dump(reopened), _dump(full)
        for name in TABLES:
            assert a[name].equals(b[name]), f"{name}: continued old file != rebuild"
        assert _state(reopened) == _state(full)
    finally:
        reopened.close()
        full.close()


def _state(service: ProjectionService) -> dict[str, object]:
    cur = service.store.reader()
    try:
        return {
            "parts": cur.sql("SELECT * FROM case_parts ORDER BY ALL").to_arrow_table().to_pylist(),
            "state": cur.sql("SELECT * FROM case_state ORDER BY ALL").to_arrow_table().to_pylist(),
        }
    finally:
        cur.close()
