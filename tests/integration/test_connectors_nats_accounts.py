"""Issue 4 acceptance: with the shipped ops/nats/accounts.conf departments publish only their subjects."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from connectors.publisher import publish_events
from hub.intake import ensure_streams
from ops.natsd import free_port, server_binary, wait_for_port
from tests.factories import event

CONF = Path(__file__).resolve().parents[2] / "ops" / "nats" / "accounts.conf"


@pytest.fixture()
def accounts_server(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    log = (tmp_path / "nats.log").open("wb")
    proc = subprocess.Popen(
        [
            str(server_binary()),
            "-c",
            str(CONF),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-sd",
            str(tmp_path / "js"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_port(port), (tmp_path / "nats.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def test_police_cannot_publish_on_health_subjects(accounts_server: int) -> None:
    url = f"nats://127.0.0.1:{accounts_server}"
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    hub = await nats.connect(url, user="hub", password="hub-dev")
    police = await nats.connect(url, user="police", password="police-dev", error_cb=on_error)
    try:
        hub_js = hub.jetstream()
        await ensure_streams(hub_js)
        js = police.jetstream(timeout=1.0)
        own = event("J1", "reported", department="police", kind="incident", source="police-110")
        # (the refusals below time out after 1 s by design; the allowed publish gets a busy
        # machine's time)
        ack = await js.publish(
            "city.police.incident.reported", b"{}", headers={"Nats-Msg-Id": own["id"]}, timeout=60
        )
        assert ack.seq == 1
        with pytest.raises(NatsTimeoutError):
            await js.publish("city.health.emergency.reported", b"{}", headers={"Nats-Msg-Id": "x"})
        # the connector path reports the refusal per event instead of hanging
        other = event("E1", "reported", department="health", kind="emergency", source="health-wjw")
        (result,) = await publish_events(js, [other], attempts=2, timeout=1.0, max_delay=0.2)
        assert result.status == "rejected" and "no acknowledgement" in result.error
        info = await hub_js.stream_info("CITY")
        assert info.state.messages == 1, "nothing of another department's subjects was stored"
        assert any("permissions violation" in e.lower() for e in errors), errors
        # and a department cannot touch the JetStream API (create or delete streams)
        with pytest.raises(NatsTimeoutError):
            await js.delete_stream("CITY")
    finally:
        await police.close()
        await hub.close()
