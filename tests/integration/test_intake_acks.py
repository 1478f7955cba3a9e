"""The intake acknowledges a batch with one buffered write (``ack_all``): every message is acked
once, explicitly, before its ack wait runs out, so none comes back as a duplicate."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, MsgAlreadyAckdError, NotJSMessageError

from connectors.publisher import publish_events
from hub import messages as m
from hub.adapters.nats import ack_all
from hub.intake import IntakeSettings
from ops.bootstrap import connect_nats, start_intake
from ops.natsd import EmbeddedNats
from tests.factories import case_history
from tests.support import eventually

CASES = 150  # 1,050 events: two full batches of 500 and a remainder


async def test_every_message_is_acked_once_within_its_ack_wait(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    events = [e for i in range(CASES) for e in case_history(f"A{i:04d}")]
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    settings = IntakeSettings(
        batch_size=500, ack_wait_s=120.0, retry_delays_s=(1.0, 2.0, 5.0, 10.0, 30.0, 200.0)
    )
    intake, task = await start_intake(nc, f"sqlite:///{tmp_path / 'events.sqlite'}", settings=settings)
    try:
        assert {r.status for r in await publish_events(js, events)} == {"accepted"}

        async def all_acked() -> bool:
            infos = [await js.consumer_info(m.STREAM, d) for d in intake.durables]
            return intake.stats.applied == len(events) and all(
                i.num_ack_pending == 0 and i.num_pending == 0 for i in infos
            )

        # Well inside the ack wait: an ack that never reached the server would hold the message
        # pending for 120 s and then bring it back, counted as a duplicate. (The ack wait is long
        # so that a busy machine's slow batch is not mistaken for a lost ack.)
        await eventually(all_acked, timeout=100, what="every message applied and acknowledged")
    finally:
        intake.stop()
        await task
        await nc.close()
    assert (intake.stats.applied, intake.stats.duplicates, intake.stats.retried) == (len(events), 0, 0)


async def test_the_same_errors_as_msg_ack(nats_server: EmbeddedNats) -> None:
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10)
    await js.add_stream(name="ACKS", subjects=["acks.>"])
    await js.publish("acks.one", b"x")
    sub = await js.pull_subscribe("acks.>", durable="acks")
    (msg,) = await sub.fetch(1)
    await ack_all(nc, [])  # nothing to do
    await ack_all(nc, [msg])

    async def none_pending() -> bool:
        return (await js.consumer_info("ACKS", "acks")).num_ack_pending == 0

    await eventually(none_pending, what="the ack to arrive")
    with pytest.raises(MsgAlreadyAckdError):
        await ack_all(nc, [msg])
    with pytest.raises(NotJSMessageError):
        await ack_all(nc, [Msg(nc, "acks.two", "", b"")])
    await nc.close()
    with pytest.raises(ConnectionClosedError):
        await ack_all(nc, [Msg(nc, "acks.three", "$JS.ACK.x", b"")])
