"""Connector mapping without I/O: stable ids, field-naming rejections, mapping-file checks, simulator seed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connectors import registry
from connectors.base import RecordError
from connectors.simulator import Simulator
from connectors.tabular import MappingError, TableMapping

ROOT = Path(__file__).resolve().parents[2]
ROW = {
    "工单编号": "GD1",
    "诉求分类": "噪声扰民",
    "诉求内容": "夜间施工",
    "承办单位": "区城管局",
    "受理时间": "2025-01-01 08:00:00",
    "派单时间": "2025-01-01 08:30:00",
    "办结时间": "2025-01-02 09:00:00",
    "办理时限": "2025-01-04 08:00:00",
    "状态": "已办结",
    "经度": "118.7",
    "纬度": "32.0",
}


def tabular() -> object:
    return registry.build("tabular", ROOT / "connectors" / "mappings" / "hotline_12345.toml")


def test_a_row_becomes_a_history_with_its_own_times_and_stable_ids() -> None:
    connector = tabular()
    events = connector.map_checked(ROW)  # type: ignore[attr-defined]
    assert [e["type"].split(".")[1] for e in events] == [
        "reported",
        "registered",
        "extended",
        "dispatched",
        "accepted",
        "handled",
        "verified",
        "closed",
    ]
    assert (
        events[0]["time"] == "2025-01-01T08:00:00+08:00" and events[-1]["time"] == "2025-01-02T09:00:00+08:00"
    )
    assert events == connector.map_checked(dict(ROW))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"受理时间": "yesterday"}, "受理时间"),
        ({"状态": "??"}, "状态"),
        ({"承办单位": "某某局"}, "承办单位"),
        ({"办结时间": "2024-12-31 00:00:00"}, "办结时间"),
        ({"经度": "east"}, "经度"),
        ({"工单编号": ""}, "工单编号"),
    ],
)
def test_invalid_rows_name_their_column(change: dict[str, str], field: str) -> None:
    with pytest.raises(RecordError) as info:
        tabular().map_checked({**ROW, **change})  # type: ignore[attr-defined]
    assert info.value.field == field


def test_mapping_file_errors_name_the_entry() -> None:
    with pytest.raises(MappingError, match=r"\[columns\] id is required"):
        TableMapping.parse(
            {"source": {"name": "x", "department": "citizens", "kind": "request"}, "columns": {}}
        )
    with pytest.raises(MappingError, match="unknown case field"):
        TableMapping.parse(
            {
                "source": {"name": "x", "department": "citizens", "kind": "request"},
                "columns": {"id": "a", "category": "b", "reported": "c", "colour": "d"},
            }
        )


def test_police_stage_ids_are_stable_and_repeatable_steps_carry_time() -> None:
    police = registry.build("police")
    rec = {
        "record_type": "fraud_warning",
        "warning_no": "W9",
        "stage": "unreachable",
        "time": "2026-03-02T09:00:00",
    }
    first = police.map_checked(rec)[0]["id"]
    later = police.map_checked({**rec, "time": "2026-03-02T10:00:00"})[0]["id"]
    assert first != later and first == police.map_checked(rec)[0]["id"]


def test_simulated_day_is_reproducible_and_diurnal() -> None:
    start = datetime.fromisoformat("2026-03-02T00:00:00+08:00")
    a = Simulator(seed=3, rate=60, start=start).items()
    b = Simulator(seed=3, rate=60, start=start).items()
    assert a == b and a != Simulator(seed=4, rate=60, start=start).items()
    day = [t for t, _, _, _ in a if t < start + timedelta(days=1)]
    night = sum(1 for t in day if 2 <= t.hour < 5)
    morning = sum(1 for t in day if 9 <= t.hour < 12)
    assert morning > 5 * night
