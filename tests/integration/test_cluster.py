"""Issue 9: the hub on a 3-node NATS JetStream cluster (design §9).

Real nats-servers from the venv on loopback, a real ``hub intake`` subprocess. The fault test kills
the node leading the CITY stream with SIGKILL while events are being published, restarts it, and
checks that every event is stored exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.publisher import Published, publish_events
from hub import messages as m
from hub.intake import ensure_streams
from ops.bootstrap import build_ledger, connect_nats
from ops.cluster import NATS_DIR, NatsCluster, stream_replicas, stream_settings_for
from ops.natsd import port_is_free, server_binary
from tests.factories import case_history
from tests.support import assert_exactly_once, eventually, stored_history

HUB = str(Path(sys.executable).parent / "hub")


@pytest.fixture()
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster.plan(tmp_path / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        assert all(node.process is None for node in cluster.nodes)


def test_shipped_cluster_configs_are_valid() -> None:
    """ops/nats/cluster-n{1,2,3}.conf (with the department accounts) pass nats-server's config check."""
    for i in (1, 2, 3):
        result = subprocess.run(
            [str(server_binary()), "-t", "-c", str(NATS_DIR / f"cluster-n{i}.conf")],
            capture_output=True,
            text=True,
            cwd=NATS_DIR.parents[1],
            timeout=20,
        )
        assert result.returncode == 0, result.stderr + result.stdout
        assert "is valid" in result.stdout + result.stderr


def _free_base() -> int:
    for _ in range(50):
        base = random.randrange(20000, 28000)
        if all(port_is_free(base + off + i) for off in (0, 2000, 4000) for i in range(3)):
            return base
    raise AssertionError("no free base port found")


