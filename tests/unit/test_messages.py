"""The connector contract: every rejection names the field and the rule; ids are deterministic."""

from __future__ import annotations

import uuid

import msgspec
import orjson
import pytest

from hub import messages as m
from hub.adapters.config.loading import load_catalogue
from tests.factories import event

CATALOGUE = load_catalogue()


def check(e: dict[str, object] | bytes, subject: str | None = None) -> m.Valid | m.Invalid:
    return m.validate(e if isinstance(e, bytes) else orjson.dumps(e), CATALOGUE, subject)


def test_a_canonical_event_is_valid_and_routed() -> None:
    result = check(event("C-1", m.Action.REPORTED))
    assert isinstance(result, m.Valid)
    assert result.envelope.nats_subject == "city.citymgmt.case.reported"
    assert result.case_id == m.case_id_for("citymgmt-dcm", "C-1")
    assert isinstance(result.payload, m.Reported) and result.payload.reporter.name == "张三"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mutate", "reason", "field", "rule"),
    [
        (lambda e: e.pop("id"), "schema", "id", "field required"),
        (lambda e: e.update(time="2026-03-02T08:00:00"), "schema", "time", "timezone"),
        (lambda e: e.update(specversion="0.3"), "schema", "specversion", "Invalid enum value '0.3'"),
        (lambda e: e.update(type="case.teleported"), "schema", "type", "unknown action 'teleported'"),
        (lambda e: e["data"].pop("title"), "schema", "data.title", "field required"),
        (lambda e: e["data"].update(priority="asap"), "schema", "data.priority", "Invalid enum value 'asap'"),
        (lambda e: e["data"].update(titel="typo"), "schema", "data.titel", "unknown field"),
        (lambda e: e["data"]["location"].update(lon=500), "schema", "data.location.lon", "<= 180"),
        (
            lambda e: e.update(department="fire"),
            "unknown_department",
            "department",
            "'fire' is not configured",
        ),
        (lambda e: e.update(type="bogus.reported"), "unknown_type", "type", "no record kind 'bogus'"),
    ],
)
def test_rejections_name_the_field_and_the_rule(mutate, reason, field, rule) -> None:  # type: ignore[no-untyped-def]
    e = event("C-1", m.Action.REPORTED)
    mutate(e)
    result = check(e)
    assert isinstance(result, m.Invalid)
    assert (result.reason.value, result.field) == (reason, field)
    assert rule in result.detail


def test_invalid_json_and_wrong_subject() -> None:
    broken = check(b'{"id": ')
    assert isinstance(broken, m.Invalid) and broken.reason is m.Reason.INVALID_JSON
    moved = check(event("C-1", m.Action.REPORTED), subject="city.police.case.reported")
    assert isinstance(moved, m.Invalid) and moved.reason is m.Reason.SUBJECT_MISMATCH
    assert "city.citymgmt.case.reported" in moved.detail


def test_operator_commands_must_name_the_case() -> None:
    cmd = event("C-1", m.Action.REGISTERED, department="command", source="hub-command")
    result = check(cmd)
    assert isinstance(result, m.Invalid) and result.field == "caseid"
    target = uuid.uuid4()
    ok = check(event("C-1", m.Action.REGISTERED, department="command", source="hub-command", caseid=target))
    assert isinstance(ok, m.Valid) and ok.case_id == target


def test_case_id_is_deterministic_and_source_scoped() -> None:
    assert m.case_id_for("police-110", "A1") == m.case_id_for("police-110", "A1")
    assert m.case_id_for("police-110", "A1") != m.case_id_for("citymgmt-dcm", "A1")
    assert m.case_id_for("police-110", "A1") == uuid.uuid5(m.CASE_NAMESPACE, "police-110\x1fA1")


def test_json_schemas_cover_every_action() -> None:
    schemas = m.json_schemas()
    assert set(schemas["data"]) == {a.value for a in m.Action}
    assert "caseref" in orjson.dumps(schemas["envelope"]).decode()


def test_the_writer_wire_form_rebuilds_the_validated_event_exactly() -> None:
    """The store writer rebuilds events from ``WireEvent``: same envelope, payload, case id, offset."""
    catalogue = load_catalogue()
    raw = event("W-1", m.Action.REPORTED)
    raw["time"] = "2026-03-02T08:00:00.123456+08:00"
    raw["grid"] = "G1"
    cases = [raw, event("W-1", m.Action.DISPATCHED, n=2)]
    for e in cases:
        valid = m.validate(orjson.dumps(e), catalogue)
        assert isinstance(valid, m.Valid)
        wire = m.to_wire(valid)
        back = m.from_wire(msgspec.msgpack.decode(msgspec.msgpack.encode(wire), type=m.WireEvent))
        assert back.envelope == valid.envelope
        assert back.envelope.time.utcoffset() == valid.envelope.time.utcoffset()
        assert back.payload == valid.payload
        assert back.case_id == valid.case_id
