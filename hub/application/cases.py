"""The cases in memory and in the store (案件台账的底账): the eventsourcing Application, the case
cache, reads, and the one-transaction commit.

Why a case cache: the intake is the only writer of the cases it consumes (one consumer, or one
per case-keyed partition), so the cases it just saved are the current ones and need no reload. The
store's optimistic concurrency (unique originator id + version) is the safety net: when a save
conflicts (a stale cached case, or a "new" case that already existed before a restart) the batch
is decided again with every case read from the store (``hub.application.batch``).

Why ``put`` and not ``save``: one transaction holding a few hundred cases' events saves ≈ 40k
events/s; ``save()`` adds per-aggregate runtime protocol checks on the hot path (profiled).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import EventStore, StoredEvent, Transcoding

from hub import messages as m
from hub.application.ports import DomainConfig, LogOpener, RowMappingEventStore
from hub.domain import Authority, Case, DepartmentProgress, Stage


class _EnumAsValue(Transcoding):
    """Stage and DepartmentProgress are StrEnums: events store plain strings, snapshots may hold them."""

    def __init__(self, enum: type[StrEnum], name: str) -> None:
        self.type = enum
        self.name = name

    def encode(self, obj: Any) -> str:
        return str(obj.value)

    def decode(self, data: Any) -> Any:
        return self.type(data)


class MappingEventStore(EventStore[UUID]):
    """The library's event store, which can also say what it would record (:meth:`to_stored`)."""

    def to_stored(self, domain_events: Sequence[Any]) -> list[StoredEvent]:
        return [self.mapper.to_stored_event(event) for event in domain_events]


class CaseStore(Application[UUID]):
    """The ledger's memory of cases and its way to the store; the layers above decide with it."""

    domain: DomainConfig
    catalogue: m.Catalogue
    authority: Authority
    """Who may act on which case (hub.domain.authority): refusals become ``not_permitted``."""
    _cache: OrderedDict[UUID, Case]
    _cache_size: int
    _row_mapper: RowMappingEventStore
    """``self.events``, as the port that maps a batch to rows without recording it."""
    _open_log: LogOpener
    """Opens a reader of the notification log (the composition root's ``LogFollower``)."""

    def construct_event_store(self) -> EventStore[UUID]:
        """Adapters may record otherwise (privacy sealing: ``hub.adapters.store.ledger``), as long as
        their store is a :class:`~hub.application.ports.RowMappingEventStore`."""
        return MappingEventStore(self.mapper, self.recorder)

    def register_transcodings(self, transcoder: Any) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(_EnumAsValue(Stage, "case_stage"))
        transcoder.register(_EnumAsValue(DepartmentProgress, "case_part"))

    # ------------------------------------------------------------------ reads
    def get_case(self, case_id: UUID) -> Case:
        case: Case = self.repository.get(case_id)
        return case

    def case_count(self) -> int:
        """Number of cases (created events) in the store; for tests and operators, not a hot path."""
        return sum(1 for _ in self.iter_topics({Case.Reported.TOPIC}))

    def iter_topics(self, topics: Iterable[str], batch: int = 5000) -> Iterable[Any]:
        """Every notification of ``topics`` in log order, read through the ledger's one log reader
        (the composition root's follower: no id skipped on PostgreSQL)."""
        for section in self._open_log(self.recorder, tuple(topics)).batches(0, batch):
            yield from section

    # ------------------------------------------------------------------ the case cache
    def forget_all(self) -> None:
        """Drop every cached case: the next decisions read the store (after a batch was not recorded)."""
        self._cache.clear()

    def _remember(self, touched: dict[UUID, Case]) -> None:
        for case_id, case in touched.items():
            self._cache[case_id] = case
            self._cache.move_to_end(case_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _forget(self, case_ids: Iterable[UUID]) -> None:
        for case_id in case_ids:
            self._cache.pop(case_id, None)

    def _case_for(self, case_id: UUID, touched: dict[UUID, Case], trust_cache: bool) -> Case | None:
        case = touched.get(case_id)
        if case is None and trust_cache:
            case = self._cache.get(case_id)
        if case is None:
            try:
                case = self.get_case(case_id)
            except AggregateNotFoundError:
                return None
        touched[case_id] = case
        return case

    # ------------------------------------------------------------------ the way to the store
    def _commit(self, touched: dict[UUID, Case]) -> None:
        """Record every new event of the batch in one transaction: the event store's ``put``, which is
        what ``save()`` does after its per-aggregate runtime protocol checks (profiled on this path)."""
        events = [event for case in touched.values() for event in case.collect_events()]
        if events:
            try:
                self.events.put(events)
            except BaseException:
                self._forget(touched)
                raise
        self._remember(touched)

    def _to_stored(self, touched: dict[UUID, Case]) -> list[StoredEvent]:
        """The rows the new events of ``touched`` would be recorded as (their keys prepared)."""
        events = [event for case in touched.values() for event in case.collect_events()]
        return self._row_mapper.to_stored(events)
