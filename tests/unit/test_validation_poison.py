"""Issue 14, the edge: validation never raises, whatever the bytes, and names the field at fault.

Property tests (hypothesis) feed arbitrary bytes, arbitrary text, arbitrary JSON and events whose
envelope is mostly right but whose data, times and strings are random; each must come back as Valid
or Invalid, and what follows a verdict (the dead letter's headers, the subject it is filed under, the
wire form a Valid event travels in) must not raise either. Then every poison class of tests/poison.py,
the plausible-time window and its setting, and the per-row CSV/JSONL reader of ``hub import``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import registry
from connectors.base import PublishResult
from connectors.importer import import_file, read_numbered, rejects_path_for
from hub import messages as m
from hub.adapters.config.loading import load_catalogue
from ops.settings import SettingsError, time_window
from tests.factories import event
from tests.poison import (
    CSV_EXPECTED_REJECTS,
    NOW,
    POISONS,
    field_matches,
    jsonl_poison_lines,
    write_poison_csv,
)

CATALOGUE = load_catalogue()
MAPPING = Path(__file__).parents[2] / "connectors" / "mappings" / "hotline_12345.toml"


def _after_verdict(raw: bytes | str, verdict: m.Valid | m.Invalid) -> None:
    """What the intake does next with a verdict must not raise either."""
    assert isinstance(verdict, m.Valid | m.Invalid)
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    m.public_subject("city.citymgmt.case.reported.3", data)
    if isinstance(verdict, m.Invalid):
        for header in (verdict.field, verdict.detail, str(verdict)):
            assert "\r" not in header and "\n" not in header
            header.encode("utf-8")  # a NATS header value: must encode
        return
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(m.to_wire(verdict)), type=m.WireEvent)
    again = m.from_wire(wire)
    assert again.case_id == verdict.case_id
    assert again.envelope.time.astimezone(UTC)  # the store converts it: no year 10000
    orjson.dumps(m.payload_dict(verdict.payload))


def check(raw: bytes | str, subject: str | None = None) -> m.Valid | m.Invalid:
    verdict = m.validate(raw, CATALOGUE, subject)
    _after_verdict(raw, verdict)
    return verdict


# --------------------------------------------------------------------------- properties
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)
TYPES = [f"case.{a.value}" for a in m.Action] + ["incident.reported", "case.teleported", "x", ""]
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.just(UTC), min_value=datetime(2020, 1, 1)).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T23:00:00-08:00", "0001-01-01T00:00:00+08:00", "2026-03-02", ""]),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check(raw)
    check(raw, "city.citymgmt.case.reported")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None), max_size=200))  # lone surrogates included
def test_arbitrary_text_never_raises(raw: str) -> None:
    check(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    check(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS) if _encodable(value) else b"null")


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits: orjson cannot write them
        return False
    return True


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    type_=st.sampled_from(TYPES),
    when=times,
    data=st.one_of(json_values, st.dictionaries(st.sampled_from(["title", "category", "until",
        "deadline", "location", "score", "departments", "note", "reason", "passed"]), json_values)),
    garble=st.one_of(st.none(), st.binary(min_size=1, max_size=6)),
    depth=st.sampled_from([0, 0, 0, 3, 100, 3000]),
)  # fmt: skip
def test_mostly_valid_envelopes_with_random_data_never_raise(
    type_: str, when: str, data: Any, garble: bytes | None, depth: int
) -> None:
    e = event("R-1", m.Action.REPORTED)
    e.update(type=type_, time=when, data=data)
    raw = orjson.dumps(e, option=orjson.OPT_NON_STR_KEYS) if _encodable(e) else orjson.dumps(e | {"data": {}})
    if garble is not None:  # random bytes inside a string: invalid UTF-8, NUL, quotes, backslashes
        raw = raw.replace(b"R-1", b"R-" + garble, 1)
    if depth:
        raw = raw.replace(b'"data":', b'"data":' + b"[" * depth + b"0" + b"]" * depth + b',"d2":', 1)
    check(raw)
    check(raw, "city.citymgmt." + type_)


def test_a_valid_event_stays_valid() -> None:
    """The hardening must not refuse what was fine: a plain report at a recent time is Valid."""
    assert isinstance(check(orjson.dumps(event("OK-1", m.Action.REPORTED, at=NOW))), m.Valid)


# --------------------------------------------------------------------------- every poison class
@pytest.mark.parametrize(
    ("subject", "raw", "reason", "field"), [p[1:] for p in POISONS], ids=[p[0] for p in POISONS]
)
def test_every_poison_is_invalid_naming_its_field(subject: str, raw: bytes, reason: str, field: str) -> None:
    verdict = check(raw, subject)
    assert isinstance(verdict, m.Invalid), verdict
    assert verdict.reason == reason, verdict
    assert field_matches(field, verdict.field), verdict
    assert len(verdict.detail) >= 10  # says what was wrong (the rule broken, mostly what to do)


def test_the_issue_example_as_text_and_bytes() -> None:
    """`{"id":"x","data":{"t":"\\xff"}}` used to raise UnicodeDecodeError and end `hub up`."""
    verdict = check(b'{"id":"x","data":{"t":"\xff"}}')
    assert isinstance(verdict, m.Invalid) and verdict.field == "data.t"
    assert "UTF-8" in verdict.detail
    text = check('{"id":"x","data":{"t":"\ud800"}}')
    assert isinstance(text, m.Invalid) and text.reason == "invalid_encoding"


# --------------------------------------------------------------------------- the time window
def test_time_window_grammar() -> None:
    default = m.TimeWindow.parse("1970-01-01/+1d")
    assert default == m.DEFAULT_TIME_WINDOW
    sliding = m.TimeWindow.parse("-400d/+1h/+90d")
    assert (sliding.start_ago, sliding.ahead, sliding.deadline_ahead) == (400 * 86400, 3600, 90 * 86400)
    fixed = m.TimeWindow.parse("2020-01-01T00:00:00+08:00/+10m")
    assert fixed.start == datetime(2019, 12, 31, 16, tzinfo=UTC).timestamp() and fixed.ahead == 600
    for bad in ("", "1970-01-01", "yesterday/+1d", "1970-01-01/1d", "1970-01-01/-1d", "a/b/c/d", "-1x/+1d"):
        with pytest.raises(ValueError, match="START/AHEAD"):
            m.TimeWindow.parse(bad)


def test_time_window_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_TIME_WINDOW", raising=False)
    assert time_window() is m.DEFAULT_TIME_WINDOW
    monkeypatch.setenv("HUB_TIME_WINDOW", "2000-01-01/+2d")
    assert time_window().ahead == 2 * 86400
    monkeypatch.setenv("HUB_TIME_WINDOW", "soon")
    with pytest.raises(SettingsError, match="HUB_TIME_WINDOW"):
        time_window()


def test_a_configured_window_is_applied() -> None:
    narrow = m.Catalogue(CATALOGUE.kinds, m.TimeWindow.parse("-1h/+1m"))
    old = orjson.dumps(event("W-1", m.Action.REPORTED, at=NOW - timedelta(hours=2)))
    assert isinstance(m.validate(old, CATALOGUE), m.Valid)
    verdict = m.validate(old, narrow)
    assert isinstance(verdict, m.Invalid) and (verdict.reason, verdict.field) == ("time_window", "time")
    wide = m.Catalogue(CATALOGUE.kinds, m.TimeWindow.parse("1970-01-01/+3d"))
    soon = orjson.dumps(event("W-2", m.Action.REPORTED, at=NOW + timedelta(days=2)))
    assert isinstance(m.validate(soon, CATALOGUE), m.Invalid)
    assert isinstance(m.validate(soon, wide), m.Valid)


def test_deadlines_may_lie_ahead_of_now_but_not_beyond_the_horizon() -> None:
    """A 延期 three days ahead (the demo city's) is fine; one beyond deadline_ahead is not."""

    def extended(until: datetime) -> bytes:
        return orjson.dumps(
            event("D-1", m.Action.EXTENDED, at=NOW, data={"reason": "r", "until": until.isoformat()})
        )

    assert isinstance(check(extended(NOW + timedelta(days=3))), m.Valid)
    verdict = check(extended(NOW + timedelta(days=400)))
    assert isinstance(verdict, m.Invalid) and verdict.field == "data.until" and "deadline" in verdict.detail


# --------------------------------------------------------------------------- hub import's reader
def test_csv_reader_reports_each_unreadable_row_with_its_line(tmp_path: Path) -> None:
    data = tmp_path / "poison.csv"
    rows = write_poison_csv(data)
    read = list(read_numbered(data, "csv"))
    assert len(read) == rows
    lines = [line for line, _ in read]
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]
    assert read[7][1]["诉求内容"] == "multi\nline ok"  # a quoted value over two lines is one row


