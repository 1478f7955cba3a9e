"""Case.trigger_event builds the same events as the library's generic path, only cheaper."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from eventsourcing.domain import Aggregate, ProgrammingError

from hub.domain.case import Case


def _closed_case() -> Case:
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    common = {"actor": "u1", "department": "citymgmt"}
    case = Case.report(
        uuid4(), event_id="e0", at=at, source="dcm", caseref="R1", kind="case", category="01",
        title="井盖缺失", **common,
    )  # fmt: skip
    case.register(event_id="e1", at=at + timedelta(minutes=1), **common)
    case.dispatch(event_id="e2", at=at + timedelta(minutes=2), departments=["water"], **common)
    case.accept(event_id="e3", at=at + timedelta(minutes=3), actor="u2", department="water")
    case.handle(event_id="e4", at=at + timedelta(minutes=4), actor="u2", department="water", note="修好")
    case.verify(event_id="e5", at=at + timedelta(minutes=5), passed=True, **common)
    case.close(event_id="e6", at=at + timedelta(minutes=6), **common)
    return case


def test_events_equal_the_ones_their_constructor_builds_field_for_field_in_order() -> None:
    case = _closed_case()
    events = case.collect_events()
    assert [e.originator_version for e in events] == list(range(1, 8))
    for event in events[1:]:  # the first is Reported, created by the library's own _create
        cls = type(event)
        names = [f.name for f in dataclasses.fields(cls)]
        assert list(event.__dict__) == names  # same order: transcodes to the same bytes
        assert cls(**event.__dict__) == event
        assert event.originator_id == case.id and event.timestamp.tzinfo is not None
    assert case.version == 7 and case.modified_on == events[-1].timestamp


def test_replaying_the_events_rebuilds_the_same_case() -> None:
    case = _closed_case()
    events = case.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Case)
    assert replayed.__dict__.keys() == case.__dict__.keys()
    assert (replayed.stage, replayed.version, replayed.applied) == (case.stage, case.version, case.applied)


def test_wrong_arguments_and_the_base_event_are_refused_like_the_library_does() -> None:
    case = _closed_case()
    case.collect_events()
    with pytest.raises(TypeError, match="missing argument"):
        case.trigger_event(Case.Evaluated, event_id="x", at=case.updated_at, actor="u", department="d")
    with pytest.raises(TypeError, match="unexpected arguments"):
        case.trigger_event(
            Case.Closed, event_id="x", at=case.updated_at, actor="u", department="d", note="", bogus=1
        )
    with pytest.raises(TypeError, match="not a concrete event"):
        case.trigger_event(Case.Event, event_id="x", at=case.updated_at, actor="u", department="d")
    with pytest.raises(TypeError, match="not a concrete event"):
        case.trigger_event(Aggregate.Event)
    assert case.version == 7 and not case.collect_events()  # nothing half-applied


def test_an_unregistered_topic_is_a_programming_error() -> None:
    class Stray(Case.Event):
        TOPIC = "citybrain.case.stray-never-registered.v1"

    with pytest.raises(ProgrammingError, match="not registered"):
        _closed_case().trigger_event(Stray, event_id="x", at=datetime.now(UTC), actor="u", department="d")


def test_a_report_equals_the_one_the_library_creates() -> None:
    """``Case._create`` (the lean path of every report) against the library's own ``_create``."""
    from eventsourcing.utils import get_topic

    assert get_topic(Case) == Case.TOPIC  # what the lean path records as the originator topic
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    kwargs = {
        "id": uuid4(), "timestamp": at, "event_id": "e0", "at": at, "actor": "u1",
        "department": "citymgmt", "source": "dcm", "caseref": "R1", "kind": "case", "category": "01",
        "title": "井盖缺失", "description": "", "priority": "normal", "channel": "hotline", "grid": "g1",
        "location": {"lon": 120.1, "lat": 30.2}, "reporter": {"name": "张三"}, "attachments": ["a.jpg"],
        "due": at + timedelta(hours=2),
    }  # fmt: skip
    lean = Case._create(Case.Reported, **kwargs)
    library = super(Case, Case)._create(Case.Reported, **kwargs)
    (lean_event,), (library_event,) = lean.collect_events(), library.collect_events()
    assert list(lean_event.__dict__) == list(library_event.__dict__)
    assert lean_event == library_event
    assert lean.__dict__ == library.__dict__
    assert lean_event.mutate(None).__dict__ == lean.__dict__  # replay (the library's path) agrees
    with pytest.raises(TypeError, match="unexpected"):
        Case._create(Case.Reported, **kwargs, bogus=1)
    with pytest.raises(TypeError, match="missing"):
        Case._create(Case.Reported, **{k: v for k, v in kwargs.items() if k != "title"})
