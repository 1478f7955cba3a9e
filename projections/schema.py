"""The column mapping (字段映射): stored event JSON → typed columns, in ONE place.

Why one table of fields: the domain is still growing (SLA deadlines on stage events, grid paths,
routing). Adding a field to the read side is one line here; a field the store does not hold yet
simply decodes as NULL, and a field the store holds but this table does not name is ignored. The
decoder (DuckDB's ``from_json`` over the batch's state column) and the DDL are generated from it.

The stored state is eventsourcing's JSON: datetimes are ``{"_type_": "datetime_iso", "_data_": …}``
and UUIDs ``{"_type_": "uuid_hex", "_data_": …}``; ``wrapped`` fields unwrap ``_data_``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from hub.domain import Case
from hub.views import ERASED, ERASURE_TOPIC


@dataclass(frozen=True, slots=True)
class Field:
    """One column of the ``events`` read model taken from the stored event state."""

    column: str  # column name in DuckDB
    key: str  # top-level key in the stored JSON
    sql_type: str  # DuckDB type of the column
    json_type: str | dict[str, str] | list[str]  # from_json structure of the key
    path: str = ""  # sub-path inside the key's value ('' = the value itself)
    cast: str | None = None  # SQL cast applied after extraction
    pii: bool = False  # personal data: kept out of ``events`` and every export


_WRAPPED = {"_data_": "VARCHAR"}  # eventsourcing's transcoded datetime / UUID

FIELDS: tuple[Field, ...] = (
    # common to every case event
    Field("recorded_at", "timestamp", "TIMESTAMPTZ", _WRAPPED, "_data_", "TIMESTAMPTZ"),
    Field("event_id", "event_id", "VARCHAR", "VARCHAR"),
    Field("at", "at", "TIMESTAMPTZ", _WRAPPED, "_data_", "TIMESTAMPTZ"),
    Field("actor", "actor", "VARCHAR", "VARCHAR"),
    Field("department", "department", "VARCHAR", "VARCHAR"),
    # reported (上报)
    Field("source", "source", "VARCHAR", "VARCHAR"),
    Field("caseref", "caseref", "VARCHAR", "VARCHAR"),
    Field("kind", "kind", "VARCHAR", "VARCHAR"),
    Field("category", "category", "VARCHAR", "VARCHAR"),  # also on registered (re-classification)
    Field("title", "title", "VARCHAR", "VARCHAR"),
    Field("priority", "priority", "VARCHAR", "VARCHAR"),  # also on registered
    Field("channel", "channel", "VARCHAR", "VARCHAR"),
    Field("grid", "grid", "VARCHAR", "VARCHAR"),
    Field("lon", "location", "DOUBLE", {"lon": "DOUBLE", "lat": "DOUBLE", "address": "VARCHAR"}, "lon"),
    Field("lat", "location", "DOUBLE", {"lon": "DOUBLE", "lat": "DOUBLE", "address": "VARCHAR"}, "lat"),
    Field(
        "address", "location", "VARCHAR", {"lon": "DOUBLE", "lat": "DOUBLE", "address": "VARCHAR"}, "address"
    ),
    Field(
        "reporter_name",
        "reporter",
        "VARCHAR",
        {"name": "VARCHAR", "phone": "VARCHAR", "id_number": "VARCHAR"},
        "name",
        pii=True,
    ),
    Field(
        "reporter_phone",
        "reporter",
        "VARCHAR",
        {"name": "VARCHAR", "phone": "VARCHAR", "id_number": "VARCHAR"},
        "phone",
        pii=True,
    ),
    Field(
        "reporter_id_number",
        "reporter",
        "VARCHAR",
        {"name": "VARCHAR", "phone": "VARCHAR", "id_number": "VARCHAR"},
        "id_number",
        pii=True,
    ),
    # later stages
    Field("departments", "departments", "VARCHAR[]", ["VARCHAR"]),  # dispatched (派遣)
    Field("note", "note", "VARCHAR", "VARCHAR"),
    Field("reason", "reason", "VARCHAR", "VARCHAR"),  # rejected, returned, escalated, extended…
    Field("passed", "passed", "BOOLEAN", "BOOLEAN"),  # verified (核查)
    Field("score", "score", "INTEGER", "INTEGER"),  # evaluated (评价)
    Field("by", "by", "VARCHAR", "VARCHAR"),
    Field("level", "level", "INTEGER", "INTEGER"),  # escalated (督办)
    Field("until", "until", "TIMESTAMPTZ", _WRAPPED, "_data_", "TIMESTAMPTZ"),  # extended (延期)
    Field("relation", "relation", "VARCHAR", "VARCHAR"),  # linked (关联)
    Field("target_id", "target_id", "UUID", _WRAPPED, "_data_", "UUID"),
    Field("target_department", "target_department", "VARCHAR", "VARCHAR"),
    Field("primary_id", "primary_id", "UUID", _WRAPPED, "_data_", "UUID"),  # merged (合并)
    # seams for fields the domain is adding (NULL until the store holds them)
    Field("due", "due", "TIMESTAMPTZ", _WRAPPED, "_data_", "TIMESTAMPTZ"),  # SLA: the new stage's deadline
    Field("breached_stage", "stage", "VARCHAR", "VARCHAR"),  # escalated by the SLA watcher
    Field("breached_deadline", "deadline", "TIMESTAMPTZ", _WRAPPED, "_data_", "TIMESTAMPTZ"),
    Field("outcome", "outcome", "VARCHAR", "VARCHAR"),  # link_concluded; closed (seam: 调解/劝阻 result)
    # seams for fields the domain may add (NULL until the store holds them)
    Field("grid_path", "grid_path", "VARCHAR[]", ["VARCHAR"]),  # grid tree path, root first
)

PII_COLUMNS = tuple(f.column for f in FIELDS if f.pii)
EVENT_FIELDS = tuple(f for f in FIELDS if not f.pii)


def _event_classes() -> dict[str, str]:
    """Topic → event type name, from the domain itself (so new events are followed without edits)."""
    topics: dict[str, str] = {}
    for value in vars(Case).values():
        topic = getattr(value, "TOPIC", None)
        if isinstance(value, type) and issubclass(value, Case.Event) and isinstance(topic, str):
            parts = topic.split(".")
            if len(parts) >= 4:  # citybrain.case.<type>.v<N>
                topics[topic] = parts[2]
    return topics


TOPIC_TYPES: dict[str, str] = _event_classes()
TOPICS: tuple[str, ...] = tuple(sorted(TOPIC_TYPES))
FOLLOWED_TOPICS: tuple[str, ...] = (*TOPICS, ERASURE_TOPIC)
"""What the projector reads: the case events, and erasure records (applied as masks, never rows)."""


def _masks(paths: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Read-model table → its VARCHAR columns holding one of the sealed ``paths``.

    Why from ``FIELDS``: a sealed path is a stored-state path, and ``FIELDS`` is the one table
    saying which column each path becomes; ``cases`` copies some of the ``events`` columns
    (title, address) under the same names."""
    wanted = set(paths)
    columns = [
        f for f in FIELDS if f.sql_type == "VARCHAR" and (f"{f.key}.{f.path}" if f.path else f.key) in wanted
    ]
    case_columns = {c for c, _ in CASE_COLUMNS}
    return {
        "events": tuple(f.column for f in columns if not f.pii),
        "cases": tuple(f.column for f in columns if not f.pii and f.column in case_columns),
        "case_reporters": tuple(f.column for f in columns if f.pii),
    }


