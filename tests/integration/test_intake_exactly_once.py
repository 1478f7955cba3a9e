"""Issue 2 acceptance: 10,000 events, 5% duplicated ids, 2% invalid in five ways → exactly the valid
unique events in the store, every invalid one in CITY_DLQ with its reason. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from connectors.publisher import publish_events
from hub import messages as m
from hub.intake import IntakeSettings, read_dead_letters
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.natsd import EmbeddedNats
from tests.factories import LIFECYCLE, event
from tests.support import assert_exactly_once, by_reason, eventually, stored_history

TOTAL = 10_000
DUPLICATES = TOTAL * 5 // 100
INVALID_PER_WAY = TOTAL * 2 // 100 // 5
VALID = TOTAL - DUPLICATES - 5 * INVALID_PER_WAY


def build_valid(rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Case histories of random length, interleaved round-robin so batches mix cases and stages."""
    histories: list[list[dict[str, Any]]] = []
    steps_of: dict[str, int] = {}
    total = 0
    while total < VALID:
        caseref = f"C{len(histories):05d}"
        steps = min(rng.randint(1, len(LIFECYCLE)), VALID - total)
        histories.append([event(caseref, a, n=i) for i, a in enumerate(LIFECYCLE[:steps])])
        steps_of[caseref] = steps
        total += steps
    ordered: list[dict[str, Any]] = []
    depth = 0
    while len(ordered) < VALID:
        ordered.extend(h[depth] for h in histories if len(h) > depth)
        depth += 1
    return ordered, steps_of


def build_invalid(steps_of: dict[str, int]) -> list[tuple[str, bytes, str]]:
    """(subject, payload, expected reason) for five kinds of bad input."""
    bad: list[tuple[str, bytes, str]] = []
    early = [ref for ref, steps in steps_of.items() if steps <= 5]  # can never be closed
    for i in range(INVALID_PER_WAY):
        bad.append(
            (
                "city.citymgmt.case.reported",
                b'{"specversion": "1.0", "id": "trunc' + str(i).encode(),
                "invalid_json",
            )
        )
        e = event(f"BAD-S{i}", m.Action.REPORTED)
        del e["data"]["title"]
        bad.append(("city.citymgmt.case.reported", orjson.dumps(e), "schema"))
        e = event(f"BAD-D{i}", m.Action.REPORTED, department="fire", source="fire-119")
        bad.append(("city.fire.case.reported", orjson.dumps(e), "unknown_department"))
        e = event(f"BAD-K{i}", m.Action.REPORTED, kind="bogus")
        bad.append(("city.citymgmt.bogus.reported", orjson.dumps(e), "unknown_type"))
        e = event(early[i], m.Action.CLOSED, n=99)
        bad.append(("city.citymgmt.case.closed", orjson.dumps(e), "refused"))
    return bad


@pytest.mark.slow
async def test_ten_thousand_events_exactly_once(nats_server: EmbeddedNats, store_url: str) -> None:
    rng = random.Random(20261121)
    valid, steps_of = build_valid(rng)
    invalid = build_invalid(steps_of)
    dup_sources = rng.sample(valid, DUPLICATES)
    server_deduped, receiver_deduped = dup_sources[: DUPLICATES // 2], dup_sources[DUPLICATES // 2 :]

    nc = await connect_nats(nats_server.url, "test")
    intake, task = await start_intake(
        nc,
        store_url,
        # an ack wait above a busy machine's batch time, so redeliveries (test_intake_crash's
        # subject) stay rare here; the retry delays must add up to twice it (IntakeSettings)
        settings=IntakeSettings(retry_delays_s=(0.5, 0.5, 1.0, 8.0), ack_wait_s=5.0, batch_size=500),
    )
    try:
        js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
        results = await publish_events(js, valid)
        assert {r.status for r in results} == {"accepted"}
        for subject, payload, _ in invalid:
            await js.publish(subject, payload)
        again = await publish_events(js, server_deduped)  # same Nats-Msg-Id: the stream drops them
        assert {r.status for r in again} == {"duplicate"}
        for e in receiver_deduped:  # no dedup header, e.g. outside the window: the case skips them
            await js.publish(f"city.{e['department']}.{e['type']}", orjson.dumps(e))

        async def all_settled() -> bool:
            info = await js.stream_info(m.DLQ_STREAM)
            return intake.stats.applied >= VALID and info.state.messages >= 5 * INVALID_PER_WAY

        await eventually(
            all_settled, timeout=300, what="every valid event applied and every bad one dead-lettered"
        )
        await eventually(
            lambda: intake.stats.duplicates >= len(receiver_deduped), what="the re-published events skipped"
        )
        letters = await read_dead_letters(js)
    finally:
        intake.stop()
        await task
        await nc.close()

    assert intake.stats.applied == VALID
    # at least the re-published copies were skipped as duplicates; a redelivery (a batch slower than
    # the ack wait on a loaded machine) is skipped too and adds to the count, so it is not exact.
    # What matters, exactly once in the store, is asserted on the store itself below.
    assert intake.stats.duplicates >= len(receiver_deduped)
    history = stored_history(build_ledger(store_url))
    assert_exactly_once(history, (e["id"] for e in valid))
    assert len(history) == len(steps_of)

    assert by_reason(letters) == {
        reason: INVALID_PER_WAY
        for reason in ("invalid_json", "schema", "unknown_department", "unknown_type", "refused")
    }
    schema = next(lt for lt in letters if lt.reason == "schema")
    assert schema.field == "data.title" and "field required" in schema.detail
    dept = next(lt for lt in letters if lt.reason == "unknown_department")
    assert dept.field == "department" and "'fire' is not configured" in dept.detail
    refused = next(lt for lt in letters if lt.reason == "refused")
    assert "cannot close" in refused.detail and "after 5 attempts" in refused.detail
    assert all(lt.subject.startswith("city.") and lt.stream_seq > 0 for lt in letters)
    assert {lt.data for lt in letters if lt.reason == "invalid_json"} == {
        p for _, p, r in invalid if r == "invalid_json"
    }
