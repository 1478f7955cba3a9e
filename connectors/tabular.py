"""Tabular connector (表格导入): any 311/12345-style export → case histories, via a mapping file.

A hotline or ticket system's export (CSV, JSONL or Parquet) has one row per case with the times of
its milestones. A **declarative mapping file** (TOML) says which column holds which case field;
each row then becomes the case's closed-loop history with the **original timestamps**:

    上报 (reported) → 立案 → 延期 to the source's due time → 派遣 + 签收 (dispatched) →
    处置反馈 + 核查 + 结案 (closed)

cut at the row's status (an open row stops where it stands; 不予受理 becomes 不予立案).

Mapping file (see connectors/mappings/hotline_12345.toml and docs/connectors.md)::

    [source]
    name = "hotline-12345"        # source system: part of every hub case id, never change it
    department = "citizens"       # publishing department (subjects city.<department>.>)
    kind = "request"              # record kind of that department
    channel = "hotline_12345"
    timezone = "+08:00"           # offset of times written without one
    time_format = "%Y/%m/%d %H:%M" # strptime format; omit for ISO 8601

    [columns]                     # case field = column name; only id, category and reported required
    id = "工单编号"
    category = "诉求分类"
    title = "标题"
    description = "诉求内容"
    agency = "承办单位"
    reported = "受理时间"
    dispatched = "派单时间"
    closed = "办结时间"
    due = "办理时限"
    status = "状态"
    priority = "紧急程度"
    lon = "经度"
    lat = "纬度"
    address = "地址"

    [status]                      # native status → how far the history goes
    "已办结" = "closed"            # reported | registered | dispatched | accepted | closed | rejected
    "办理中" = "accepted"

    [agencies]                    # native agency → department token (required for unknown names)
    "区城管局" = "citymgmt"

    [priorities]                  # optional: native → urgent | high | normal | low
    "紧急" = "urgent"

    [categories]                  # optional: native → code; with strict = true others are rejected
    strict = false

Event ids are ``<source>:<id>:row:<action>``, so a re-import (or a resumed one) is deduplicated.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from connectors import base
from connectors.base import RecordError
from hub import messages as m
from hub.vocabulary import PRIORITIES

A = m.Action
LEVELS = ("reported", "registered", "dispatched", "accepted", "closed")
FIELDS = {
    "id", "category", "title", "description", "agency", "reported", "dispatched", "closed", "due",
    "status", "priority", "lon", "lat", "address",
}  # fmt: skip
_TOKEN = re.compile(r"^[a-z][a-z0-9_]*$")


class MappingError(ValueError):
    """A mapping file that cannot work; the message names the file and the entry."""


@dataclass(frozen=True)
class TableMapping:
    """A parsed, checked mapping file."""

    source: str
    department: str
    kind: str
    channel: str
    tz: timezone
    time_format: str | None
    columns: Mapping[str, str]
    status: Mapping[str, str] = field(default_factory=dict)
    agencies: Mapping[str, str] = field(default_factory=dict)
    priorities: Mapping[str, str] = field(default_factory=dict)
    categories: Mapping[str, str] = field(default_factory=dict)
    strict_categories: bool = False

    @classmethod
    def load(cls, path: Path) -> TableMapping:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MappingError(f"{path}: {exc}") from exc
        return cls.parse(raw, str(path))

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str = "mapping") -> TableMapping:
        src = raw.get("source")
        cols = raw.get("columns")
        if not isinstance(src, dict) or not isinstance(cols, dict):
            raise MappingError(f"{where}: needs a [source] and a [columns] table")
        for key in ("name", "department", "kind"):
            if not isinstance(src.get(key), str) or not src[key]:
                raise MappingError(f"{where}: [source] {key} is required")
        for key in ("department", "kind"):
            if not _TOKEN.match(src[key]):
                raise MappingError(f"{where}: [source] {key} must be a lower-case token")
        unknown = set(cols) - FIELDS
        if unknown:
            raise MappingError(
                f"{where}: [columns] unknown case field(s) {sorted(unknown)}; known: {sorted(FIELDS)}"
            )
        for needed in ("id", "category", "reported"):
            if needed not in cols:
                raise MappingError(f"{where}: [columns] {needed} is required")
        status = {str(k): str(v) for k, v in raw.get("status", {}).items()}
        for native, level in status.items():
            if level not in (*LEVELS, "rejected"):
                raise MappingError(
                    f"{where}: [status] {native!r} = {level!r}; use one of {(*LEVELS, 'rejected')}"
                )
        agencies = {str(k): str(v) for k, v in raw.get("agencies", {}).items()}
        for native, token in agencies.items():
            if not _TOKEN.match(token):
                raise MappingError(f"{where}: [agencies] {native!r} = {token!r} is not a lower-case token")
        priorities = {str(k): str(v) for k, v in raw.get("priorities", {}).items()}
        for native, pri in priorities.items():
            if pri not in PRIORITIES:
                raise MappingError(f"{where}: [priorities] {native!r} = {pri!r}")
        cats = dict(raw.get("categories", {}))
        strict = bool(cats.pop("strict", False))
        offset = str(src.get("timezone", "+08:00"))
        match = re.fullmatch(r"([+-])(\d\d):(\d\d)", offset)
        if not match:
            raise MappingError(f"{where}: [source] timezone must be an offset like +08:00")
        sign = 1 if match[1] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))
        return cls(
            source=src["name"],
            department=src["department"],
            kind=src["kind"],
            channel=str(src.get("channel", "import")),
            tz=tz,
            time_format=src.get("time_format") or None,
            columns={str(k): str(v) for k, v in cols.items()},
            status=status,
            agencies=agencies,
            priorities=priorities,
            categories={str(k): str(v) for k, v in cats.items()},
            strict_categories=strict,
        )


@dataclass
class TabularConnector(base.Connector):
    """One mapping file = one source system; ``map`` takes a row (column name → value)."""

    name: str = "tabular"
    mapping: TableMapping | None = None

    def __post_init__(self) -> None:
        if self.mapping is None:
            raise MappingError("the tabular connector needs a mapping file (--mapping)")
        self.department, self.source, self.kinds = (
            self.mapping.department,
            self.mapping.source,
            (self.mapping.kind,),
        )
        super().__post_init__()

    def _cell(self, row: Mapping[str, Any], name: str, required: bool = False) -> str:
        assert self.mapping is not None
        column = self.mapping.columns.get(name)
        if column is None:
            return ""
        value = row.get(column)
        if value is None or (isinstance(value, float) and value != value):  # NaN from Parquet/pandas
            value = ""
        out = value.isoformat() if isinstance(value, datetime) else str(value).strip()
        if required and not out:
            raise RecordError(column, "field required")
        return out

    def _time(self, row: Mapping[str, Any], name: str, required: bool = False) -> datetime | None:
        assert self.mapping is not None
        value = self._cell(row, name, required)
        if not value:
            return None
        column = self.mapping.columns[name]
        if self.mapping.time_format:
            try:
                moment = datetime.strptime(value, self.mapping.time_format)
            except ValueError:
                raise RecordError(column, f"{value!r} does not match {self.mapping.time_format!r}") from None
        else:
            moment = base.parse_time(value, column, self.mapping.tz)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=self.mapping.tz)
        # The plausible-time window, checked here so the rejection names the export's own column
        # (the canonical check would only say "time"); a due time is a deadline: it may lie ahead.
        window = self.catalogue.window
        earliest, latest = window.bounds(time.time())
        if name == "due":
            latest += window.deadline_ahead
        problem = window.problem(moment, earliest, latest, deadline=name == "due")
        if problem is not None:
            raise RecordError(column, problem)
        return moment

    def map(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        mp = self.mapping
        assert mp is not None
        cols = mp.columns
        ref = self._cell(row, "id", True)
        reported = self._time(row, "reported", True)
        assert reported is not None
        native_category = self._cell(row, "category", True)
        category = mp.categories.get(native_category)
        if category is None:
            if mp.strict_categories:
                raise RecordError(
                    cols["category"], f"unknown category {native_category!r} (not in [categories])"
                )
            category = native_category
        native_status = self._cell(row, "status")
        if "status" in cols:
            level = mp.status.get(native_status)
            if level is None:
                raise RecordError(cols["status"], f"unknown status {native_status!r}; map it in [status]")
        else:
            level = "closed" if self._cell(row, "closed") else "reported"
        dispatched = self._time(row, "dispatched") or reported
        closed = self._time(row, "closed")
        due = self._time(row, "due")
        agency_raw = self._cell(row, "agency")
        agency = mp.agencies.get(agency_raw) or (
            agency_raw.lower() if _TOKEN.match(agency_raw.lower()) else ""
        )
        reached = LEVELS.index(level) if level in LEVELS else 0
        if reached >= LEVELS.index("dispatched") and not agency:
            column = cols.get("agency", "agency")
            raise RecordError(column, f"unknown agency {agency_raw!r}; map it in [agencies]")
        if level in ("closed", "rejected") and closed is None and level == "closed":
            raise RecordError(cols.get("closed", "closed"), "a closed row needs its closing time")
        for name, moment in (("dispatched", dispatched), ("closed", closed)):
            if moment is not None and moment < reported:
                raise RecordError(cols[name], f"{moment.isoformat()} is before the report time")
        if closed is not None and closed < dispatched:
            raise RecordError(cols["closed"], "closing time is before the dispatch time")
        description = self._cell(row, "description")
        # public (the screen shows it): without a title column, category and case number, never the
        # free-text description (a mapped title column is the source system's own public title)
        title = self._cell(row, "title") or f"{native_category}：{ref}".lstrip("：")
        priority_raw = self._cell(row, "priority")
        priority = mp.priorities.get(priority_raw, "normal") if priority_raw else "normal"
        loc = None
        if "lon" in cols and "lat" in cols:
            loc = base.location(row, cols["lon"], cols["lat"], cols.get("address", "address"))
        elif "address" in cols and self._cell(row, "address"):
            description = f"{description}\n地址: {self._cell(row, 'address')}".strip()
        actor = f"import:{mp.source}"

        def ev(action: m.Action, at: datetime, data: Mapping[str, Any]) -> dict[str, Any]:
            return self.event(
                kind=mp.kind, action=action, caseref=ref, key="row", at=at, actor=actor, data=data
            )

        out = [
            ev(
                A.REPORTED,
                reported,
                {
                    "category": category,
                    "title": title[:500],
                    "description": description,
                    "priority": priority,
                    "channel": mp.channel,
                    "location": loc,
                },
            )
        ]
        if level == "rejected":
            out.append(ev(A.REJECTED, closed or reported, {"reason": native_status or "不予受理"}))
            return out
        if reached >= 1:
            out.append(ev(A.REGISTERED, reported, {}))
        if due is not None and due > reported and level != "reported":
            out.append(
                ev(
                    A.EXTENDED,
                    reported,
                    {"until": due.isoformat(), "reason": "原系统办理时限 source due time"},
                )
            )
        if reached >= 2:
            out.append(ev(A.DISPATCHED, dispatched, {"departments": [agency]}))
        if reached >= 3:
            out.append(ev(A.ACCEPTED, dispatched, {"department": agency}))
        if reached >= 4:
            assert closed is not None
            note = native_status
            out += [
                ev(A.HANDLED, closed, {"department": agency, "note": note}),
                ev(A.VERIFIED, closed, {"passed": True}),
                ev(A.CLOSED, closed, {"note": note}),
            ]
        return out