def mask_statements(cases: str, paths: Sequence[str]) -> list[str]:
    """UPDATEs turning the sealed columns of the cases in ``cases`` (a SQL list of UUIDs) into
    ``[erased]``: an erasure applied to the live read models, set-based, one statement per table.
    Empty and NULL values stay as they are (nothing was sealed there)."""
    out = []
    for table, cols in _masks(paths).items():
        if not cols:
            continue
        sets = ", ".join(
            f'"{c}" = CASE WHEN "{c}" IS NULL OR "{c}" = \'\' THEN "{c}" ELSE \'{ERASED}\' END' for c in cols
        )
        out.append(f"UPDATE {table} SET {sets} WHERE case_id IN (SELECT CAST(unnest({cases}) AS UUID))")
    return out


def json_structure() -> str:
    """The ``from_json`` structure covering every mapped key."""
    keys: dict[str, object] = {}
    for f in FIELDS:
        keys[f.key] = f.json_type
    return json.dumps(keys)


def _extract(f: Field) -> str:
    expr = f'j."{f.key}"'
    if f.path:
        expr += f'."{f.path}"'
    if f.cast:
        expr = f"TRY_CAST({expr} AS {f.cast})"
    return f'{expr} AS "{f.column}"'


def decode_select(source: str) -> str:
    """SQL turning a batch (seq, case_id, version, topic, state) into typed columns, set-based."""
    types = " ".join(f"WHEN '{t}' THEN '{name}'" for t, name in TOPIC_TYPES.items())
    fallback = "regexp_extract(topic, '^[^.]+\\.[^.]+\\.([^.]+)', 1)"
    cols = ",\n  ".join(_extract(f) for f in FIELDS)
    structure = json_structure().replace("'", "''")
    return f"""
SELECT seq, CAST(case_id AS UUID) AS case_id, version, topic,
  CASE topic {types} ELSE {fallback} END AS type,
  {cols}
FROM (SELECT seq, case_id, version, topic, from_json(state, '{structure}') AS j FROM {source})
"""


