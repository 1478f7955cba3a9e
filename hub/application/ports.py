"""Ports of the use cases (端口): what the intake needs of the case ledger, and what the ledger needs
of the world (its configuration, a spatial index, the store's notification log).

Why protocols here and not in the intake or the adapters: design §3 puts the ports beside the use
cases they serve, so that the intake, the store writer (``hub.adapters.store``) and the tests all
name the same interface, and the in-process ``CaseLedger`` and the writer process's proxy both
satisfy it. The other direction too: the use cases name what they need here, and the adapters
(config files, the shapely grid index, the gap-safe log follower, privacy sealing) provide it, so
``hub.application`` imports no adapter and reads no file or environment variable; the composition
root (``ops.bootstrap.build_ledger``) plugs them in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from eventsourcing.persistence import Notification, StoredEvent

from hub import messages as m
from hub.application.outcome import Outcome
from hub.domain.routing import ResponsibilityList
from hub.domain.sla import SlaPolicy
from hub.domain.taxonomy import Taxonomies


class Ledger(Protocol):
    """What the intake needs of the case ledger: the in-process ``CaseLedger``, or a proxy to a
    store-writer process (``hub.adapters.store.remote.RemoteLedger``) so that deciding and recording run
    on their own core while this process talks to NATS."""

    def apply_batch(self, items: Sequence[m.Valid]) -> list[Outcome]: ...

    def breach_events(self, now: datetime) -> list[dict[str, Any]]: ...


class PipelinedLedger(Ledger, Protocol):
    """A ledger the event loop can hand batches to without a thread: ``submit_batch`` sends at once
    (batches are applied in call order) and returns the future of the outcomes
    (``hub.adapters.store.remote.RemoteLedger``); the intake uses it when the ledger has it."""

    def submit_batch(self, items: Sequence[m.Valid]) -> asyncio.Future[list[Outcome]]: ...


# ------------------------------------------------------------------------- what the ledger needs
class GridResolver(Protocol):
    """网格定位: the grid a point falls in, and a grid's place in the tree (street → district → city).

    The shapely ``GridIndex`` (``hub.adapters.geo``) implements it; the use cases never import
    shapely or numpy (the intake's process would pay for them on every start)."""

    def resolve(self, lon: float, lat: float) -> str | None: ...

    def resolve_many(self, lons: Sequence[float], lats: Sequence[float]) -> list[str | None]: ...

    def path(self, code: str) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    name: str
    name_en: str
    kinds: tuple[str, ...]
    sources: tuple[str, ...] = ()
    """The source systems (``source`` of its events) that belong to this department: only it may
    report cases under them, or open them by a link (hub.domain.authority, rule 6)."""


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """Everything the use cases need from configuration, loaded and validated together at start
    (``hub.adapters.config.loading.load_domain`` reads it from files)."""

    departments: Mapping[str, Department]
    taxonomies: Taxonomies
    sla: SlaPolicy
    routing: ResponsibilityList
    grids: GridResolver


class NotificationLog(Protocol):
    """The store's notification log as the deadline watch (督办) follows it: successive sections
    after a position, ascending, until nothing more is readable now."""

    def batches(self, after: int, limit: int) -> Iterator[Sequence[Notification]]: ...


LogOpener = Callable[[Any, Sequence[str]], NotificationLog]
"""Opens a :class:`NotificationLog` on an application's recorder for some topics. The composition
root passes ``hub.adapters.store.follower.LogFollower``, which never steps past an id that may
still become visible on PostgreSQL (a missed escalation otherwise)."""


@runtime_checkable
class RowMappingEventStore(Protocol):
    """An event store that can also map a batch to the rows it would record, without recording
    them: the store writer commits the rows in its recorder process (``decide_batch``)."""

    def to_stored(self, domain_events: Sequence[Any]) -> list[StoredEvent]: ...
