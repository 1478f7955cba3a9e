"""Soak: a steady publish rate through a full ``hub intake`` worker on PostgreSQL for N minutes.

What it shows (issue 9): that the intake keeps up at a city's steady rate for a long time without
growing — resident memory (RSS) of the intake process, its store-writer process and its audit-chain
follower at the start (idle, before any load), after the first minute (warm caches) and at the
end; events published and stored; the lag when publishing stops (published but not yet stored,
and the durables' pending + unacknowledged counts) and how long the backlog takes to drain.

The publisher keeps acks in flight (``connectors.publisher.publish_events``) and paces itself
by the clock: every 0.1 s it publishes what the target rate owes so far, so a slow moment is made
up instead of lowering the rate. Events are closed-loop case histories (7 events a case, 50
cases interleaved), each on its case-keyed subject.

``python -m benchmarks soak`` runs 10 minutes (``make bench`` includes it); try it short with
``python -m benchmarks.soak --minutes 1`` (``make soak MINUTES=1``); ``--rate`` and ``--workers``
change the load and the number of worker processes. Results: ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.intake import STEPS
from benchmarks.workers_support import (
    pg_database,
    pg_unreachable,
    rss_kib,
    spawn_workers,
    stop_workers,
    worker_processes,
)
from connectors.publisher import publish_events
from hub import messages as m
from hub.intake import IntakeSettings, ensure_streams
from ops.bootstrap import build_ledger, connect_nats
from ops.natsd import EmbeddedNats, free_port

DEFAULT_MINUTES = float(os.environ.get("HUB_SOAK_MINUTES", "10"))
DEFAULT_RATE = 2000.0
TICK_S = 0.1
SAMPLE_EVERY_S = 10.0
DRAIN_LIMIT_S = 180.0


def soak_events() -> Iterator[dict[str, Any]]:
    """An endless city: groups of 50 new cases, their 7 closed-loop steps interleaved."""
    from tests.factories import event

    for group in itertools.count():
        refs = [f"S{group:06d}-{i:02d}" for i in range(50)]
        for step, action in enumerate(STEPS):
            for ref in refs:
                yield event(ref, action, n=step)


def _memory(procs: list[Any], nats_pid: int | None = None) -> dict[str, int]:
    """RSS in MiB of every worker's processes, keyed ``w<i>.<role>`` (intake, writer, recorder, chain), and
    of nats-server when given: its per-subject state is what case-keyed subjects would grow."""
    out = {"nats-server": round(rss_kib(nats_pid) / 1024)} if nats_pid else {}
    for i, proc in enumerate(procs):
        for role, pid in worker_processes(proc.pid).items():
            out[f"w{i}.{role}"] = round(rss_kib(pid) / 1024)
    return out


async def _soak(tmp: Path, minutes: float, rate: float, workers: int) -> dict[str, Any]:
    server = EmbeddedNats(store_dir=tmp / "nats", port=free_port())
    server.start()
    try:
        nc = await connect_nats(server.url, "soak")
        js = nc.jetstream(timeout=20, publish_async_max_pending=4000)
        await ensure_streams(js)
        durables = [
            d for w in range(workers) for d, _ in IntakeSettings(worker=w, workers=workers).consumers()
        ]

        async def lag() -> int:
            total = 0
            for durable in durables:
                info = await js.consumer_info(m.STREAM, durable)
                total += (info.num_pending or 0) + (info.num_ack_pending or 0)
            return total

        with pg_database("hub_soak") as store_url:
            reader = build_ledger(store_url)

            def stored() -> int:
                return reader.recorder.max_notification_id() or 0

            procs = spawn_workers(server.url, store_url, workers, tmp / "logs")
            nats_pid = server.process.pid if server.process else None
            try:
                ready_by = time.monotonic() + 90
                while True:  # ready: every durable exists and has a pull request waiting
                    try:
                        infos = [await js.consumer_info(m.STREAM, d) for d in durables]
                        if (
                            all((i.num_waiting or 0) > 0 for i in infos)
                            and len(_memory(procs)) == 3 * workers
                        ):
                            break
                    except Exception:
                        pass
                    if time.monotonic() > ready_by or any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"the intake worker(s) did not start; see {tmp / 'logs'}")
                    await asyncio.sleep(0.2)
                rss_start = _memory(procs, nats_pid)
                print(f"  workers ready; RSS MiB at start: {rss_start}")

                events = soak_events()
                published = 0
                rejected = 0
                samples: list[dict[str, Any]] = []
                rss_1min: dict[str, int] = {}
                started = time.monotonic()
                duration = minutes * 60
                next_sample = started + SAMPLE_EVERY_S
                while (now := time.monotonic()) - started < duration:
                    owed = int(rate * (now - started)) - published
                    if owed > 0:
                        chunk = list(itertools.islice(events, owed))
                        results = await publish_events(js, chunk)
                        rejected += sum(r.status == "rejected" for r in results)
                        published += len(chunk)
                    if now >= next_sample:
                        next_sample += SAMPLE_EVERY_S
                        elapsed = now - started
                        now_stored, now_rss = stored(), _memory(procs, nats_pid)
                        samples.append(
                            {
                                "t_s": round(elapsed),
                                "published": published,
                                "stored": now_stored,
                                "consumer_lag": await lag(),
                                "rss_mib": now_rss,
                            }
                        )
                        if not rss_1min and elapsed >= 60:
                            rss_1min = now_rss
                        print(
                            f"  {elapsed:>5.0f} s  published {published:>9}  stored {now_stored:>9}  "
                            f"lag {published - now_stored:>6}  rss {now_rss}",
                            flush=True,
                        )
                    await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - now)))
                elapsed = time.monotonic() - started
                end_stored = stored()
                end_consumer_lag = await lag()
                rss_end = _memory(procs, nats_pid)
                drain_started = time.monotonic()
                while stored() < published and time.monotonic() - drain_started < DRAIN_LIMIT_S:
                    await asyncio.sleep(0.1)
                drain_s = time.monotonic() - drain_started
                final = stored()
            finally:
                codes = stop_workers(procs)
            table = reader.recorder.events_table_name  # type: ignore[attr-defined]
            import psycopg

            with psycopg.connect(store_url) as conn:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                count = int(row[0]) if row else 0
        await nc.close()
    finally:
        server.stop()
    if codes != [0] * workers:
        raise RuntimeError(f"workers exited with {codes}; see {tmp / 'logs'}")
    figures = {
        "store": "postgresql",
        "workers": workers,
        "target_rate_per_s": rate,
        "minutes": round(elapsed / 60, 2),
        "published": published,
        "publish_rejected": rejected,
        "achieved_publish_rate_per_s": round(published / elapsed),
        "stored_at_end_of_publishing": end_stored,
        "lag_at_end_events": published - end_stored,
        "consumer_pending_plus_unacked_at_end": end_consumer_lag,
        "drain_s": round(drain_s, 1),
        "stored_after_drain": count,
        "stored_equals_published": count == published and final >= published,
        "rss_mib_start": rss_start,
        "rss_mib_after_1_min": rss_1min,
        "rss_mib_end": rss_end,
        "samples": samples,
    }
    return figures


def run(minutes: float = DEFAULT_MINUTES, rate: float = DEFAULT_RATE, workers: int = 1) -> dict[str, Any]:
    reason = pg_unreachable()
    if reason:
        print(f"  skipped: {reason}")
        return {"skipped": reason}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        figures = asyncio.run(_soak(Path(tmp), minutes, rate, workers))
    for key, value in figures.items():
        if key != "samples":
            print(f"  {key:40s} {value}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="duration (default 10)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="events per second (default 2000)")
    parser.add_argument("--workers", type=int, default=1, help="hub intake worker processes (default 1)")
    args = parser.parse_args(argv)
    from benchmarks.__main__ import record

    return 0 if record("soak", lambda: run(args.minutes, args.rate, args.workers)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
