"""SIGKILL the projector (a real subprocess) mid-batch, restart it: nothing counted twice or missed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ops.bootstrap import build_ledger
from projections import ProjectionService
from tests.projection_history import random_city

CHILD = """
import sys
from ops.bootstrap import build_ledger
from projections import ProjectionService
ledger = build_ledger(sys.argv[1])
service = ProjectionService(sys.argv[2], ledger.recorder, batch_size=int(sys.argv[3]))
service.catch_up(progress=lambda n, pos: print(pos, flush=True))
print("done", flush=True)
"""

TABLES = ("events ORDER BY seq", "cases ORDER BY case_id", "case_links ORDER BY case_id, relation, target_id")


def _run(store: str, views: Path, batch: int, kill_after: int | None) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, store, str(views), str(batch)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.strip())
        if kill_after is not None and len(lines) >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)  # lands inside the next batch's transaction
            break
    proc.wait(120)
    return lines


def test_sigkill_mid_batch_then_restart_is_exactly_once(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    ledger = build_ledger(store)
    random_city(ledger, seed=11, n_cases=60, n_steps=900, saves=20)
    total = ledger.recorder.max_notification_id()
    views = tmp_path / "views.duckdb"

    positions: list[int] = []
    for kill_after in (3, 4, 2):
        lines = _run(store, views, 20, kill_after)
        positions.append(int(lines[-1]))
    assert positions == sorted(positions) and positions[-1] < total  # it really was killed part-way
    assert _run(store, views, 25, None)[-1] == "done"

    killed = ProjectionService(views, ledger.recorder)
    clean = ProjectionService(tmp_path / "clean.duckdb", ledger.recorder, batch_size=100_000)
    try:
        assert killed.catch_up() == 0 and killed.projector.position == total
        clean.catch_up()
        assert killed.store.counts()["events"] == total  # every event once (seq is the primary key too)
        for table in TABLES:
            sql = f"SELECT * FROM {table}"
            assert killed.views.arrow(sql).equals(clean.views.arrow(sql)), table
    finally:
        killed.close()
        clean.close()
