"""Poison of every class of issue 14, with what the hub must say: raw messages on ``city.*`` and the
export files of ``hub import``.

Shared by the unit tests of validation and the NATS door (tests/integration/test_poison_nats.py), so
both check the same classes: each entry is (name, subject, raw bytes, expected reason, expected
field). A field ending in ``*`` is a prefix (deep paths are shortened).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from hub import messages as m
from tests.factories import event

NOW = datetime.now(UTC).replace(microsecond=0)
SUBJECT = "city.citymgmt.case.reported"


def _report(ref: str, **data: Any) -> dict[str, Any]:
    e = event(ref, m.Action.REPORTED, at=NOW - timedelta(hours=1))
    e["data"].update(data)
    return e


def _raw(e: dict[str, Any]) -> bytes:
    return orjson.dumps(e)


def _with_time(ref: str, when: str) -> bytes:
    e = _report(ref)
    e["time"] = when
    return _raw(e)


def _extended(ref: str, until: str) -> bytes:
    e = event(ref, m.Action.EXTENDED, at=NOW - timedelta(hours=1), data={"reason": "r", "until": until})
    return _raw(e)


def _deep(ref: str, levels: int) -> bytes:
    base = _raw(_report(ref, x=0))
    return base.replace(b'"x":0', b'"x":' + b"[" * levels + b"]" * levels)


POISONS: list[tuple[str, str, bytes, str, str]] = [
    (
        "invalid_utf8",
        SUBJECT,
        _raw(_report("P-utf8", title="TITLE")).replace(b"TITLE", b"ab\xff\xfecd"),
        "invalid_encoding",
        "data.title",
    ),
    ("issue_example", SUBJECT, b'{"id":"x","data":{"t":"\xff"}}', "invalid_encoding", "data.t"),
    ("nul_character", SUBJECT, _raw(_report("P-nul", title="a\x00b")), "schema", "data.title"),
    ("deep_nesting", SUBJECT, _deep("P-deep", 5000), "schema", "data.x*"),
    ("nesting_within_limits", SUBJECT, _deep("P-deep2", 40), "schema", "data.x"),
    (
        "huge_string",
        SUBJECT,
        _raw(_report("P-str", description="字" * 100_000)),
        "schema",
        "data.description",
    ),
    (
        "huge_array",
        SUBJECT,
        _raw(_report("P-arr", attachments=["https://x.invalid/a.jpg"] * 5000)),
        "schema",
        "data.attachments",
    ),
    (
        "number_out_of_range",
        SUBJECT,
        _raw(_report("P-num", location={"lon": 118.7, "lat": 32.0})).replace(b"118.7", b"1e400"),
        "schema",
        "data.location.lon",
    ),
    (
        "integer_out_of_range",
        "city.citymgmt.case.evaluated",
        _raw(event("P-int", m.Action.EVALUATED, at=NOW, data={"score": 5})).replace(
            b'"score":5', b'"score":123456789012345678901234567890'
        ),
        "schema",
        "data.score",
    ),
    ("far_future_time", SUBJECT, _with_time("P-future", "9999-12-31T23:00:00+08:00"), "time_window", "time"),
    ("year_10000_in_utc", SUBJECT, _with_time("P-10000", "9999-12-31T23:00:00-08:00"), "time_window", "time"),
    (
        "tomorrow_and_more",
        SUBJECT,
        _with_time("P-2d", (NOW + timedelta(days=2)).isoformat()),
        "time_window",
        "time",
    ),
    ("before_1970", SUBJECT, _with_time("P-1969", "1969-12-31T23:59:59+00:00"), "time_window", "time"),
    ("year_one", SUBJECT, _with_time("P-0001", "0001-01-01T00:00:00+08:00"), "time_window", "time"),
    (
        "deadline_out_of_range",
        "city.citymgmt.case.extended",
        _extended("P-until", "9999-12-31T23:00:00-08:00"),
        "time_window",
        "data.until",
    ),
    (
        "wrong_type_at_depth",
        SUBJECT,
        _raw(_report("P-type", location={"lon": 118.7, "lat": "north"})),
        "schema",
        "data.location.lat",
    ),
    ("wrong_type_of_data", SUBJECT, _raw(_report("P-data") | {"data": [1, 2]}), "schema", "data"),
    ("top_level_array", SUBJECT, b"[1,2,3]", "schema", ""),
    ("top_level_string", SUBJECT, b'"just text"', "schema", ""),
    ("not_json", SUBJECT, b"\x00\x01garbage\xff", "invalid_json", ""),
    ("empty", SUBJECT, b"", "invalid_json", ""),
    ("control_chars_in_key", SUBJECT, _raw(_report("P-key") | {"data": {"a\r\nb": 1}}), "schema", "data.a*"),
]


def field_matches(expected: str, actual: str) -> bool:
    return actual.startswith(expected[:-1]) if expected.endswith("*") else actual == expected


# --------------------------------------------------------------------------- hub import's files
CSV_POISON = (
    "工单编号,诉求分类,标题,诉求内容,承办单位,受理时间,派单时间,办结时间,办理时限,状态,紧急程度,经度,纬度,地址\n"
    "{ok1}\n"
    'GD2,市容环境,,"unterminated quote,区城管局,2026-03-02 08:00:00,,,,已受理,一般,118.7,32.0,建邺区\n'
    "{ok3}\n"
    "GD4,市容环境,,too few columns\n"
    "{ok5}\n"
    "GD6,市容环境,,描述,区城管局,2026-03-02 08:00:00,,,,已受理,一般,118.7,32.0,建邺区,extra,columns\n"
    "GD7,市容环境,,BADBYTES,区城管局,2026-03-02 08:00:00,,,,已受理,一般,118.7,32.0,建邺区\n"
    'GD8,市容环境,,"multi\nline ok",区城管局,2026-03-02 08:00:00,,,,已受理,一般,118.7,32.0,建邺区\n'
    "GD9,市容环境,,far future,区城管局,9999-12-31 23:00:00,,,,已受理,一般,118.7,32.0,建邺区\n"
    "{ok10}\n"
    'GD11,市容环境,,"x"y,区城管局,2026-03-02 08:00:00,,,,已受理,一般,118.7,32.0,建邺区\n'
    "{ok12}\n"
)
# row number → (line, field or "", a word of the error); rows are the file's records in order
CSV_EXPECTED_REJECTS = {
    2: (3, "", "unterminated quote"),
    4: (5, "", "4 columns"),
    6: (7, "", "16 columns"),
    7: (8, "诉求内容", "UTF-8"),
    9: (11, "受理时间", "plausible-time window"),
    11: (13, "", "quoting"),
}


def write_poison_csv(path: Path) -> int:
    """The CSV above with six good rows; returns the number of rows (records) in it."""

    def ok(n: int) -> str:
        return f"GD{n},市容环境,,描述{n},区城管局,2026-03-02 08:{n:02d}:00,,,,已受理,一般,118.7,32.0,建邺区"

    text = CSV_POISON.format(**{f"ok{n}": ok(n) for n in (1, 3, 5, 10, 12)})
    path.write_bytes(text.encode("utf-8").replace(b"BADBYTES", "坏".encode("gbk") + b"\xff"))
    return 12


def jsonl_poison_lines() -> list[bytes]:
    """A citymgmt JSONL export: 2 good lines, 5 poison (lines 2, 3, 5, 6, 8), one blank line."""
    good = {"case_no": "J1", "stage": "report", "time": NOW.isoformat(), "channel": "public",
            "matter_code": "01001", "description": "井盖"}  # fmt: skip
    lines = [
        orjson.dumps(good),
        b'{"case_no":"J2","stage":"report","description":"\xff"}',
        b"not json",
        b"",
        orjson.dumps(good | {"case_no": "J3", "time": "9999-12-31T23:00:00+08:00"}),
        b'{"case_no":"J4","x":' + b"[" * 3000 + b"]" * 3000 + b"}",
        orjson.dumps(good | {"case_no": "J5"}),
        b"[1,2]",
    ]
    return lines