# The base columns of ``events`` (what the store said) followed by what the projector derives.
BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "BIGINT"),
    ("case_id", "UUID"),
    ("version", "BIGINT"),
    ("topic", "VARCHAR"),
    ("type", "VARCHAR"),
    *((f.column, f.sql_type) for f in EVENT_FIELDS),
)
DERIVED_COLUMNS: tuple[tuple[str, str], ...] = (("stage_after", "VARCHAR"),)
"""``category``, ``priority``, ``grid`` and ``grid_path`` are stored as the case's values after the
event (the running last non-null), which is why re-deriving a stored history is idempotent."""

EVENT_COLUMNS = tuple(c for c, _ in BASE_COLUMNS + DERIVED_COLUMNS)

CASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("case_id", "UUID PRIMARY KEY"),
    ("source", "VARCHAR"),
    ("caseref", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("origin_department", "VARCHAR"),
    ("reported_by", "VARCHAR"),
    ("category", "VARCHAR"),
    ("priority", "VARCHAR"),
    ("channel", "VARCHAR"),
    ("title", "VARCHAR"),
    ("grid", "VARCHAR"),
    ("grid_path", "VARCHAR[]"),
    ("lon", "DOUBLE"),
    ("lat", "DOUBLE"),
    ("address", "VARCHAR"),
    ("stage", "VARCHAR"),
    ("responsible_departments", "VARCHAR[]"),
    ("handled_departments", "VARCHAR[]"),
    ("reported_at", "TIMESTAMPTZ"),
    ("registered_at", "TIMESTAMPTZ"),
    ("dispatched_at", "TIMESTAMPTZ"),
    ("accepted_at", "TIMESTAMPTZ"),
    ("handled_at", "TIMESTAMPTZ"),
    ("verified_at", "TIMESTAMPTZ"),
    ("closed_at", "TIMESTAMPTZ"),
    ("evaluated_at", "TIMESTAMPTZ"),
    ("finished_at", "TIMESTAMPTZ"),
    ("updated_at", "TIMESTAMPTZ"),
    ("due", "TIMESTAMPTZ"),
    ("overruns", "INTEGER"),
    ("breaches", "INTEGER"),
    ("handles", "INTEGER"),
    ("returns", "INTEGER"),
    ("reworks", "INTEGER"),
    ("escalations", "INTEGER"),
    ("escalation_level", "INTEGER"),
    ("extended_until", "TIMESTAMPTZ"),
    ("suspended_since", "TIMESTAMPTZ"),
    ("satisfaction", "INTEGER"),
    ("operator_score", "INTEGER"),
    ("merged_into", "UUID"),
    ("finished_reason", "VARCHAR"),
    ("outcome", "VARCHAR"),
    ("last_position", "BIGINT"),
    ("last_recorded_at", "TIMESTAMPTZ"),
    ("version", "BIGINT"),
)


