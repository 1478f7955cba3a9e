"""Issue 14, the file-import door: ``hub import`` accounts for every row and imports the rest.

One real nats-server for the module; ``hub import`` runs as the CLI does (a subprocess) on a CSV
and a JSONL export holding every poison class (an unterminated quote, bytes that are not UTF-8,
wrong column counts, broken quoting, a far-future time; bad JSON, deep nesting …). Per poison row:
it is in the report with its line number, field and reason. The summary says rows read = accepted +
rejected, and every accepted row's case is stored by the intake. ``HUB_TIME_WINDOW`` reaches the
import too. (It used to say "2 rows, 2 accepted" after an unterminated quote swallowed six rows,
and to import nothing after a traceback on one bad byte.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub import messages as m
from hub.intake import IntakeSettings
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.natsd import EmbeddedNats, free_port
from tests.poison import CSV_EXPECTED_REJECTS, jsonl_poison_lines, write_poison_csv
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "connectors" / "mappings" / "hotline_12345.toml"
CST = timezone(timedelta(hours=8))
JSONL_EXPECTED_REJECTS = {2: "description", 3: "", 5: "time", 6: "x*", 8: ""}  # line → field


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    rejects: list[dict[str, Any]]


@dataclass
class Outcome:
    csv: Run
    jsonl: Run
    windowed: Run
    broken_header: Run
    rows: int
    stored: set[str] = field(default_factory=set)


def _import(url: str, data: Path, tmp: Path, connector: str, env: dict[str, str] | None = None) -> Run:
    cmd = [sys.executable, "-m", "ops.cli", "import", str(data), "--connector", connector,
           "--nats-url", url, "--data-dir", str(tmp / "var"), "--quiet"]  # fmt: skip
    if connector == "tabular":
        cmd += ["--mapping", str(MAPPING)]
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, timeout=180, env={**os.environ, **(env or {})}, check=False
    )
    report = tmp / "var" / "imports" / f"{data.name}.{connector}.checkpoint.rejects.jsonl"
    rejects = [orjson.loads(x) for x in report.read_bytes().splitlines()] if report.exists() else []
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode(), rejects)


async def _stored(url: str, store_url: str, refs: dict[str, str], events: int) -> set[str]:
    nc = await connect_nats(url, "test-import-poison")
    intake, task = await start_intake(nc, store_url, settings=IntakeSettings())
    try:
        await eventually(lambda: intake.stats.applied + intake.stats.duplicates >= events, timeout=120)
    finally:
        intake.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
        await nc.close()
    ledger = build_ledger(store_url)
    found = set()
    for ref, source in refs.items():
        with contextlib.suppress(Exception):
            ledger.get_case(m.case_id_for(source, ref))
            found.add(ref)
    return found


def _broken_header(tmp: Path) -> Path:
    path = tmp / "broken.csv"
    path.write_bytes(b'\xe5\xb7\xa5\xe5\x8d\x95,"[bold]unterminated\nGD1,x\n')
    return path


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    tmp = tmp_path_factory.mktemp("import-poison")
    server = EmbeddedNats(store_dir=tmp / "nats", port=free_port(), server_name=f"imp-{uuid.uuid4().hex[:6]}")
    server.start()
    try:
        csv_file = tmp / "poison.csv"
        rows = write_poison_csv(csv_file)
        jsonl_file = tmp / "steps.jsonl"
        jsonl_file.write_bytes(b"\n".join(jsonl_poison_lines()) + b"\n")
        # A sliding window of one day: the CSV's 2026-03-02 rows are too old, a fresh one is not.
        fresh = (datetime.now(CST) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")  # the mapping's +08:00
        header = csv_file.read_bytes().split(b"\n", 1)[0].decode()
        windowed_file = tmp / "windowed.csv"
        windowed_file.write_text(
            f"{header}\nW1,市容环境,,旧,区城管局,2026-03-02 08:00:00,,,,已受理,一般,118.7,32.0,建邺区\n"
            f"W2,市容环境,,新,区城管局,{fresh},,,,已受理,一般,118.7,32.0,建邺区\n",
            encoding="utf-8",
        )
        out = Outcome(
            csv=_import(server.url, csv_file, tmp, "tabular"),
            jsonl=_import(server.url, jsonl_file, tmp, "citymgmt"),
            windowed=_import(
                server.url,
                windowed_file,
                tmp,
                "tabular",
                {"HUB_TIME_WINDOW": "-1d/+1d", "TZ": "Asia/Shanghai"},
            ),
            broken_header=_import(server.url, _broken_header(tmp), tmp, "tabular"),
            rows=rows,
        )
        refs = {f"GD{n}": "hotline-12345" for n in (1, 3, 5, 8, 10, 12)}
        refs |= {"J1": "citymgmt-dcm", "J5": "citymgmt-dcm", "W2": "hotline-12345"}
        events = 2 * 6 + 2 + 2  # 已受理 rows: reported + registered; JSONL report lines: one each
        out.stored = asyncio.run(_stored(server.url, f"sqlite:///{tmp / 'events.sqlite'}", refs, events))
        return out
    finally:
        server.stop()


def _counts(run: Run) -> dict[str, int]:
    match = re.search(r"(\d+) rows \(([^)]*)\)", run.stdout)
    assert match, run.stdout + run.stderr
    counts = {status: int(n) for n, status in re.findall(r"(\d+) (\w+)", match[2])}
    return {"rows": int(match[1]), **counts}


def test_csv_summary_accounts_for_every_row(outcome: Outcome) -> None:
    assert outcome.csv.returncode == 0, outcome.csv.stderr
    counts = _counts(outcome.csv)
    rejected = len(CSV_EXPECTED_REJECTS)
    assert counts == {"rows": outcome.rows, "accepted": outcome.rows - rejected, "rejected": rejected}
    assert counts["rows"] == counts["accepted"] + counts["rejected"]
    assert "Traceback" not in outcome.csv.stderr


@pytest.mark.parametrize("row", sorted(CSV_EXPECTED_REJECTS))
def test_csv_poison_row_is_reported_with_its_line(outcome: Outcome, row: int) -> None:
    line, field_name, word = CSV_EXPECTED_REJECTS[row]
    report = {r["row"]: r for r in outcome.csv.rejects}
    assert set(report) == set(CSV_EXPECTED_REJECTS)
    assert (report[row]["line"], report[row]["field"]) == (line, field_name), report[row]
    assert word in report[row]["error"], report[row]
    assert f"row {row} (line {line})" in outcome.csv.stderr  # on screen too


@pytest.mark.parametrize("line", sorted(JSONL_EXPECTED_REJECTS))
def test_jsonl_poison_line_is_reported(outcome: Outcome, line: int) -> None:
    assert outcome.jsonl.returncode == 0, outcome.jsonl.stderr
    assert _counts(outcome.jsonl) == {"rows": 7, "accepted": 2, "rejected": 5}
    report = {r["line"]: r for r in outcome.jsonl.rejects}
    expected = JSONL_EXPECTED_REJECTS[line]
    got = report[line]["field"]
    assert got.startswith(expected[:-1]) if expected.endswith("*") else got == expected, report[line]
    assert report[line]["error"]


def test_hub_time_window_reaches_the_import(outcome: Outcome) -> None:
    assert outcome.windowed.returncode == 0, outcome.windowed.stderr
    assert _counts(outcome.windowed) == {"rows": 2, "accepted": 1, "rejected": 1}
    [reject] = outcome.windowed.rejects
    assert (reject["row"], reject["field"]) == (1, "受理时间") and "-1d/+1d" in reject["error"]


def test_every_accepted_row_is_stored(outcome: Outcome) -> None:
    assert outcome.stored == {"GD1", "GD3", "GD5", "GD8", "GD10", "GD12", "J1", "J5", "W2"}


def test_a_file_whose_header_cannot_be_read_is_refused_clearly(outcome: Outcome) -> None:
    run = outcome.broken_header
    assert run.returncode == 2, run.stdout + run.stderr
    assert "header (line 1) cannot be read" in run.stderr and "Traceback" not in run.stderr
