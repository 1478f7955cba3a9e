"""Ports of the use cases (端口): what the intake and the API need of the case ledger.

Why protocols here and not in the intake: design §3 puts the ports beside the use cases they
serve, so that the intake, the store writer (``hub.adapters.store``) and the tests all name the
same interface, and the in-process ``CaseLedger`` and the writer process's proxy both satisfy it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from hub import messages as m
from hub.application.outcome import Outcome


class Ledger(Protocol):
    """What the intake needs of the case ledger: the in-process ``CaseLedger``, or a proxy to a
    store-writer process (``ops.writer.RemoteLedger``) so that deciding and recording run on their
    own core while this process talks to NATS."""

    def apply_batch(self, items: Sequence[m.Valid]) -> list[Outcome]: ...

    def breach_events(self, now: datetime) -> list[dict[str, Any]]: ...


class PipelinedLedger(Ledger, Protocol):
    """A ledger the event loop can hand batches to without a thread: ``submit_batch`` sends at once
    (batches are applied in call order) and returns the future of the outcomes
    (``ops.writer.RemoteLedger``); the intake uses it when the ledger has it."""

    def submit_batch(self, items: Sequence[m.Valid]) -> asyncio.Future[list[Outcome]]: ...