DUE_SETTERS = (
    "reported",
    "registered",
    "dispatched",
    "accepted",
    "returned",
    "handled",
    "verified",
    "resumed",
)
"""Event types that record the deadline (``due``) of the stage they lead into (hub.domain.sla)."""
DUE_CLEARERS = ("rejected", "merged", "closed")
"""Event types after which the case has no deadline (the domain sets ``due = None``)."""


def grid_path_sql(grid: str) -> str:
    """The grid tree path of a grid code, root (district) first. THE seam for the grid tree.

    Until the domain publishes grid paths, the tree is read from the administrative code itself
    (区县 6 digits → 街道 9 → 社区 12 → 网格 the full code), which is how GB/T 2260-style grid
    codes nest. An event that carries ``grid_path`` wins over this.
    """
    return (
        f"CASE WHEN {grid} IS NULL THEN []::VARCHAR[] ELSE list_concat(list_transform("
        f"list_filter([6, 9, 12], lambda n: length({grid}) > n), lambda n: left({grid}, n)), [{grid}]) END"
    )


DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS tracking (application_name VARCHAR PRIMARY KEY,"
    " notification_id BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events ("
    + ", ".join(f'"{c}" {t}' for c, t in BASE_COLUMNS + DERIVED_COLUMNS)
    + ", PRIMARY KEY (seq))",
    "CREATE TABLE IF NOT EXISTS cases (" + ", ".join(f'"{c}" {t}' for c, t in CASE_COLUMNS) + ")",
    "CREATE TABLE IF NOT EXISTS case_links (case_id UUID, relation VARCHAR, target_id UUID,"
    ' target_department VARCHAR, "at" TIMESTAMPTZ, seq BIGINT, concluded VARCHAR,'
    " PRIMARY KEY (case_id, relation, target_id))",
    "CREATE TABLE IF NOT EXISTS case_reporters (case_id UUID PRIMARY KEY, reporter_name VARCHAR,"
    " reporter_phone VARCHAR, reporter_id_number VARCHAR)",
    # carried fold state (see projections.derive): what a batch needs to continue a case
    # (no keys: rows are replaced per touched case, and an index would only slow the replace)
    "CREATE TABLE IF NOT EXISTS case_state (case_id UUID, grid_path VARCHAR[], seg_due TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS case_parts (case_id UUID, dept VARCHAR, status VARCHAR)",
    "CREATE TABLE IF NOT EXISTS export_marks (target VARCHAR PRIMARY KEY, position BIGINT NOT NULL,"
    " exported_at TIMESTAMPTZ)",
)

EVENTS_KEY = "ALTER TABLE events ADD PRIMARY KEY (seq)"
"""Adds the key a bulk load (``ReadModelStore.bulk_load``) leaves off ``events`` while it appends."""


def fresh_ddl() -> tuple[str, ...]:
    """``DDL`` for a file a replay fills from empty: ``events`` without its key (added after).

    Why: maintaining the ``seq`` index row by row and writing it at every commit cost a rebuild
    more than building it once over the finished table (measured: insert + commit ~0.05 s of
    ~0.2 s for 23k events). The batch's own duplicate check still refuses replayed positions.
    """
    events = next(d for d in DDL if d.startswith("CREATE TABLE IF NOT EXISTS events"))
    return tuple(d.replace(", PRIMARY KEY (seq))", ")") if d is events else d for d in DDL)
