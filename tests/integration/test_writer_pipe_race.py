"""A blocking call from another thread while the event loop attaches the writer's pipe (issue 14).

Before the fix, the deadline watcher's thread read the pipe directly while the loop took it over:
two readers, frames split between them, batches answered with a breach list, and the intake's
parser wedged. Now the pipe has one reader at a time: every call gets its own reply."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from hub import messages as m
from hub.adapters.config.loading import load_catalogue
from hub.application import Verdict
from ops.bootstrap import writer_process_ledger as RemoteLedger
from tests.factories import LIFECYCLE, event


@pytest.mark.timeout(120)
def test_blocking_calls_racing_the_loops_attach_each_get_their_own_reply(tmp_path: Path) -> None:
    catalogue = load_catalogue()

    def reports(prefix: str, n: int) -> list[m.Valid]:
        out = [
            m.validate(orjson.dumps(event(f"{prefix}{i:04d}", LIFECYCLE[0], n=0)), catalogue)
            for i in range(n)
        ]
        assert all(isinstance(v, m.Valid) for v in out)
        return out  # type: ignore[return-value]

    errors: list[str] = []

    async def scenario(store: Path) -> None:
        ledger = await asyncio.to_thread(RemoteLedger, f"sqlite:///{store}")
        go = threading.Event()

        def watcher() -> None:
            go.set()
            for _ in range(40):
                try:
                    if ledger.breach_events(datetime(2000, 1, 1, tzinfo=UTC)) != []:
                        errors.append("a breach list that is not the watcher's")
                except Exception as exc:
                    errors.append(f"watcher: {exc!r}")

        thread = threading.Thread(target=watcher)
        thread.start()
        await asyncio.to_thread(go.wait)
        try:
            for k in range(15):
                async with asyncio.timeout(60):
                    outcomes = await ledger.submit_batch(reports(f"W{k}", 40))
                if {o.verdict for o in outcomes} != {Verdict.APPLIED}:
                    errors.append(f"batch {k}: {outcomes[:2]}")
        except Exception as exc:
            errors.append(f"batch: {exc!r}")
        finally:
            await asyncio.to_thread(thread.join, 60)
            await asyncio.to_thread(ledger.close)

    for round_ in range(3):  # the race is timing-dependent: a few fresh attaches
        asyncio.run(scenario(tmp_path / f"events{round_}.sqlite"))
    assert errors == []
