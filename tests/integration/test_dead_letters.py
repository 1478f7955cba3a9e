"""Dead letters keep their reason and are re-driven after the cause is fixed; a dead letter is removed
only once its replay is applied, or replaced when the replay is dead-lettered again."""

from __future__ import annotations

import contextlib
from pathlib import Path

import orjson
from nats.errors import TimeoutError as NatsTimeoutError

from hub import messages as m
from hub.adapters.config.loading import DEFAULTS_DIR
from hub.intake import IntakeSettings, read_dead_letters, replay_dead_letters
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.natsd import EmbeddedNats
from tests.factories import event
from tests.support import eventually

# Three retries, then the dead letter: deliveries == 4 must not depend on the machine's speed, so
# the ack wait is long enough that a slow batch is never redelivered on top of its retries (the
# retry delays must add up to twice the ack wait, see IntakeSettings).
FAST = IntakeSettings(retry_delays_s=(0.5, 0.5, 4.0), ack_wait_s=2.5)


async def test_replay_after_the_cause_is_fixed(
    nats_server: EmbeddedNats, store_url: str, tmp_path: Path
) -> None:
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10)
    intake, task = await start_intake(nc, store_url, settings=FAST)
    fire = event("F-1", m.Action.REPORTED, department="fire", source="fire-119")
    orphan = event("O-1", m.Action.REGISTERED)  # its report has not been sent
    await js.publish("city.fire.case.reported", orjson.dumps(fire))
    await js.publish("city.citymgmt.case.registered", orjson.dumps(orphan))
    await js.publish("city.citymgmt.case.reported", b"not json at all")

    async def letters_count() -> int:
        return len(await read_dead_letters(js))

    await eventually(lambda: intake.stats.dead_lettered == 3, what="three dead letters")
    letters = {lt.reason: lt for lt in await read_dead_letters(js)}
    assert set(letters) == {"unknown_department", "not_found", "invalid_json"}
    assert (
        letters["not_found"].deliveries == 4
        and letters["not_found"].subject == "city.citymgmt.case.registered"
    )
    intake.stop()
    await task

    # Fix the causes: configure the fire department, and send the missing report.
    config = tmp_path / "config"
    config.mkdir()
    (config / "departments.toml").write_text(
        (DEFAULTS_DIR / "departments.toml").read_text()
        + '\n[departments.fire]\nname = "消防"\nname_en = "Fire and Rescue"\nkinds = ["case"]\n'
    )
    await js.publish("city.citymgmt.case.reported", orjson.dumps(event("O-1", m.Action.REPORTED)))
    intake, task = await start_intake(nc, store_url, config_dir=config, settings=FAST)
    try:
        before = (await js.stream_info(m.STREAM)).state.last_seq
        replayed = await replay_dead_letters(js)
        assert len(replayed) == 3
        await replay_dead_letters(js)  # running it twice re-drives each dead letter once (dedup ids)
        assert (await js.stream_info(m.STREAM)).state.last_seq == before + 3
        await eventually(lambda: intake.stats.replays_cleared >= 3, what="three replays cleared")
        remaining = await read_dead_letters(js)
        # The two fixed ones are gone; the unparseable one was dead-lettered again, replacing the old.
        assert [lt.reason for lt in remaining] == ["invalid_json"]
        assert remaining[0].replay_of == str(letters["invalid_json"].seq)
        assert remaining[0].seq > max(lt.seq for lt in letters.values())
        assert await letters_count() == 1
    finally:
        intake.stop()
        await task
        await nc.close()

    ledger = build_ledger(store_url)
    assert ledger.get_case(m.case_id_for("fire-119", "F-1")).origin_department == "fire"
    assert ledger.get_case(m.case_id_for("citymgmt-dcm", "O-1")).stage.value == "registered"


async def test_a_redelivered_poison_message_is_filed_once(nats_server: EmbeddedNats) -> None:
    """A batch slower than the ack wait is redelivered while it is still being decided, and both
    deliveries of a poison message are dead-lettered: the copy in CITY_DLQ is keyed by the
    message's stream sequence, so the server keeps one (a delivery count in the key made the
    second a new message: 60 dead letters for 40 poison events on a loaded machine)."""
    from nats.js.api import ConsumerConfig

    from hub.intake import ensure_streams
    from hub.intake.dead_letters import Letter, file_dead_letters

    nc = await connect_nats(nats_server.url, "test")
    try:
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        await js.publish("city.citymgmt.case.reported", b"not json at all")
        sub = await js.pull_subscribe(
            "city.citymgmt.case.reported",
            durable="slow-batch",
            stream=m.STREAM,
            config=ConsumerConfig(ack_wait=1.0),
        )
        deliveries = []

        async def delivered_twice() -> bool:
            with contextlib.suppress(TimeoutError, NatsTimeoutError):
                deliveries.extend(await sub.fetch(1, timeout=1))
            return len(deliveries) >= 2

        await eventually(delivered_twice, what="the unacknowledged message redelivered")
        first, again = deliveries[0], deliveries[1]
        # The same stored message, delivered again (on a busy machine a fetch that timed out may
        # have taken a delivery of its own, so the count need not be exactly 2).
        assert first.metadata.sequence.stream == again.metadata.sequence.stream
        assert first.metadata.num_delivered < again.metadata.num_delivered
        letters = [Letter(d, m.Reason.INVALID_JSON, "", "not JSON") for d in (first, again)]
        await file_dead_letters(js, letters[:1])
        await file_dead_letters(js, letters[1:])
        assert (await js.stream_info(m.DLQ_STREAM)).state.messages == 1
        assert [lt.deliveries for lt in await read_dead_letters(js)] == [first.metadata.num_delivered]
    finally:
        await nc.close()
