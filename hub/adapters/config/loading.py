"""Configuration as data (配置): departments, categories, SLAs, calendars, grids, routing.

Defaults ship inside the package (``hub/defaults``); a deployment overrides them file by file
from ``HUB_CONFIG_DIR``. Errors name the file, the entry and what is expected, so an operator can
fix a config without reading code. What the use cases receive (``DomainConfig``, ``Department``)
is declared by them (``hub.application.ports``); this module fills it from files.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Mapping
from datetime import date, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.adapters.geo import GridIndex
from hub.application.ports import Department, DomainConfig
from hub.domain.calendar import CalendarError, WorkingCalendar
from hub.domain.grid import GridError
from hub.domain.routing import ResponsibilityList, Rule
from hub.domain.sla import CLOCKED_STAGES, SlaPolicy, SlaRule
from hub.domain.taxonomy import Basis, Category, Taxonomies, Taxonomy
from hub.messages import Catalogue
from hub.vocabulary import PRIORITIES

DEFAULTS_DIR = Path(__file__).resolve().parents[2] / "defaults"


class ConfigError(ValueError):
    """A configuration file is unreadable or inconsistent; the message names the file and entry."""


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:  # the message carries line and column
        raise ConfigError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc


def config_file(name: str, config_dir: Path | None) -> Path:
    """The deployment's file when it has one, else the shipped default."""
    if config_dir is not None and (config_dir / name).exists():
        return config_dir / name
    return DEFAULTS_DIR / name


def load_departments(config_dir: Path | None = None) -> dict[str, Department]:
    path = config_file("departments.toml", config_dir)
    raw = _load_toml(path).get("departments")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a [departments.<code>] table for each department")
    departments: dict[str, Department] = {}
    claimed: dict[str, str] = {}  # source -> department
    for code, entry in raw.items():
        where = f"{path}: [departments.{code}]"
        if not code.isidentifier() or not code.islower():
            raise ConfigError(f"{where}: department codes are lower-case identifiers (used in subjects)")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with name, name_en and kinds")
        kinds = entry.get("kinds")
        if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) and k for k in kinds):
            raise ConfigError(f"{where}: 'kinds' must be a non-empty list of record kinds, e.g. [\"case\"]")
        sources = entry.get("sources", [])
        if not isinstance(sources, list) or not all(isinstance(x, str) and x for x in sources):
            raise ConfigError(
                f"{where}: 'sources' must be a list of source system names, e.g. [\"police-110\"]"
            )
        for source in sources:
            owner = claimed.setdefault(source, code)
            if owner != code:
                raise ConfigError(
                    f"{where}: source {source!r} is already the source of department {owner!r}; "
                    f"a source system belongs to one department"
                )
        departments[code] = Department(
            code=code,
            name=str(entry.get("name", code)),
            name_en=str(entry.get("name_en", code)),
            kinds=tuple(kinds),
            sources=tuple(sources),
        )
    return departments


def load_catalogue(config_dir: Path | None = None) -> Catalogue:
    return Catalogue.of({d.code: d.kinds for d in load_departments(config_dir).values()})


# --------------------------------------------------------------------------- domain configuration
# Taxonomies, calendar, SLA, responsibility list and grids (issue 3). Each loader validates its file
# completely at start and names the file, the entry and (for TOML tables) the line.


