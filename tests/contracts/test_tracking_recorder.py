"""The DuckDB tracking recorder honours eventsourcing's own TrackingRecorder contract."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.tests import persistence as es

from projections import DuckDBTrackingRecorder, ReadModelStore, to_arrow
from projections.store import BATCH_SCHEMA


class TestDuckDBTrackingRecorder(es.TrackingRecorderTestCase):
    def create_recorder(self) -> DuckDBTrackingRecorder:
        return DuckDBTrackingRecorder()


class TestReadModelStoreTracking(es.TrackingRecorderTestCase):
    """The store that holds the read models is itself the tracking recorder (same transactions)."""

    def create_recorder(self) -> ReadModelStore:
        return ReadModelStore()


def test_a_batch_applied_twice_is_refused_and_changes_nothing() -> None:
    store = ReadModelStore()
    state = (
        b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-03-02T08:00:00+00:00"},"event_id":"e1",'
        b'"at":{"_type_":"datetime_iso","_data_":"2026-03-02T08:00:00+00:00"},"actor":"a","department":"d",'
        b'"source":"s","caseref":"c","kind":"case","category":"01","title":"t","priority":"normal",'
        b'"channel":"x","grid":null,"location":null,"reporter":null,"attachments":[],"due":null}'
    )

    class N:
        id, originator_id, originator_version, topic = (
            7,
            "5f0e0e2a-8d4b-4d55-9d0e-6c8c2f7b1a11",
            1,
            ("citybrain.case.reported.v1"),
        )

    N.state = state  # type: ignore[attr-defined]
    batch = to_arrow([N])  # type: ignore[list-item]
    assert batch.schema == BATCH_SCHEMA
    assert store.fold_batch(batch, "CityHub") == 1
    with pytest.raises(IntegrityError):
        store.fold_batch(batch, "CityHub")
    assert store.counts()["events"] == 1
    assert store.max_tracking_id("CityHub") == 7
    with pytest.raises(IntegrityError):
        store.insert_tracking(Tracking("CityHub", 6))
