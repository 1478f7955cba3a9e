"""A case's complete history from the event store itself (never from projections).

Why from the store: auditors must see what was recorded, not what a read model derived. Each
entry gives the notification position (the audit chain's position), the version, the event type,
actor, the actor's role, department, the event time the source gave (``at``) and the time the hub
recorded it. Personal fields are NOT shown: the entry lists which fields are sealed personal data
(reading them is a separate, logged act), so a history can be handed out without leaking them.

The role: the stored case events carry the actor (``supervisor:GW-0001``, ``system:sla-watcher``),
not the envelope's ``actorrole``; the role shown is the actor's prefix before ``:``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from hub.adapters.store.state import stored_state
from hub.adapters.store.tables import StoreTables

_SKIP = {"timestamp", "originator_topic", "event_id", "at", "actor", "department", "_pii_"}


@dataclass(frozen=True, slots=True)
class Entry:
    position: int | None
    version: int
    type: str
    topic: str
    event_id: str
    actor: str
    role: str
    department: str
    at: datetime | None
    recorded_at: datetime | None
    personal_fields: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "version": self.version,
            "type": self.type,
            "topic": self.topic,
            "event_id": self.event_id,
            "actor": self.actor,
            "role": self.role,
            "department": self.department,
            "at": self.at.isoformat() if self.at else None,
            "recorded_at": self.recorded_at.isoformat() if self.recorded_at else None,
            "personal_fields": list(self.personal_fields),
            "data": self.data,
        }


def _plain(value: Any) -> Any:
    """eventsourcing's transcoded values (``{"_type_": …, "_data_": …}``) → their plain data."""
    if isinstance(value, dict):
        if set(value) == {"_type_", "_data_"}:
            return value["_data_"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _time(value: Any) -> datetime | None:
    raw = _plain(value)
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def case_history(recorder: Any, mapper: Any, case_id: UUID) -> list[Entry]:
    """Every stored event of a case, oldest first (empty when there is no such case)."""
    tables = StoreTables(recorder)
    key: Any = case_id.hex if tables.dialect == "sqlite" else case_id
    positions = {
        int(r["v"]): int(r["p"])
        for r in tables.query(
            f"SELECT {tables.id_column} AS p, originator_version AS v FROM {tables.events}"
            " WHERE originator_id = ?",
            (key,),
        )
    }
    entries: list[Entry] = []
    for stored in recorder.select_events(case_id):
        state = stored_state(mapper, stored.state)
        sealed = state.get("_pii_") or {}
        personal = tuple(sealed.get("p", ()))
        actor = str(state.get("actor", ""))
        parts = stored.topic.split(".")
        entries.append(
            Entry(
                position=positions.get(stored.originator_version),
                version=stored.originator_version,
                type=parts[2] if len(parts) >= 4 else stored.topic,
                topic=stored.topic,
                event_id=str(state.get("event_id", "")),
                actor=actor,
                role=actor.split(":", 1)[0] if ":" in actor else "",
                department=str(state.get("department", "")),
                at=_time(state.get("at")),
                recorded_at=_time(state.get("timestamp")),
                personal_fields=personal,
                data={
                    k: _plain(v) for k, v in state.items() if k not in _SKIP and not _is_sealed(k, personal)
                },
            )
        )
    return entries


def _is_sealed(key: str, personal: tuple[str, ...]) -> bool:
    """Top-level keys holding sealed personal data are left out (``reporter``, a sealed ``description``)."""
    return any(p == key or p.startswith(key + ".") for p in personal)
