"""Helpers for tests that run the real intake against a real nats-server."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

from hub.application import CaseLedger

T = TypeVar("T")


# Tests wait on conditions, never on the clock: the suite runs on busy 2-core machines (CI, five
# people's test runs at once), where a step that takes 50 ms idle can take 10 s. A passing wait
# returns the moment its condition holds, so a generous deadline costs nothing when all is well and
# only says how long to wait before calling a hang a hang.
GENEROUS_S = 120.0


async def eventually(
    check: Callable[[], Awaitable[bool] | bool],
    timeout: float = GENEROUS_S,
    every: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` and the timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(every)


def wait_until(
    probe: Callable[[], T | None],
    timeout: float = GENEROUS_S,
    what: str = "condition",
    every: float = 0.25,
) -> T:
    """Blocking twin of :func:`eventually` for synchronous tests: poll ``probe`` until it returns a
    truthy value and return that value. An exception from the probe counts as "not yet" (a server
    still starting refuses connections; a page re-renders under a selector); the last one is named
    in the failure so a hang is told apart from a crash."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
            )
        time.sleep(every)


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
