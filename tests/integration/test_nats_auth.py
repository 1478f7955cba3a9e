"""Issue 15 acceptance: the hub's NATS is authenticated by default, departments are confined to
their own subjects (no operator commands, no audit anchor, no eavesdropping on the hub's replies),
the hub's generated credentials are private and kept, and stream retention is applied and kept."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError

from connectors.publisher import publish_events
from hub import messages as m
from hub.adapters.audit.anchor import ANCHOR_BUCKET
from hub.intake import DEFAULT_MAX_AGE_S, StreamSettings, ensure_streams
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.cluster import stream_settings_for
from ops.nats_auth import HUB_CREDENTIALS_FILE, NatsAuth, NatsAuthError
from ops.natsd import EmbeddedNats, free_port, launch_server
from ops.settings import Settings
from tests.factories import event
from tests.support import eventually

REFUSED = 1.0  # a refused JetStream request times out (the server drops it); the allowed get longer


async def _connect_refused(url: str) -> str:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    with pytest.raises(NatsError) as caught:
        await nats.connect(
            url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5, error_cb=on_error
        )
    return f"{caught.value} {errors}"


async def test_anonymous_and_wrong_passwords_are_refused(nats_server: EmbeddedNats) -> None:
    assert "@" not in nats_server.address
    assert "authorization violation" in (await _connect_refused(nats_server.address)).lower()
    wrong = nats_server.address.replace("://", "://police:not-the-password@")
    assert "authorization violation" in (await _connect_refused(wrong)).lower()
    nc = await connect_nats(nats_server.url, "the-hub")  # the hub's own user gets in
    assert nc.is_connected
    await nc.close()
    # the hub's reconnect-forever connection says so at once instead of retrying a refusal forever
    with pytest.raises(NatsAuthError, match=r"refused the connection .*connect as a user") as refused:
        await asyncio.wait_for(connect_nats(wrong, "a-cli-command"), 60)
    assert "not-the-password" not in str(refused.value)  # the message shows the URL redacted


async def test_a_department_cannot_command_read_the_audit_anchor_or_the_hubs_replies(
    nats_server: EmbeddedNats,
) -> None:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    hub = await connect_nats(nats_server.url, "hub")
    police = await nats.connect(nats_server.department_url("police"), error_cb=on_error)
    try:
        hub_js = hub.jetstream(timeout=30)
        await ensure_streams(hub_js)
        kv = await hub_js.create_key_value(bucket=ANCHOR_BUCKET, history=8)
        await kv.put("caseledger.chain_head", b"anchored-by-the-hub")
        js = police.jetstream(timeout=REFUSED)

        # 1. operator commands: refused on the wire, reported per event by the publisher, not stored
        command = event("CMD-1", "rejected", department=m.COMMAND_DEPARTMENT, source="command-centre")
        with pytest.raises(NatsTimeoutError):
            await js.publish("city.command.case.rejected", orjson.dumps(command))
        (result,) = await publish_events(js, [command], attempts=2, timeout=REFUSED, max_delay=0.2)
        assert result.status == "rejected", result

        # 2. the audit anchor: no KV API, no writes, no reads (subscribed or direct)
        with pytest.raises((NatsTimeoutError, NatsError)):
            await (await js.key_value(ANCHOR_BUCKET)).get("caseledger.chain_head")
        await police.publish(f"$KV.{ANCHOR_BUCKET}.caseledger.chain_head", b"forged")
        watched: list[str] = []

        async def watch(msg: Msg) -> None:
            watched.append(msg.subject)

        await police.subscribe(f"$KV.{ANCHOR_BUCKET}.>", cb=watch)
        with pytest.raises((NatsTimeoutError, NatsError)):
            await police.request(
                f"$JS.API.DIRECT.GET.KV_{ANCHOR_BUCKET}.$KV.{ANCHOR_BUCKET}.caseledger.chain_head",
                b"",
                timeout=REFUSED,
            )

        # 3. the hub's replies (intake deliveries, KV reads) come back on an inbox no department reads
        snooped: list[str] = []

        async def snoop(msg: Msg) -> None:
            snooped.append(msg.subject)

        await police.subscribe("_INBOX.>", cb=snoop)
        await police.subscribe("_INBOX_HUB.>", cb=snoop)
        await police.flush()
        await kv.put("caseledger.chain_head", b"anchored-again")
        assert (await kv.get("caseledger.chain_head")).value == b"anchored-again"
        await hub_js.stream_info(m.STREAM)
        await police.flush()
        await asyncio.sleep(0.5)  # whatever the server would route to police has arrived by now

        assert watched == [] and snooped == [], (watched, snooped)
        assert (await hub_js.stream_info(m.STREAM)).state.messages == 0, "no command was stored"
        history = await kv.history("caseledger.chain_head")
        assert [entry.value for entry in history] == [b"anchored-by-the-hub", b"anchored-again"]
        violations = [e.lower() for e in errors if "permissions violation" in e.lower()]
        for refused in ("city.command.case.rejected", f"$kv.{ANCHOR_BUCKET}", "$js.api", "_inbox_hub"):
            assert any(refused.lower() in e for e in violations), (refused, errors)
    finally:
        await police.close()
        await hub.close()


async def test_a_department_publishes_on_its_own_subjects_and_the_event_is_stored(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'events.sqlite'}"
    hub = await connect_nats(nats_server.url, "hub")
    police = await connect_nats(nats_server.department_url("police"), "police-110")
    intake, task = await start_intake(hub, store, writer_process=False)
    try:
        report = event("AUTH-1", m.Action.REPORTED, department="police", kind="incident", source="police-110")
        (result,) = await publish_events(police.jetstream(timeout=30), [report])
        assert result.status == "accepted", result
        await eventually(lambda: intake.stats.applied >= 1, what="the police report applied")
    finally:
        intake.stop()
        await task
        await police.close()
        await hub.close()
    case = build_ledger(store).get_case(m.case_id_for("police-110", "AUTH-1"))
    assert case.origin_department == "police"


async def test_the_hubs_credentials_are_private_and_kept_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "var"
    first = EmbeddedNats(store_dir=data / "nats", port=free_port(), auth=NatsAuth.load(data, None))
    creds = data / HUB_CREDENTIALS_FILE
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    password = json.loads(creds.read_text())["password"]
    assert len(password) >= 32 and password == first.auth.hub_password
    first.start()
    try:
        nc = await connect_nats(first.url, "hub")
        await ensure_streams(nc.jetstream(timeout=30))
        await nc.close()
        conf = data / "nats" / "nats-server.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600  # the server's file holds the passwords
    finally:
        first.stop()

    creds.chmod(0o644)  # loosened by hand: tightened again at the next start
    second = EmbeddedNats(store_dir=data / "nats", port=first.port, auth=NatsAuth.load(data, None))
    assert second.auth.hub_password == password and stat.S_IMODE(creds.stat().st_mode) == 0o600
    second.start()
    try:
        nc = await connect_nats(first.url, "hub")  # the first start's URL still opens the second
        assert (await nc.jetstream(timeout=30).stream_info(m.STREAM)).config.name == m.STREAM
        await nc.close()

        # the CLI finds it: nats.url holds the bare address, credentials are added from the data dir
        settings = Settings(data_dir=data, nats_url=None, store_url="", config_dir=None)
        settings.nats_url_file.write_text(second.address + "\n")
        assert password not in settings.nats_url_file.read_text()
        assert settings.resolve_nats_url() == second.url
        assert settings.resolve_nats_url(second.address) == second.url
        other = f"nats://127.0.0.1:{free_port()}"  # another server: never sent the hub's secret
        assert settings.resolve_nats_url(other) == other
        police = second.department_url("police")
        assert settings.resolve_nats_url(police) == police
    finally:
        second.stop()


async def test_retention_is_applied_and_kept_across_restarts(
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def retention() -> list[tuple[float | None, int | None]]:
        nc = await connect_nats(nats_server.url, "hub")
        try:
            js = nc.jetstream(timeout=30)
            await ensure_streams(js, stream_settings_for(nc))  # what every start of the hub does
            configs = [(await js.stream_info(name)).config for name in (m.STREAM, m.DLQ_STREAM)]
            return [(c.max_age, c.max_bytes) for c in configs]
        finally:
            await nc.close()

    async def restart() -> None:
        await nats_server.restart()  # stops the server, starts it again on the same store

    for name in ("HUB_STREAM_MAX_AGE", "HUB_STREAM_MAX_BYTES", "HUB_STREAM_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    # a new stream: the bounded default (30 days), no size limit
    assert await retention() == [(DEFAULT_MAX_AGE_S, -1)] * 2

    # configured: applied to both streams, and kept by a restart with the setting gone
    monkeypatch.setenv("HUB_STREAM_MAX_AGE", "12h")
    monkeypatch.setenv("HUB_STREAM_MAX_BYTES", "1GB")
    assert await retention() == [(12 * 3600.0, 1024**3)] * 2
    await restart()
    monkeypatch.delenv("HUB_STREAM_MAX_AGE")
    monkeypatch.delenv("HUB_STREAM_MAX_BYTES")
    assert await retention() == [(12 * 3600.0, 1024**3)] * 2

    # set by an operator on the stream itself: kept at the next start (the old code reset it)
    nc = await connect_nats(nats_server.url, "operator")
    js = nc.jetstream(timeout=30)
    config = (await js.stream_info(m.STREAM)).config
    config.max_age, config.max_bytes = 6 * 3600.0, 512 * 1024**2
    await js.update_stream(config)
    await nc.close()
    await restart()
    assert (await retention())[0] == (6 * 3600.0, 512 * 1024**2)

    # "keep forever" must be said; a stream left unbounded (an earlier version's) gets the default
    monkeypatch.setenv("HUB_STREAM_MAX_AGE", "unlimited")
    assert [age for age, _ in await retention()] == [0.0, 0.0]
    monkeypatch.delenv("HUB_STREAM_MAX_AGE")
    await restart()
    assert [age for age, _ in await retention()] == [DEFAULT_MAX_AGE_S] * 2


def test_a_max_age_shorter_than_the_duplicate_window_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate window"):
        StreamSettings(max_age_s=60)


async def test_a_data_dir_of_the_anonymous_versions_keeps_its_stream(tmp_path: Path) -> None:
    """The users live in the server's global account, where an earlier (anonymous) hub kept CITY."""
    server = EmbeddedNats(store_dir=tmp_path / "nats", port=free_port())
    before = server.config_text().split("authorization {")[0]  # what earlier versions wrote
    old = launch_server(server.store_dir, before, server.host, server.port, name="nats-server")
    try:
        nc = await nats.connect(server.address)
        js = nc.jetstream(timeout=30)
        await ensure_streams(js)
        await js.publish("city.citymgmt.case.reported", b"{}", headers={"Nats-Msg-Id": "before-auth"})
        await nc.close()
    finally:
        old.terminate()
        old.wait(30)
    server.start()
    try:
        assert "authorization violation" in (await _connect_refused(server.address)).lower()
        nc = await connect_nats(server.url, "hub")
        assert (await nc.jetstream(timeout=30).stream_info(m.STREAM)).state.messages == 1
        await nc.close()
    finally:
        server.stop()
