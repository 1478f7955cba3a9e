"""Issue 9 acceptance: three intake workers share the city by case partitions (ADR 0006); one is
SIGKILLed mid-batch and restarted. Every event is stored exactly once, nothing is lost, and each
case's versions 1..n hold its events in the order they were published.

Real processes: three ``hub intake --worker I --workers 3`` subprocesses (each with its own
store-writer process) on one store, a real nats-server, the publisher of the connectors. Runs on
PostgreSQL and on SQLite: eventsourcing's SQLite recorder inserts in a plain transaction whose
first statement is the INSERT, so writer processes queue on the file lock (30 s lock timeout)
instead of failing, and the notification order is the commit order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from connectors.publisher import publish_events
from hub import messages as m
from hub.intake import IntakeSettings, ensure_streams
from ops.bootstrap import build_ledger, connect_nats
from ops.natsd import EmbeddedNats
from tests.factories import LIFECYCLE, event
from tests.support import assert_exactly_once, eventually, kill_leftovers, stored_history

HUB = str(Path(sys.executable).parent / "hub")
WORKERS = 3
CASES = 2_860  # × 7 closed-loop events = 20,020
KILLED = 1  # worker 1 of 3: partitions 1, 4, 7, 10


def city_events() -> list[dict[str, Any]]:
    """Many cases, each a full closed loop, interleaved as a live city publishes them (a batch holds
    many cases at several stages); every 10th case is verified by an operator command that names
    the case by its hub id (another source, the same case key)."""
    histories = []
    for i in range(CASES):
        caseref = f"W{i:05d}"
        steps = [event(caseref, action, n=s) for s, action in enumerate(LIFECYCLE)]
        if i % 10 == 0:
            verified = LIFECYCLE.index(m.Action.VERIFIED)
            steps[verified] = event(
                caseref, m.Action.VERIFIED, n=verified, department="command", source="hub-command",
                caseid=m.case_id_for("citymgmt-dcm", caseref), actorrole="operator",
                event_id=f"op-{caseref}-verified",
            )  # fmt: skip
        histories.append(steps)
    out: list[dict[str, Any]] = []
    for start in range(0, CASES, 40):
        group = histories[start : start + 40]
        for step in range(len(LIFECYCLE)):
            out.extend(h[step] for h in group)
    return out


def spawn_worker(
    nats_url: str, store_url: str, tmp_path: Path, worker: int, tag: str
) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"worker-{worker}-{tag}.log").open("wb")
    return subprocess.Popen(
        [
            HUB, "intake", "--nats-url", nats_url, "--store-url", store_url,
            "--worker", str(worker), "--workers", str(WORKERS),
            "--batch-size", "200", "--retry-delays", "0.2,0.5,1,2,4", "--ack-wait", "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HUB_DATA_DIR": str(tmp_path / f"var-{worker}")},
    )  # fmt: skip


async def consumers(js: JetStreamContext, worker: int) -> list[Any]:
    plan = IntakeSettings(worker=worker, workers=WORKERS).consumers()
    return [await js.consumer_info(m.STREAM, durable) for durable, _ in plan]


@pytest.mark.slow
async def test_three_workers_one_killed_mid_batch_keep_every_case_in_order(
    nats_server: EmbeddedNats, store_url: str, tmp_path: Path
) -> None:
    events = city_events()
    nc = await connect_nats(nats_server.url, "test")
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    await ensure_streams(js)
    third = len(events) // 3
    assert {r.status for r in await publish_events(js, events[:third])} == {"accepted"}
    ledger = build_ledger(store_url)

    def stored() -> int:
        return ledger.recorder.max_notification_id() or 0

    procs: dict[str, subprocess.Popen[bytes]] = {}
    for w in range(WORKERS):
        procs[f"{w}"] = spawn_worker(nats_server.url, store_url, tmp_path, w, f"{w}")
    publishing = asyncio.create_task(publish_events(js, events[third:]))  # the city keeps publishing
    try:

        async def victim_busy() -> bool:
            """Kill only a worker that has been working: its durables exist (a slow start on a
            loaded machine once left them missing when the others had stored 4,000 events) and
            it holds events it has not acknowledged yet."""
            if stored() <= 4000:
                return False
            try:
                infos = await consumers(js, KILLED)
            except NotFoundError:
                return False
            return sum(c.num_ack_pending for c in infos) > 0

        await eventually(victim_busy, every=0.01)
        victim = procs[f"{KILLED}"]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # Mid-batch: the killed worker held events it had been handed but not acknowledged.
        in_flight = sum(c.num_ack_pending for c in await consumers(js, KILLED))
        killed_at = stored()
        assert in_flight > 0, "the worker was idle when killed; nothing was in flight"
        assert killed_at < len(events), "the workers finished before one could be killed"
        await asyncio.sleep(0.5)
        procs[f"{KILLED}-restarted"] = spawn_worker(
            nats_server.url, store_url, tmp_path, KILLED, f"{KILLED}-restarted"
        )

        assert {r.status for r in await publishing} == {"accepted"}
        await eventually(lambda: stored() >= len(events), timeout=300, what="every event stored")
        await asyncio.sleep(1.5)  # anything applied twice would show up now

        async def drained() -> bool:  # stored comes before the ack: let the last acks arrive
            infos = [info for w in range(WORKERS) for info in await consumers(js, w)]
            return all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos)

        await eventually(drained, what="every partition drained and acknowledged")
        for w in range(WORKERS):  # every partition drained; each worker took its share
            for info in await consumers(js, w):
                assert info.num_pending == 0 and info.num_ack_pending == 0, info.name
                if info.name != "intake":
                    assert info.delivered.stream_seq > 0, f"worker {w}: {info.name} got nothing"
        for name, proc in procs.items():
            if name == f"{KILLED}":
                continue
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, (
                tmp_path / f"worker-{name[0]}-{'b' if 'restart' in name else 'a'}.log"
            ).read_text()
        # The server partitioned by the case key as partition_of() predicts (a sample of the stream),
        # and stored only the partition, not the key (ADR 0006).
        for seq in range(1, len(events), 997):
            msg = await js.get_msg(m.STREAM, seq)
            partition = msg.subject.split(".")[4]
            assert msg.subject.count(".") == 4
            assert int(partition) == m.partition_of(m.case_key_of(orjson.loads(msg.data)) or "")
    finally:
        publishing.cancel()
        kill_leftovers(procs.values())
        await nc.close()

    history = stored_history(build_ledger(store_url))
    assert_exactly_once(history, (e["id"] for e in events))
    assert len(history) == CASES
    published: dict[Any, list[str]] = {}
    for e in events:
        published.setdefault(m.case_id_for("citymgmt-dcm", e["caseref"]), []).append(e["id"])
    for case_id, versions in history.items():
        in_version_order = [event_id for _, event_id in sorted(versions)]
        assert in_version_order == published[case_id], f"case {case_id} out of publish order"
