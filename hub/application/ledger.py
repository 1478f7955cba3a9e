"""案件台账: the case ledger, the hub's one application of the eventsourcing library.

Why layers and not one class body: each concept of the use cases lives in its module and builds on
the ones below it — the case store (:mod:`~hub.application.cases`: cache, reads, commit), the
closed loop's policies (:mod:`~hub.application.policies`), one handler per step
(:mod:`~hub.application.commands`), deciding a batch (:mod:`~hub.application.batch`) and the
deadline watch (:mod:`~hub.application.deadlines`). Plain inheritance costs nothing per event
(Python caches method lookups per type), and all of the ledger's state is set here, in one place.

What it is given, never fetches: its configuration (:class:`~hub.application.ports.DomainConfig`)
and how to follow the notification log (:data:`~hub.application.ports.LogOpener`, required: the
hub has one log follower, ``hub.adapters.store.follower.LogFollower``, and no second reader here).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from uuid import UUID

from hub import messages as m
from hub.application.deadlines import DeadlineWatch
from hub.application.ports import DomainConfig, LogOpener, RowMappingEventStore
from hub.domain import Authority, Case
from hub.vocabulary import APPLICATION_NAME


class CaseLedger(DeadlineWatch):
    """案件台账: the event-sourced record of every case, and the use cases that change it.

    The deployed ledger is built by the composition root, ``ops.bootstrap.build_ledger``: the
    domain configuration loaded from ``HUB_CONFIG_DIR``, personal fields sealed before they are
    recorded (``hub.adapters.store.ledger.SealedCaseLedger``) and ``LogFollower`` as
    ``follow_log``. A bare ``CaseLedger`` records its events unsealed, as they are: it is for
    domain tests, never for a hub's store.
    """

    name = APPLICATION_NAME

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        domain: DomainConfig,
        follow_log: LogOpener,
        cache_size: int = 100_000,
    ) -> None:
        """``follow_log`` opens the ledger's reader of the notification log (the deadline watch,
        :meth:`iter_topics`): pass ``hub.adapters.store.follower.LogFollower``, which never steps
        past an id that may still become visible on PostgreSQL."""
        super().__init__(env)
        if not isinstance(self.events, RowMappingEventStore):
            raise TypeError(f"{type(self.events).__name__} cannot map a batch to rows (to_stored)")
        self._row_mapper = self.events
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
        self._open_log = follow_log
        self._watch_log = None
        self._watch_position = 0
        self._watch_due = {}
        self._watch_suspended = set()