def _line_of(path: Path, header: str, occurrence: int) -> int | None:
    """Line number of the ``occurrence``-th (0-based) line starting with ``header`` in a TOML file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    seen = 0
    for number, line in enumerate(lines, start=1):
        if line.strip().startswith(header):
            if seen == occurrence:
                return number
            seen += 1
    return None


def _entry(path: Path, table: str, index: int) -> str:
    line = _line_of(path, f"[[{table}]]", index)
    at = f", line {line}" if line is not None else ""
    return f"{path}: [[{table}]] #{index + 1}{at}"


def _parse_date(value: Any, where: str) -> list[date]:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {value!r} is not a date string (YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD)")
    try:
        if "/" in value:
            first, last = (date.fromisoformat(p.strip()) for p in value.split("/", 1))
        else:
            first = last = date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ConfigError(f"{where}: {value!r}: {exc}") from exc
    if last < first:
        raise ConfigError(f"{where}: range {value!r} ends before it starts")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _parse_tz(value: Any, where: str) -> tzinfo:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: timezone must be an offset like '+08:00' or an IANA name")
    if value[0] in "+-":
        try:
            hours, minutes = value[1:].split(":")
            offset = timedelta(hours=int(hours), minutes=int(minutes))
        except ValueError as exc:
            raise ConfigError(f"{where}: timezone {value!r} is not '+HH:MM'") from exc
        return timezone(-offset if value[0] == "-" else offset)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown timezone {value!r}") from exc


_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def load_calendar(config_dir: Path | None = None) -> WorkingCalendar:
    """工作日历 from calendar.toml."""
    path = config_file("calendar.toml", config_dir)
    raw = _load_toml(path)
    tz = _parse_tz(raw.get("timezone", "+08:00"), f"{path}: timezone")
    weekdays_raw = raw.get("weekdays", ["mon", "tue", "wed", "thu", "fri"])
    if not isinstance(weekdays_raw, list) or any(d not in _WEEKDAYS for d in weekdays_raw):
        raise ConfigError(f"{path}: weekdays must be a list of {list(_WEEKDAYS)}")
    periods: list[tuple[time, time]] = []
    for i, period in enumerate(raw.get("hours", [["08:30", "12:00"], ["13:30", "17:30"]])):
        where = f"{path}: hours[{i}]"
        if not isinstance(period, list) or len(period) != 2:
            raise ConfigError(f'{where}: expected ["HH:MM", "HH:MM"]')
        try:
            periods.append((time.fromisoformat(period[0]), time.fromisoformat(period[1])))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {period!r}: {exc}") from exc
    holidays = {
        d for i, v in enumerate(raw.get("holidays", [])) for d in _parse_date(v, f"{path}: holidays[{i}]")
    }
    workdays = {
        d for i, v in enumerate(raw.get("workdays", [])) for d in _parse_date(v, f"{path}: workdays[{i}]")
    }
    try:
        return WorkingCalendar(
            tz=tz,
            periods=tuple(periods),
            weekdays=frozenset(_WEEKDAYS[d] for d in weekdays_raw),
            holidays=frozenset(holidays),
            workdays=frozenset(workdays),
        )
    except CalendarError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_sla(config_dir: Path | None = None, calendar: WorkingCalendar | None = None) -> SlaPolicy:
    """办理时限 from sla.toml."""
    path = config_file("sla.toml", config_dir)
    raw = _load_toml(path).get("rule")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected at least one [[rule]] table")
    rules: list[SlaRule] = []
    for i, entry in enumerate(raw):
        where = _entry(path, "rule", i)
        unknown = set(entry) - {"name", "hours", "department", "kind", "categories", "priority", "clock"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        hours = entry.get("hours")
        if not isinstance(hours, dict) or not hours:
            raise ConfigError(f"{where}: 'hours' must be a table of stage = hours, e.g. {{ accepted = 15 }}")
        for stage, value in hours.items():
            if stage not in CLOCKED_STAGES:
                raise ConfigError(f"{where}: hours.{stage}: not a clocked stage; use one of {CLOCKED_STAGES}")
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{where}: hours.{stage} = {value!r}: expected a positive number of hours")
        clock = entry.get("clock", "working")
        if clock not in ("working", "calendar"):
            raise ConfigError(
                f"{where}: clock = {clock!r}: expected 'working' (工作时) or 'calendar' (自然时)"
            )
        priority = entry.get("priority")
        if priority is not None and priority not in PRIORITIES:
            raise ConfigError(f"{where}: priority = {priority!r}: expected one of {PRIORITIES}")
        categories = entry.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(c, str) and c for c in categories):
            raise ConfigError(f"{where}: 'categories' must be a list of category code prefixes")
        rules.append(
            SlaRule(
                name=str(entry.get("name", f"rule {i + 1}")),
                hours={k: float(v) for k, v in hours.items()},
                department=entry.get("department"),
                kind=entry.get("kind"),
                categories=tuple(categories),
                priority=priority,
                clock=clock,
            )
        )
    return SlaPolicy(calendar or load_calendar(config_dir), tuple(rules))


def _read_taxonomy_csv(path: Path, where: str) -> dict[str, Category]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path} ({exc.strerror})") from exc
    need = {"matter_kind", "code", "major_code", "major_name", "name"}
    if not rows or not need <= set(rows[0]):
        raise ConfigError(f"{path}: expected columns {sorted(need)}")
    components = {r["code"] for r in rows if r["matter_kind"] == "管理部件"}
    categories: dict[str, Category] = {}
    for line, row in enumerate(rows, start=2):
        code = row["code"].strip()
        if not code:
            raise ConfigError(f"{path}: line {line}: empty code")
        if row["matter_kind"] == "管理部件" and code in categories:
            continue  # the matter (事项) on the component names the case; keep it
        basis = Basis.OWNER if code in components else Basis.TERRITORY
        categories[code] = Category(code, row["name"].strip(), basis, row["major_code"], row["major_name"])
    return categories


def load_taxonomies(config_dir: Path | None = None) -> Taxonomies:
    """分类目录 from categories.toml (and the CSVs it names)."""
    path = config_file("categories.toml", config_dir)
    raw = _load_toml(path).get("taxonomies")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected [taxonomies.<id>] tables")
    by_department: dict[str, Taxonomy] = {}
    for tax_id, entry in raw.items():
        where = f"{path}: [taxonomies.{tax_id}]"
        departments = entry.get("departments", [tax_id])
        if not isinstance(departments, list) or not all(isinstance(d, str) for d in departments):
            raise ConfigError(f"{where}: 'departments' must be a list of department codes")
        categories: dict[str, Category] = {}
        if "csv" in entry:
            csv_path = path.parent / str(entry["csv"])
            if not csv_path.exists():
                csv_path = DEFAULTS_DIR / str(entry["csv"])
            categories.update(_read_taxonomy_csv(csv_path, where))
        for code, item in (entry.get("categories") or {}).items():
            if not isinstance(item, dict) or item.get("basis", "territory") not in ("owner", "territory"):
                raise ConfigError(
                    f'{where}: categories.{code}: expected {{ name = "…", basis = "owner"|"territory" }}'
                )
            categories[code] = Category(
                code, str(item.get("name", code)), Basis(item.get("basis", "territory"))
            )
        if not categories:
            raise ConfigError(f'{where}: no categories (give csv = "…" or a categories table)')
        taxonomy = Taxonomy(str(entry.get("name", tax_id)), categories, bool(entry.get("strict", True)))
        for dept in departments:
            if dept in by_department:
                raise ConfigError(
                    f"{where}: department {dept!r} already has taxonomy {by_department[dept].name!r}"
                )
            by_department[dept] = taxonomy
    return Taxonomies(by_department)


def load_grids(config_dir: Path | None = None) -> GridIndex:
    """网格 from grids.geojson (the demo city unless the deployment ships its own)."""
    path = config_file("grids.geojson", config_dir)
    try:
        return GridIndex.from_file(path)
    except GridError as exc:
        raise ConfigError(str(exc)) from exc


def load_routing(
    config_dir: Path | None = None,
    departments: Mapping[str, Department] | None = None,
    grids: GridIndex | None = None,
) -> ResponsibilityList:
    """权责清单 from routing.toml; every department and area it names must exist."""
    path = config_file("routing.toml", config_dir)
    raw = _load_toml(path)
    departments = departments if departments is not None else load_departments(config_dir)
    units = raw.get("units", {})
    if not isinstance(units, dict):
        raise ConfigError(f"{path}: [units.<code>] tables expected")
    known = set(departments) | set(units)
    on_unroutable = raw.get("on_unroutable", "error")
    if on_unroutable not in ("error", "manual"):
        raise ConfigError(f"{path}: on_unroutable = {on_unroutable!r}: expected 'error' or 'manual'")
    auto = raw.get("auto_dispatch", [])
    if not isinstance(auto, list) or any(d not in departments for d in auto):
        raise ConfigError(
            f"{path}: auto_dispatch must list department codes of departments.toml, got {auto!r}"
        )
    rules: list[Rule] = []
    for i, entry in enumerate(raw.get("rule", [])):
        where = _entry(path, "rule", i)
        unknown = set(entry) - {"categories", "area", "departments"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        depts = entry.get("departments")
        if not isinstance(depts, list) or not depts:
            raise ConfigError(f"{where}: 'departments' must be a non-empty list")
        for dept in depts:
            if dept not in known:
                raise ConfigError(
                    f"{where}: department {dept!r} is neither in departments.toml nor in [units]"
                )
        area = entry.get("area")
        if area is not None and grids is not None and area not in grids.tree:
            raise ConfigError(f"{where}: area {area!r} is not a grid code of grids.geojson")
        categories = entry.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(c, str) and c for c in categories):
            raise ConfigError(f"{where}: 'categories' must be a list of category code prefixes")
        rules.append(Rule(tuple(depts), tuple(categories), area, where))
    return ResponsibilityList(tuple(rules), on_unroutable, frozenset(auto))


def load_domain(config_dir: Path | None = None) -> DomainConfig:
    departments = load_departments(config_dir)
    grids = load_grids(config_dir)
    return DomainConfig(
        departments=departments,
        taxonomies=load_taxonomies(config_dir),
        sla=load_sla(config_dir),
        routing=load_routing(config_dir, departments, grids),
        grids=grids,
    )