class _Stream:
    """A publish function standing in for JetStream: every new event id accepted, repeats duplicate."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def __call__(self, events: Sequence[dict[str, Any]]) -> list[PublishResult]:
        out = []
        for i, e in enumerate(events):
            out.append(PublishResult(i, e["id"], "duplicate" if e["id"] in self.ids else "accepted"))
            self.ids.add(e["id"])
        return out


@pytest.mark.parametrize("chunk", [1, 4, 5000])
def test_csv_import_accounts_for_every_row(tmp_path: Path, chunk: int) -> None:
    data = tmp_path / "poison.csv"
    rows = write_poison_csv(data)
    cp_path = tmp_path / "cp.json"
    connector = registry.build("tabular", MAPPING)
    cp = asyncio.run(import_file(connector, data, _Stream(), cp_path, chunk=chunk))
    assert cp.rows_done == rows and cp.accounted()
    assert cp.counts == {"accepted": rows - len(CSV_EXPECTED_REJECTS), "rejected": len(CSV_EXPECTED_REJECTS)}
    report = [orjson.loads(x) for x in rejects_path_for(cp_path).read_bytes().splitlines()]
    assert {r["row"] for r in report} == set(CSV_EXPECTED_REJECTS)
    for r in report:
        line, field, word = CSV_EXPECTED_REJECTS[r["row"]]
        assert (r["line"], r["field"]) == (line, field), r
        assert word in r["error"], r


def test_jsonl_import_accounts_for_every_line(tmp_path: Path) -> None:
    lines = jsonl_poison_lines()
    data = tmp_path / "steps.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    cp_path = tmp_path / "cp.json"
    cp = asyncio.run(import_file(registry.build("citymgmt"), data, _Stream(), cp_path))
    assert cp.rows_done == 7 and cp.accounted()
    assert cp.counts == {"accepted": 2, "rejected": 5}
    report = {r["line"]: r for r in map(orjson.loads, rejects_path_for(cp_path).read_bytes().splitlines())}
    assert set(report) == {2, 3, 5, 6, 8}
    assert report[2]["field"] == "description" and "UTF-8" in report[2]["error"]
    assert report[5]["field"] == "time" and "plausible-time window" in report[5]["error"]
    assert report[6]["field"].startswith("x") and report[6]["error"]
