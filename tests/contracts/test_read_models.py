"""The read-model port's contract (``hub.views.ReadModels``), run against every implementation.

The API asks the same questions of the live read models and of the city as it stood at a moment
(``asOf``): the one-screen overview, the case list and its search, a case's detail. For one
history, the live read models (``ProjectionService.views``), an as-of snapshot at the log's end
(by position, and by a time after the last record) and the API's shared rewind at the log's end
must answer them alike, and as the domain's own fold of that history has them
(``tests.projection_history.oracle_case``). An as-of (snapshot or rewind) at an earlier position
answers as the live read models of only the log up to there would, and shows each case at the
stage it had then.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from hub.domain import Case
from hub.views import CaseFilter, CaseRow, ReadModels, Scope, Window
from ops.bootstrap import build_ledger
from projections import ProjectionService
from tests.projection_history import City, oracle_case, random_city


@dataclass
class History:
    """One random city recorded in a store, its live read models, and a replay up to ``earlier``."""

    city: City
    live: ProjectionService
    end: int
    earlier: dict[str, int]
    """Earlier positions by name: while the cases are being reported, and half way through the log."""
    until: dict[str, ProjectionService]
    """Per earlier position, the live read models of only the log up to there (the as-of reference)."""
    case_at: dict[int, UUID]
    """Position → the case its event belongs to."""
    now: datetime
    """The moment every query asks about (overdue depends on it)."""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    tmp = tmp_path_factory.mktemp("read-models")
    ledger = build_ledger(f"sqlite:///{tmp / 'events.sqlite'}")
    city = random_city(ledger, seed=16, n_cases=20, n_steps=700, saves=10)
    notes = ledger.recorder.select_notifications(start=1, limit=100_000)
    end = notes[-1].id
    earlier = {"reporting": notes[len(city.cases) // 2].id, "half way": notes[len(notes) // 2].id}
    live = ProjectionService(tmp / "live.duckdb", ledger.recorder, batch_size=64)
    until = {
        name: ProjectionService(tmp / f"until-{position}.duckdb", ledger.recorder, batch_size=64)
        for name, position in earlier.items()
    }
    try:
        live.catch_up()
        for name, service in until.items():
            service.catch_up(until=earlier[name])
        yield History(
            city, live, end, earlier, until,
            case_at={n.id: n.originator_id for n in notes}, now=city.now + timedelta(days=1),
        )  # fmt: skip
    finally:
        for service in (live, *until.values()):
            service.close()
        ledger.close()


@pytest.fixture(params=["live", "as-of-position", "as-of-time", "rewind"])
def read_models(request: pytest.FixtureRequest, history: History) -> Iterator[ReadModels]:
    """Every implementation of the port, at the end of the log."""
    views = history.live.views
    if request.param == "live":
        yield views
    elif request.param == "as-of-position":
        with views.as_of(position=history.end) as snapshot:
            yield snapshot
    elif request.param == "as-of-time":  # a moment after the last record: the whole log
        with views.as_of(time=datetime.now(UTC) + timedelta(days=1)) as snapshot:
            yield snapshot
    else:  # the API's shared, cached rewind (closed with the live read models)
        yield views.rewind(position=history.end)


@pytest.fixture(params=["as-of", "rewind"])
def earlier(request: pytest.FixtureRequest, history: History, when: str) -> Iterator[ReadModels]:
    """The as-of implementations at the earlier position ``when``."""
    views = history.live.views
    if request.param == "rewind":
        yield views.rewind(position=history.earlier[when])
        return
    with views.as_of(position=history.earlier[when]) as snapshot:
        yield snapshot


# ---------------------------------------------------------------------------------- the answers
def _all_cases(views: ReadModels, now: datetime, **kw: Any) -> list[CaseRow]:
    """Every case the search finds, page after page (pages of 7: several cursors)."""
    rows: list[CaseRow] = []
    cursor: str | None = None
    while True:
        page = views.cases(limit=7, cursor=cursor, now=now, **kw)
        rows.extend(page.rows)
        cursor = page.next_cursor
        if cursor is None:
            return rows


def _searches(views: ReadModels, now: datetime) -> dict[str, Any]:
    """The case-list questions the API asks, by name."""
    return {
        "all": views.cases(limit=1000, now=now),
        "paged": _all_cases(views, now),
        "open": _all_cases(views, now, open_only=True),
        "stage registered": views.cases(stage="registered", limit=1000, now=now),
        "stage dispatched": views.cases(stage="dispatched", limit=1000, now=now),
        "text c1": views.cases(limit=1000, now=now, where=CaseFilter(text="c1")),
        "category 01009": views.cases(limit=1000, now=now, where=CaseFilter(category="01009")),
        "overdue": views.cases(limit=1000, now=now, where=CaseFilter(overdue=True)),
        "escalated": views.cases(limit=1000, now=now, where=CaseFilter(escalated=True)),
        "department water": views.cases(limit=1000, now=now, scope=Scope(department="water")),
    }


def _overviews(views: ReadModels, now: datetime, since: datetime) -> dict[str, Any]:
    district = Scope(grid="320105")
    return {
        "city": views.overview(now=now),
        "district": views.overview(scope=district, now=now),
        "department": views.overview(scope=Scope(department="police"), now=now),
        "window": views.overview(window=Window(since=since, until=since + timedelta(days=1)), now=now),
    }


_DETAIL = ("stage", "category", "priority", "grid", "reported_at", "closed_at", "escalations", "version")


def _as_the_domain_has_it(row: CaseRow, case: Case) -> None:
    expected = oracle_case(case)
    got = {"responsible_departments": sorted(row.responsible_departments)} | {
        k: getattr(row, k) for k in _DETAIL
    }
    assert got == {k: expected[k] for k in got}, case.caseref


# ------------------------------------------------------------------------------------ the cases
def test_it_is_the_port_at_the_end_of_the_log(read_models: ReadModels, history: History) -> None:
    assert isinstance(read_models, ReadModels)
    assert read_models.position() == history.end == history.live.views.position()


def test_case_detail_as_the_domain_has_it(read_models: ReadModels, history: History) -> None:
    live = history.live.views
    for case in history.city.cases:
        row = read_models.case(case.id, now=history.now)
        assert row is not None, case.caseref
        _as_the_domain_has_it(row, case)
        assert row == live.case(case.id, now=history.now)
        assert read_models.timeline(case.id) == live.timeline(case.id)
        assert read_models.links(case.id) == live.links(case.id)
    assert read_models.case(uuid4(), now=history.now) is None


def test_the_case_list_newest_first_every_page_and_every_search(
    read_models: ReadModels, history: History
) -> None:
    answers = _searches(read_models, history.now)
    everything = answers["all"].rows
    assert answers["all"].next_cursor is None
    assert {r.case_id for r in everything} == {c.id for c in history.city.cases}
    assert list(everything) == sorted(everything, key=lambda r: (r.reported_at, r.case_id), reverse=True)
    assert answers["paged"] == list(everything)
    assert [r.caseref for r in answers["text c1"].rows] == [
        r.caseref for r in everything if "c1" in r.caseref.lower()
    ]
    assert answers["text c1"].rows, "the search finds C1 and C10…C19"
    for stage in ("registered", "dispatched"):
        assert answers[f"stage {stage}"].rows == tuple(r for r in everything if r.stage == stage)
    assert answers == _searches(history.live.views, history.now)


def test_the_overview_counts_every_case(read_models: ReadModels, history: History) -> None:
    answers = _overviews(read_models, history.now, since=history.city.cases[0].reported_at)
    city = answers["city"]
    assert city.position == history.end
    assert city.totals.reported == len(history.city.cases)
    assert sum(k.cases for k in city.by_stage) == len(history.city.cases)
    assert answers == _overviews(history.live.views, history.now, since=history.city.cases[0].reported_at)


@pytest.mark.parametrize("when", ["reporting", "half way"])
def test_as_of_an_earlier_position_shows_the_earlier_state(
    earlier: ReadModels, history: History, when: str
) -> None:
    """As the live read models of the log up to there, and each case at the stage it had then."""
    position = history.earlier[when]
    assert earlier.position() == position
    reference = history.until[when].views
    now, since = history.now, history.city.cases[0].reported_at
    assert _overviews(earlier, now, since) == _overviews(reference, now, since)
    assert _searches(earlier, now) == _searches(reference, now)
    stage_then: dict[UUID, str] = {}
    for p in sorted(p for p in history.city.stage_after if p <= position):
        stage_then[history.case_at[p]] = history.city.stage_after[p]
    changed = 0
    for case in history.city.cases:
        row = earlier.case(case.id, now=now)
        if case.id not in stage_then:
            assert row is None, f"{case.caseref} was reported after position {position}"
            continue
        assert row is not None and row.stage == stage_then[case.id], case.caseref
        assert row == reference.case(case.id, now=now)
        changed += row.stage != case.stage.value
    assert changed, "no case changed after the earlier position: the history does not test as-of"
    assert earlier.overview(now=now).totals.reported == len(stage_then)
    if when == "reporting":
        assert len(stage_then) < len(history.city.cases), "all reported: the history does not test as-of"
