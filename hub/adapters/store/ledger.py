"""The case ledger as the hub records it (落库): privacy sealing.

Why an adapter subclass: ``hub.application`` decides cases and names what it needs as ports, but
imports no adapter. Recording personal fields sealed with per-person keys (``hub.adapters.privacy``,
which needs cryptography and the store's key table) is a choice of how to store, made here: the
eventsourcing idiom of overriding ``construct_mapper`` / ``construct_event_store``. The composition
root (``ops.bootstrap.build_ledger``) builds this class, and only it: with the domain configuration
it loaded and ``LogFollower`` as the ledger's one reader of the notification log.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import EventStore, Mapper

from hub.adapters.privacy import erasure  # noqa: F401  (the log holds Erasure records: their topic resolves)
from hub.adapters.privacy import sealing as privacy
from hub.application.ledger import CaseLedger
from hub.application.ports import DomainConfig, LogOpener
from hub.vocabulary import APPLICATION_NAME


class SealedCaseLedger(CaseLedger):
    """``CaseLedger`` whose personal fields are sealed before they are recorded (privacy sealing).

    ``config_dir`` (``HUB_CONFIG_DIR``, read by ops and passed in) may hold ``privacy.toml``."""

    name = APPLICATION_NAME
    """Stated again: eventsourcing names an Application subclass after its class unless the class
    itself sets ``name``, and the name is stored data (PostgreSQL table ``cityhub_events``, the
    projections' tracking rows, the key tables): a subclass must never change it."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        domain: DomainConfig,
        config_dir: Path | None = None,
        follow_log: LogOpener,
        cache_size: int = 100_000,
    ) -> None:
        self._config_dir = config_dir  # before the Application constructs its event store
        super().__init__(env, domain=domain, cache_size=cache_size, follow_log=follow_log)

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=privacy.PrivacyMapper)

    def construct_event_store(self) -> EventStore[UUID]:
        return privacy.install(self.mapper, self.recorder, self._config_dir)
