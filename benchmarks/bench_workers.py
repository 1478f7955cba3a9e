"""Intake throughput with 1 and with 3 ``hub intake`` workers on PostgreSQL, side by side (ADR 0006).

The same 49,000 events (7,000 closed-loop cases, interleaved as a live city publishes them, each
on its case-keyed subject) are published into a fresh ``CITY`` stream first; then N real
``hub intake --worker i --workers N`` processes (each with its store-writer and audit-chain
processes) record them into a fresh PostgreSQL database. The figure is the steady rate: events
stored between 10 % and 90 % of the total, over that time (worker start-up and the tail are
left out); the rate from the first to the last stored event is printed beside it. Rounds
alternate 1, 3, 1, 3 … and medians are reported: this 2-core machine is shared and drifts.

What to expect here: every worker is two busy processes (intake, writer) plus PostgreSQL and
nats-server, so on 2 cores three workers mostly share the same CPU; the bench shows what
partitioning costs and gains on this box, not on three machines.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.intake import make_events
from benchmarks.workers_support import pg_database, pg_unreachable, spawn_workers, stop_workers
from connectors.publisher import publish_events
from hub.intake import ensure_streams
from ops.bootstrap import build_ledger, connect_nats
from ops.natsd import EmbeddedNats, free_port

ROUNDS = 2
WORKER_COUNTS = (1, 3)


async def _one(events: list[dict[str, Any]], workers: int, tmp: Path) -> dict[str, float]:
    n = len(events)
    server = EmbeddedNats(store_dir=tmp / "nats", port=free_port())
    server.start()
    try:
        nc = await connect_nats(server.url, "bench-workers")
        js = nc.jetstream(timeout=20, publish_async_max_pending=4000)
        await ensure_streams(js)
        results = await publish_events(js, events)
        assert all(r.status == "accepted" for r in results), "publishing the bench's events failed"
        await nc.close()
        with pg_database("hub_bench_workers") as store_url:
            reader = build_ledger(store_url)
            procs = spawn_workers(server.url, store_url, workers, tmp / "logs")
            marks: dict[str, float] = {}
            started = time.perf_counter()
            try:
                while True:
                    stored = reader.recorder.max_notification_id() or 0
                    now = time.perf_counter()
                    if stored and "first" not in marks:
                        marks["first"] = now
                    if stored >= 0.1 * n and "p10" not in marks:
                        marks["p10"], marks["at10"] = now, stored
                    if stored >= 0.9 * n and "p90" not in marks:
                        marks["p90"], marks["at90"] = now, stored
                    if stored >= n:
                        marks["last"] = now
                        break
                    exited = [i for i, p in enumerate(procs) if p.poll() is not None]
                    if exited:
                        # The temporary directory goes with the run: say here what the worker said.
                        log = (tmp / "logs" / f"worker-{exited[0]}.log").read_text(errors="replace")
                        raise RuntimeError(
                            f"worker {exited[0]} of {workers} exited early (code "
                            f"{procs[exited[0]].returncode}); its log ends:\n{log[-3000:]}"
                        )
                    if now - started > 600:
                        raise RuntimeError(f"{workers} workers stored {stored} of {n} events in 600 s")
                    await asyncio.sleep(0.02)
            finally:
                codes = stop_workers(procs)
            assert codes == [0] * workers, f"workers exited with {codes}; see {tmp / 'logs'}"
            assert reader.recorder.max_notification_id() == n
            del reader
    finally:
        server.stop()
    return {
        "steady": (marks["at90"] - marks["at10"]) / (marks["p90"] - marks["p10"]),
        "first_to_last": n / (marks["last"] - marks["first"]),
        "spawn_to_last_s": marks["last"] - started,
    }


async def _run(tmp: Path) -> dict[str, Any]:
    events = make_events()
    rounds: dict[int, list[dict[str, float]]] = {w: [] for w in WORKER_COUNTS}
    for r in range(ROUNDS):
        for workers in WORKER_COUNTS:
            figures = await _one(events, workers, tmp / f"r{r}-w{workers}")
            rounds[workers].append(figures)
            print(
                f"  round {r + 1}: {workers} worker(s): {figures['steady']:8.0f} ev/s steady, "
                f"{figures['first_to_last']:8.0f} ev/s first→last, "
                f"{figures['spawn_to_last_s']:.1f} s from spawn"
            )
    med = {w: statistics.median(f["steady"] for f in rounds[w]) for w in WORKER_COUNTS}
    med_total = {w: statistics.median(f["first_to_last"] for f in rounds[w]) for w in WORKER_COUNTS}
    print("  workers   steady ev/s   first→last ev/s   (medians, PostgreSQL)")
    for w in WORKER_COUNTS:
        print(f"  {w:>7}   {med[w]:>11.0f}   {med_total[w]:>15.0f}")
    return {
        "events": len(events),
        "store": "postgresql",
        "rounds": ROUNDS,
        "one_worker_events_per_s": round(med[1]),
        "three_workers_events_per_s": round(med[3]),
        "speedup_3_over_1": round(med[3] / med[1], 2),
        "one_worker_first_to_last_per_s": round(med_total[1]),
        "three_workers_first_to_last_per_s": round(med_total[3]),
        "all_rounds": {str(w): [{k: round(v, 1) for k, v in f.items()} for f in rounds[w]] for w in rounds},
        "method": "pre-published stream; steady = events stored between 10% and 90% / that time",
    }


def run() -> dict[str, Any]:
    reason = pg_unreachable()
    if reason:
        print(f"  skipped: {reason}")
        return {"skipped": reason}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        return asyncio.run(_run(Path(tmp)))
