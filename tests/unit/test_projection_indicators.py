"""Indicators on a small city whose expected values are computed by hand (see the comments)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid5

import pytest

from hub.domain import Case
from hub.views import Scope, Window
from ops.bootstrap import build_ledger
from projections import ProjectionService
from tests.projection_history import NS, T0, HoursSla

SLA = HoursSla()  # reported 2h, registered 4h, dispatched 6h, accepted 24h, handled 8h, verified 8h
NOW = T0 + timedelta(hours=48)
WINDOW = Window(T0, T0 + timedelta(hours=72))


def _case(name: str, kind: str, grid: str | None, steps: list[tuple[str, float, dict[str, Any]]]) -> Case:
    n = 0

    def kw(hours: float, department: str = "command") -> dict[str, Any]:
        nonlocal n
        n += 1
        return {
            "event_id": f"{name}-{n}",
            "at": T0 + timedelta(hours=hours),
            "actor": "op",
            "department": department,
        }

    case = Case.report(
        uuid5(NS, name), **kw(0, "citymgmt"), source="dcm", caseref=name, kind=kind, category="01001",
        title="t", grid=grid, sla=SLA,
    )  # fmt: skip
    for command, hours, extra in steps:
        dept = extra.pop("as", "command")
        method = getattr(case, "return_" if command == "return" else command)
        if command in ("register", "dispatch", "accept", "handle", "verify", "resume"):
            extra["sla"] = SLA
        method(**kw(hours, dept), **extra)
    return case


def _loop(dept: str, close_at: float, handle_at: float = 4, verify_at: float = 5) -> list[Any]:
    return [
        ("register", 1, {}), ("dispatch", 2, {"departments": [dept]}), ("accept", 3, {"as": dept}),
        ("handle", handle_at, {"as": dept}), ("verify", verify_at, {"passed": True}), ("close", close_at, {}),
    ]  # fmt: skip


@pytest.fixture()
def city(tmp_path: Path) -> Iterator[ProjectionService]:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    g1, g2 = "320105001001", "320105002001"
    cases = [
        # C1: closed on time after 6 h (立案 1h → 结案 7h), citizen score 5
        _case("C1", "case", g1, [*_loop("water", 7, 5, 6), ("evaluate", 8, {"score": 5})]),
        # C2: rework (核查不通过 at 5h, new 处置 deadline 5+24 = 29h), handled again only at 40h →
        #     one overrun; closed at 42h (41 h after 立案), citizen score 3
        _case(
            "C2",
            "case",
            g1,
            [
                ("register", 1, {}),
                ("dispatch", 2, {"departments": ["power"]}),
                ("accept", 3, {"as": "power"}),
                ("handle", 4, {"as": "power"}),
                ("verify", 5, {"passed": False}),
                ("handle", 40, {"as": "power"}),
                ("verify", 41, {"passed": True}),
                ("close", 42, {}),
                ("evaluate", 43, {"score": 3}),
            ],
        ),
        # C3: dispatched at 2h (due 8h), never accepted: open and overdue at 48h
        _case("C3", "case", g1, [("register", 1, {}), ("dispatch", 2, {"departments": ["water"]})]),
        # C4: mediation closed on time (9 h after 立案): a success
        _case("C4", "mediation", g2, _loop("courts", 10)),
        # C5: mediation rejected (不予立案) at 1h: concluded without success, never registered
        _case("C5", "mediation", None, [("reject", 1, {"reason": "不属于调解范围"})]),
        # C6: anti-fraud warning closed (dissuaded) 4 h after 立案
        _case(
            "C6",
            "fraud_warning",
            None,
            [
                ("register", 1, {}),
                ("dispatch", 2, {"departments": ["police"]}),
                ("accept", 2, {"as": "police"}),
                ("handle", 3, {"as": "police"}),
                ("verify", 4, {"passed": True}),
                ("close", 5, {}),
            ],
        ),
    ]
    ledger.recorder.insert_events(
        [ledger.mapper.to_stored_event(e) for c in cases for e in c.collect_events()]
    )
    service = ProjectionService(tmp_path / "views.duckdb", ledger.recorder, batch_size=7)
    service.catch_up()
    yield service
    service.close()


def test_indicators_match_hand_computed_values(city: ProjectionService) -> None:
    got = {i.key: i for i in city.views.indicators(Scope(), WINDOW, NOW)}
    assert all(i.version == 1 for i in got.values())
    expected = {
        "registered": 5,  # C1 C2 C3 C4 C6 (C5 was rejected, never 立案)
        "closed": 4,  # C1 C2 C4 C6
        "closure_rate": 4 / 5,
        "on_time_closure_rate": 3 / 4,  # C2 overran its 处置 deadline
        "rework_rate": 1 / 4,  # handled: C1 C2 C4 C6; reworked: C2
        "overdue_rate": 2 / 5,  # C2 (overran), C3 (open past due at 48h)
        "handling_hours_mean": (6 + 41 + 9 + 4) / 4,
        "handling_hours_median": (6 + 9) / 2,
        "satisfaction_mean": (5 + 3) / 2,
        "satisfaction_rate": 1 / 2,
        "mediation_success_rate": 1 / 2,  # C4 closed, C5 rejected
        "fraud_dissuasion_rate": 1.0,
    }
    assert {k: got[k].value for k in expected} == pytest.approx(expected)
    assert got["closure_rate"].numerator == 4 and got["closure_rate"].denominator == 5
    assert got["closure_rate"].name == "结案率"


def test_board_rollups_lists_and_scopes(city: ProjectionService) -> None:
    views = city.views
    board = views.board(now=NOW)
    assert (board.total_cases, board.open_cases, board.overdue_open) == (6, 1, 1)
    assert {s.stage: s.cases for s in board.by_stage} == {
        "evaluated": 2,
        "closed": 2,
        "dispatched": 1,
        "rejected": 1,
    }
    # the grid tree: 320105 (district) ⊃ 320105001 / 320105002 (streets) ⊃ grids
    district = {r.key: r for r in views.rollup("grid", level=0, now=NOW)}
    assert district["320105"].total == 4 and district["320105"].open == 1 and district["320105"].closed == 3
    streets = {r.key: r.total for r in views.rollup("grid", level=1, now=NOW)}
    assert streets == {"320105001": 3, "320105002": 1}
    assert [c.caseref for c in views.overdue(now=NOW)] == ["C3"]
    assert views.board(Scope(grid="320105002"), now=NOW).total_cases == 1
    assert views.board(Scope(department="water"), now=NOW).total_cases == 2  # C1, C3 responsible
    # before C3's dispatch deadline (8h) nothing is overdue yet
    assert views.board(now=T0 + timedelta(hours=7)).overdue_open == 0
    hot = views.hotspots(WINDOW, level=1)
    assert (hot[0].grid, hot[0].category, hot[0].cases) == ("320105001", "01001", 3)
    page1 = views.cases(limit=4)
    page2 = views.cases(limit=4, cursor=page1.next_cursor)
    assert len(page1.rows) == 4 and len(page2.rows) == 2 and page2.next_cursor is None
    assert {r.case_id for r in page1.rows}.isdisjoint({r.case_id for r in page2.rows})
    c2 = next(r for r in page1.rows + page2.rows if r.caseref == "C2")
    assert (c2.reworks, c2.overruns, c2.overdue, c2.satisfaction) == (1, 1, True, 3)
    assert [e.stage_after for e in views.timeline(c2.case_id)] == [
        "reported", "registered", "dispatched", "accepted", "handled",
        "accepted", "handled", "verified", "closed", "evaluated",
    ]  # fmt: skip
