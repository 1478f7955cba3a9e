"""File import resumes after a crash at any instant with every rejected row reported exactly once.

CI once caught the rejection report two lines short after a SIGKILL: the checkpoint had been saved
before the chunk's rejections reached the report. These tests crash the import (an exception from
the publisher, or a kill between the report and the checkpoint) and check the report on resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors import registry
from connectors.base import PublishResult
from connectors.importer import Checkpoint, import_file, rejects_path_for
from tests.connector_data import write_12345_export

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "connectors" / "mappings" / "hotline_12345.toml"
ROWS = 1_000


class Crash(Exception):
    """Stands in for SIGKILL: nothing after it runs."""


def _publisher(crash_on_call: int | None) -> Any:
    calls = 0

    async def publish(events: Sequence[dict[str, Any]]) -> list[PublishResult]:
        nonlocal calls
        calls += 1
        if calls == crash_on_call:
            raise Crash
        return [PublishResult(i, str(e["id"]), "accepted") for i, e in enumerate(events)]

    return publish


def _rows(report: Path) -> list[int]:
    return [orjson.loads(line)["row"] for line in report.read_bytes().splitlines()]


@pytest.mark.parametrize("crash_on_call", [1, 2, 3])
def test_resume_after_crash_reports_each_rejection_once(tmp_path: Path, crash_on_call: int) -> None:
    data = tmp_path / "gongdan.csv"
    expected = write_12345_export(data, ROWS, bad_every=100)
    cp_path = tmp_path / "cp.json"
    connector = registry.build("tabular", MAPPING)

    with pytest.raises(Crash):
        asyncio.run(import_file(connector, data, _publisher(crash_on_call), cp_path, chunk=300))
    cp = asyncio.run(import_file(connector, data, _publisher(None), cp_path, chunk=300))

    rows = _rows(rejects_path_for(cp_path))
    assert cp.rows_done == ROWS
    assert len(rows) == len(set(rows)) == expected["invalid"] == cp.counts["rejected"]


def test_report_lines_past_the_checkpoint_are_cut_on_resume(tmp_path: Path) -> None:
    """Killed after the report was fsynced but before the checkpoint: the chunk is re-sent once."""
    data = tmp_path / "gongdan.csv"
    expected = write_12345_export(data, ROWS, bad_every=100)
    cp_path = tmp_path / "cp.json"
    connector = registry.build("tabular", MAPPING)
    asyncio.run(import_file(connector, data, _publisher(None), cp_path, chunk=300))
    saved = Checkpoint(**orjson.loads(cp_path.read_bytes()))
    report = rejects_path_for(cp_path)
    full = report.read_bytes()

    # Rewind the checkpoint to after the first chunk while the report keeps every line.
    first_chunk_lines = [line for line in full.splitlines() if orjson.loads(line)["row"] <= 300]
    saved.rows_done = 300
    saved.counts = {"rejected": len(first_chunk_lines)}
    saved.rejects_bytes = sum(len(line) + 1 for line in first_chunk_lines)
    saved.save(cp_path)

    cp = asyncio.run(import_file(connector, data, _publisher(None), cp_path, chunk=300))
    rows = _rows(report)
    assert len(rows) == len(set(rows)) == expected["invalid"] == cp.counts["rejected"]
    assert report.read_bytes() == full


def test_a_fresh_import_starts_a_fresh_report(tmp_path: Path) -> None:
    """`--restart` (checkpoint removed) must not append to an old report."""
    data = tmp_path / "gongdan.csv"
    expected = write_12345_export(data, ROWS, bad_every=100)
    cp_path = tmp_path / "cp.json"
    connector = registry.build("tabular", MAPPING)
    asyncio.run(import_file(connector, data, _publisher(None), cp_path, chunk=300))
    cp_path.unlink()
    asyncio.run(import_file(connector, data, _publisher(None), cp_path, chunk=300))
    assert len(_rows(rejects_path_for(cp_path))) == expected["invalid"]
