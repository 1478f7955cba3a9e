"""The application name is stored data: the PostgreSQL tables (``cityhub_events``), the projections'
tracking rows and the key tables are named after it. eventsourcing names an Application subclass
after its class unless the class sets ``name`` itself, so a subclass that forgets it silently
opens an empty store: every ledger class of the hub must carry the one name."""

from __future__ import annotations

import ops.bootstrap  # noqa: F401  (every ledger subclass the composition root can build is imported)
from hub.application import CaseLedger
from hub.vocabulary import APPLICATION_NAME


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_ledger_class_keeps_the_stored_application_name() -> None:
    classes = [CaseLedger, *_subclasses(CaseLedger)]
    assert len(classes) >= 2, "the sealed ledger of hub.adapters.store is a subclass"
    assert {cls.__name__: cls.name for cls in classes} == {cls.__name__: APPLICATION_NAME for cls in classes}
