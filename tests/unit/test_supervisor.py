"""The supervisor's restart policy: a dead child is restarted, failures back off, counts are kept."""

from __future__ import annotations

import logging

import pytest

from ops.supervisor import PROCESSES, Child, Supervisor


async def test_a_failing_restart_backs_off_then_counts_once_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = {"alive": False, "fail": 2, "tries": 0}

    async def restart() -> None:
        state["tries"] += 1
        if state["fail"]:
            state["fail"] -= 1
            raise RuntimeError("port taken")
        state["alive"] = True

    child = Child("nats-server", lambda: None if state["alive"] else "exited (code -9)", restart)
    supervisor = Supervisor([child], stopping=lambda: False, settle_s=0.0)
    caplog.set_level(logging.WARNING, logger="hub")

    await supervisor.tick()
    assert state["tries"] == 1 and child.delay == 2.0
    assert supervisor.problems() == {"nats-server": "exited (code -9)"}
    await supervisor.tick()  # within the back-off: not tried again
    assert state["tries"] == 1
    child.next_try = 0.0
    await supervisor.tick()
    assert state["tries"] == 2 and child.delay == 4.0
    child.next_try = 0.0
    await supervisor.tick()
    assert state["tries"] == 3 and state["alive"]
    assert supervisor.restarts() == {**dict.fromkeys(PROCESSES, 0), "nats-server": 1}
    assert supervisor.problems() == {}
    await supervisor.tick()  # alive: left alone
    assert state["tries"] == 3
    text = caplog.text
    assert "supervisor: nats-server is down (exited (code -9)); restarting it" in text
    assert "restarting nats-server failed (RuntimeError: port taken)" in text
    assert "supervisor: nats-server restarted" in text


async def test_nothing_is_restarted_while_the_hub_stops() -> None:
    tried: list[str] = []

    async def restart() -> None:
        tried.append("x")

    supervisor = Supervisor([Child("projector", lambda: "ended", restart)], stopping=lambda: True)
    await supervisor.tick()
    await supervisor.run()  # returns at once
    assert tried == []


async def test_a_child_that_counts_itself_is_reported_by_its_own_count() -> None:
    async def restart() -> None:
        return None

    child = Child("chain-follower", lambda: None, restart, count=lambda: 3)
    assert Supervisor([child], stopping=lambda: False).restarts()["chain-follower"] == 3


async def test_a_restarted_child_is_not_ready_while_it_settles() -> None:
    """However fast a restart (or one made by someone else: the intake restarts a writer lazily),
    readiness shows it for ``settle_s``, then clears by itself."""
    count = {"n": 0}

    async def restart() -> None:
        return None

    child = Child("store-writer", lambda: None, restart, count=lambda: count["n"])
    clock = {"now": 100.0}
    supervisor = Supervisor([child], stopping=lambda: False, settle_s=3.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ops.supervisor.time.monotonic", lambda: clock["now"])
        assert supervisor.problems() == {}
        count["n"] = 1  # restarted elsewhere
        assert supervisor.problems() == {"store-writer": "restarted 0.0 s ago; settling"}
        clock["now"] += 2.0
        assert "store-writer" in supervisor.problems()
        clock["now"] += 1.5
        assert supervisor.problems() == {}
