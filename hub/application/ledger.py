"""案件台账: the case ledger, the hub's one application of the eventsourcing library.

Why layers and not one class body: each concept of the use cases lives in its module and builds on
the ones below it — the case store (:mod:`~hub.application.cases`: cache, reads, commit), the
closed loop's policies (:mod:`~hub.application.policies`), one handler per step
(:mod:`~hub.application.commands`), deciding a batch (:mod:`~hub.application.batch`) and the
deadline watch (:mod:`~hub.application.deadlines`). Plain inheritance costs nothing per event
(Python caches method lookups per type), and all of the ledger's state is set here, in one place.

What it is given, never fetches: its configuration (:class:`~hub.application.ports.DomainConfig`)
and how to follow the notification log. ``ops.bootstrap.build_ledger`` loads the configuration
from ``HUB_CONFIG_DIR`` and builds the ledger that seals personal fields
(``hub.adapters.store.ledger``); a ``CaseLedger`` built directly records events as they are.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from uuid import UUID

from hub import messages as m
from hub.application.deadlines import DeadlineWatch, SerialLog
from hub.application.ports import DomainConfig, LogOpener, StagingEventStore
from hub.domain import Authority, Case
from hub.vocabulary import APPLICATION_NAME


class CaseLedger(DeadlineWatch):
    """案件台账: the event-sourced record of every case, and the use cases that change it."""

    name = APPLICATION_NAME

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        domain: DomainConfig,
        cache_size: int = 100_000,
        follow_log: LogOpener | None = None,
    ) -> None:
        """``follow_log`` opens the deadline watch's reader of the notification log; the default
        reads it as it is, which is right where writers commit in id order (in memory, SQLite)."""
        super().__init__(env)
        if not isinstance(self.events, StagingEventStore):
            raise TypeError(f"{type(self.events).__name__} cannot map a batch to rows (to_stored)")
        self._staging = self.events
        self._cache: OrderedDict[UUID, Case] = OrderedDict()
        self._cache_size = cache_size
        self.domain = domain
        self.catalogue = m.Catalogue.of({d.code: d.kinds for d in domain.departments.values()})
        self.authority = Authority(
            command=m.COMMAND_DEPARTMENT,
            sources={src: d.code for d in domain.departments.values() for src in d.sources},
        )
        self._deadlines = {}
        self._known_good = None
        self._open_log = follow_log or SerialLog
        self._watch_log = None
        self._watch_position = 0
        self._watch_due = {}
        self._watch_suspended = set()
