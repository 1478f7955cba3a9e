"""Helpers for tests that run the real intake against a real nats-server."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

from hub.application import CaseLedger


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 60.0, every: float = 0.1
) -> None:
    """Poll ``check`` until it is true; fail with the timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


def kill_leftovers(procs: Iterable[subprocess.Popen[Any]]) -> None:
    """Teardown: kill what a failed test left running (a passing test has stopped its processes)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def stored_history(ledger: CaseLedger) -> dict[UUID, list[tuple[int, str]]]:
    """Every case's stored (version, event id) pairs, in notification order, read from the store."""
    history: dict[UUID, list[tuple[int, str]]] = {}
    start = 1
    while True:
        section = ledger.recorder.select_notifications(start=start, limit=5000)
        if not section:
            return history
        for n in section:
            event = ledger.mapper.to_domain_event(n)
            history.setdefault(n.originator_id, []).append((n.originator_version, event.event_id))  # type: ignore[attr-defined]
        start = section[-1].id + 1


def assert_exactly_once(history: dict[UUID, list[tuple[int, str]]], expected_ids: Iterable[str]) -> None:
    """No event lost, none applied twice, per-case versions 1..n without gaps."""
    expected = set(expected_ids)
    stored = [eid for events in history.values() for _, eid in events]
    assert len(stored) == len(set(stored)), "an event id was applied twice"
    assert set(stored) == expected, (
        f"missing {len(expected - set(stored))} (e.g. {sorted(expected - set(stored))[:3]}), "
        f"unexpected {len(set(stored) - expected)} (e.g. {sorted(set(stored) - expected)[:3]})"
    )
    for case_id, events in history.items():
        versions = [v for v, _ in events]
        assert versions == list(range(1, len(versions) + 1)), f"case {case_id} has gaps: {versions}"


def by_reason(letters: Iterable[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for letter in letters:
        counts[letter.reason] = counts.get(letter.reason, 0) + 1
    return counts