def test_hub_cluster_up_and_down(tmp_path: Path) -> None:
    """The CLI starts three routed nodes in the background, prints HUB_NATS_URL, and stops them."""
    data = tmp_path / "c"
    base = _free_base()
    env = {k: v for k, v in os.environ.items() if k != "HUB_NATS_URL"}
    try:
        up = subprocess.run(
            [HUB, "cluster", "up", "--data-dir", str(data), "--base-port", str(base)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        urls = next(u for u in up.stdout.split() if u.startswith("HUB_NATS_URL=")).split("=", 1)[1]
        assert urls.split(",") == [f"nats://hub:hub-dev@127.0.0.1:{base + i}" for i in range(3)]
        cluster = NatsCluster.load(data)
        assert cluster is not None and all(n.pid for n in cluster.nodes)
        assert cluster.meta_leader() in {"n1", "n2", "n3"}
        status = subprocess.run(
            [HUB, "cluster", "status", "--data-dir", str(data)], capture_output=True, text=True, timeout=30
        )
        assert status.stdout.count(": ok") == 3, status.stdout
    finally:
        down = subprocess.run(
            [HUB, "cluster", "down", "--data-dir", str(data)], capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(port_is_free(base + i) for i in range(3)), "a node is still listening after hub cluster down"


async def test_streams_get_three_replicas_on_a_cluster(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUB_STREAM_REPLICAS", raising=False)
    nc = await connect_nats(nats_cluster.urls, "test")
    try:
        assert stream_replicas(nc) == 3
        js = nc.jetstream(timeout=10)
        await ensure_streams(js, stream_settings_for(nc))
        for stream in (m.STREAM, m.DLQ_STREAM):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3
            assert info.cluster is not None and info.cluster.leader in {"n1", "n2", "n3"}
            assert len(info.cluster.replicas or []) == 2
        monkeypatch.setenv("HUB_STREAM_REPLICAS", "1")
        assert stream_replicas(nc) == 1
    finally:
        await nc.close()


# --------------------------------------------------------------------------- the fault test
CASES = 2858  # × 7 closed-loop events = 20,006
CHUNK = 500
KILL_AT = 6000  # events published before the leader is killed; the rest after


def spawn_intake(nats_url: str, store_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / "intake.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "HUB_STREAM_REPLICAS"}
    return subprocess.Popen(
        [HUB, "intake", "--nats-url", nats_url, "--store-url", store_url, "--batch-size", "200",
         "--retry-delays", "0.2,0.5,1,2,4,8,16", "--ack-wait", "2"],  # retries outlast a slow machine
        stdout=log, stderr=subprocess.STDOUT, env={**env, "HUB_DATA_DIR": str(tmp_path / "var")},
    )  # fmt: skip


@pytest.mark.slow
async def test_stream_leader_killed_and_restarted_while_publishing_20000_events(
    nats_cluster: NatsCluster, tmp_path: Path
) -> None:
    events = [e for i in range(CASES) for e in case_history(f"L{i:04d}")]
    assert len(events) >= 20_000
    store_url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    nc = await connect_nats(nats_cluster.urls, "test-publisher")
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    await ensure_streams(js, stream_settings_for(nc))
    ledger = build_ledger(store_url)
    published: list[Published] = []
    timeline: dict[str, Any] = {}

    def stored() -> int:
        return ledger.recorder.max_notification_id() or 0

    killed = asyncio.Event()

    async def publish_all() -> None:
        """In chunks with short pauses; from ``KILL_AT`` on only once the leader is killed, so that
        publishing spans the kill however fast the machine (on a busy one the intake lagged so far
        behind that every event was published before the kill, and the wait for publishing to go on
        after it could never be met)."""
        for start in range(0, len(events), CHUNK):
            if start >= KILL_AT:
                await killed.wait()
            published.extend(
                await publish_events(js, events[start : start + CHUNK], attempts=15, max_delay=2.0)
            )
            await asyncio.sleep(0.1)

    intake = spawn_intake(nats_cluster.urls, store_url, tmp_path)
    publishing = asyncio.create_task(publish_all())
    started = time.monotonic()
    try:
        await eventually(lambda: len(published) >= KILL_AT and stored() > 2000, every=0.02)
        leader_name = (await js.stream_info(m.STREAM)).cluster.leader  # type: ignore[union-attr]
        assert leader_name is not None
        leader = nats_cluster.node(leader_name)
        timeline["killed"] = {"node": leader_name, "published": len(published), "stored": stored()}
        leader.kill()  # SIGKILL of the CITY stream leader
        killed.set()

        # The two survivors elect a new leader; publishing and intake continue without the node.
        at_kill = len(published)
        await eventually(lambda: len(published) >= at_kill + 3000, every=0.05)
        timeline["restarted"] = {"published": len(published), "stored": stored()}
        leader.start()

        await asyncio.wait_for(publishing, 300)
        statuses = {r.status for r in published}
        assert statuses <= {"accepted", "duplicate"}, [r for r in published if r.status == "rejected"][:3]
        await eventually(lambda: stored() >= len(events))
        await asyncio.sleep(2.5)  # a redelivery applied twice would show up now (ack wait 2 s)
        info = await js.stream_info(m.STREAM)
        timeline["leader_after"] = info.cluster.leader if info.cluster else None
        timeline["seconds"] = round(time.monotonic() - started, 1)
        print(f"cluster fault timeline: {timeline}")
        assert info.state.messages == len(events)  # each event once in the stream, too (dedup ids)

        async def restarted_node_current() -> bool:
            info = await js.stream_info(m.STREAM)
            replicas = {p.name: p for p in (info.cluster.replicas or [])} if info.cluster else {}
            if info.cluster and info.cluster.leader == leader_name:
                return True
            peer = replicas.get(leader_name)
            return bool(peer and peer.current)

        await eventually(restarted_node_current, every=0.5)
    finally:
        if not publishing.done():
            publishing.cancel()
        intake.terminate()
        try:
            code = intake.wait(30)
        except subprocess.TimeoutExpired:
            intake.kill()
            code = intake.wait(10)
        await nc.close()
    assert code == 0, (tmp_path / "intake.log").read_text()[-3000:]
    history = stored_history(build_ledger(store_url))
    assert_exactly_once(history, (e["id"] for e in events))
    assert len(history) == CASES and all(len(v) == 7 for v in history.values())
