"""Case-keyed partitions (ADR 0006): the case key, its partition, and which worker pulls what.

The partition values below were read back from nats-server 2.15.1 (a ``CITY`` stream with the
hub's subject transform, ``city.a.b.c.<key>`` stored as ``city.a.b.c.<partition>``); the
integration test of three workers checks the same against the live server for every stored event.
"""

from __future__ import annotations

import uuid
from collections import Counter

import orjson
import pytest

from connectors.publisher import route
from hub import messages as m
from hub.adapters.config.loading import load_catalogue
from hub.intake import (
    DURABLE,
    LEGACY_FILTERS,
    PARTITION_TRANSFORM,
    IntakeSettings,
    StreamSettings,
    assigned_partitions,
    city_stream_config,
)
from tests.factories import case_history, event

CATALOGUE = load_catalogue()


def test_the_case_key_is_the_case_ids_first_eight_hex_digits() -> None:
    case_id = m.case_id_for("citymgmt-dcm", "C-1")
    assert m.case_key(case_id) == case_id.hex[:8]
    # Every event of the case has the same key, including an operator command naming the case by id.
    keys = {m.case_key_of(e) for e in case_history("C-1")}
    command = event("C-1", m.Action.VERIFIED, department="command", source="hub-command", caseid=case_id)
    keys.add(m.case_key_of(command))
    assert keys == {case_id.hex[:8]}


def test_events_that_do_not_name_their_case_have_no_key() -> None:
    e = event("C-1", m.Action.REPORTED)
    assert m.case_key_of({**e, "caseref": ""}) is None
    assert m.case_key_of({k: v for k, v in e.items() if k != "source"}) is None
    assert m.case_key_of({**e, "caseid": "not-a-uuid"}) is None


@pytest.mark.parametrize(("key", "partition"), [("0a1b2c3d", 5), ("ffffffff", 9), ("12345678", 5)])
def test_partition_of_mirrors_the_server(key: str, partition: int) -> None:
    assert m.partition_of(key) == partition


def test_the_server_computes_the_partition_from_the_fifth_token() -> None:
    config = city_stream_config(StreamSettings())
    assert config.subjects == ["city.>"]  # the public contract: nothing renamed
    assert config.subject_transform == PARTITION_TRANSFORM
    assert PARTITION_TRANSFORM.src == "city.*.*.*.*"
    # The partition replaces the key: one stored subject per partition, not per case.
    assert PARTITION_TRANSFORM.dest == (
        f"city.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}.{{{{partition({m.PARTITIONS},4)}}}}"
    )


def test_keys_spread_evenly_over_the_partitions() -> None:
    counts = Counter(m.partition_of(m.case_key(m.case_id_for("src", f"C{i}"))) for i in range(12_000))
    assert set(counts) == set(range(m.PARTITIONS))
    assert max(counts.values()) < 1.15 * 1000 and min(counts.values()) > 0.85 * 1000


def test_route_appends_the_case_key_and_falls_back_to_four_tokens() -> None:
    e = event("C-7", m.Action.DISPATCHED)
    key = m.case_key(m.case_id_for("citymgmt-dcm", "C-7"))
    assert route(e) == f"city.citymgmt.case.dispatched.{key}"
    assert route({**e, "caseref": None}) == "city.citymgmt.case.dispatched"
    with pytest.raises(ValueError, match="department"):
        route({**e, "department": ""})


def test_validation_accepts_the_published_and_the_stored_forms_only() -> None:
    e = event("C-1", m.Action.REPORTED)
    raw = orjson.dumps(e)
    key = m.case_key(m.case_id_for("citymgmt-dcm", "C-1"))
    base = "city.citymgmt.case.reported"
    for subject in (base, f"{base}.{key}", f"{base}.{m.partition_of(key)}"):
        assert isinstance(m.validate(raw, CATALOGUE, subject), m.Valid), subject
    wrong_partition = (m.partition_of(key) + 1) % m.PARTITIONS
    for subject in (
        f"{base}.00000000",
        f"{base}.{wrong_partition}",
        f"{base}.{key}.{m.partition_of(key)}",
        f"{base}x.{key}",
        f"{base}.{key}.1.2",
    ):
        result = m.validate(raw, CATALOGUE, subject)
        assert isinstance(result, m.Invalid) and result.reason is m.Reason.SUBJECT_MISMATCH, subject
        assert f"case key .{key}" in result.detail


def test_public_subject_puts_the_case_key_back_in_place_of_the_partition() -> None:
    e = event("C-1", m.Action.REPORTED)
    raw = orjson.dumps(e)
    key = m.case_key(m.case_id_for("citymgmt-dcm", "C-1"))
    stored = f"city.citymgmt.case.reported.{m.partition_of(key)}"
    assert m.public_subject(stored, raw) == f"city.citymgmt.case.reported.{key}"
    # A dead letter that does not name its case (or is not JSON) goes back to its 4-token subject.
    assert m.public_subject(stored, b"{not json") == "city.citymgmt.case.reported"
    assert m.public_subject(stored, orjson.dumps({"source": "x"})) == "city.citymgmt.case.reported"
    # Published forms and anything else are returned as they are.
    assert m.public_subject("city.a.b.c.0a1b2c3d", raw) == "city.a.b.c.0a1b2c3d"
    assert m.public_subject("city.a.b.c", raw) == "city.a.b.c"
    assert m.public_subject("city.a.b.c.d.e", raw) == "city.a.b.c.d.e"


@pytest.mark.parametrize("workers", range(1, m.PARTITIONS + 1))
def test_every_partition_has_exactly_one_worker(workers: int) -> None:
    owned = [assigned_partitions(i, workers) for i in range(workers)]
    flat = [k for share in owned for k in share]
    assert sorted(flat) == list(range(m.PARTITIONS))
    assert all(k % workers == i for i, share in enumerate(owned) for k in share)
    assert max(map(len, owned)) - min(map(len, owned)) <= 1  # as even as 12 / N allows


def test_worker_zero_also_owns_the_legacy_durable() -> None:
    solo = IntakeSettings()  # `hub up`: one worker, every partition
    plan = dict(solo.consumers())
    assert plan[DURABLE] == LEGACY_FILTERS
    assert {d for d in plan if d != DURABLE} == {f"intake-p{k}" for k in range(m.PARTITIONS)}
    assert [d for d, _ in IntakeSettings(worker=1, workers=3).consumers()] == [
        "intake-p1",
        "intake-p4",
        "intake-p7",
        "intake-p10",
    ]
    assert IntakeSettings(worker=0, workers=3).consumers()[0][0] == DURABLE
    # The legacy filters take every subject shape except the partitioned five-token one.
    assert "city.*.*.*" in LEGACY_FILTERS and "city.*.*.*.*" not in LEGACY_FILTERS


@pytest.mark.parametrize(
    ("worker", "workers", "message"),
    [
        (3, 3, "--worker must be between 0 and 2"),
        (-1, 3, "--worker"),
        (0, 0, "--workers"),
        (0, 13, "--workers"),
    ],
)
def test_impossible_worker_numbers_are_refused(worker: int, workers: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IntakeSettings(worker=worker, workers=workers)


def test_case_keys_are_hex_tokens() -> None:
    key = m.case_key(uuid.uuid4())
    assert len(key) == 8 and int(key, 16) >= 0
