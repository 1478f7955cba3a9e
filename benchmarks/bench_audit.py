"""Audit and privacy figures, each beside its baseline measured in the same run (SQLite store).

* audit verify rate (events/s: recompute the sha256 chain from the store and compare) beside the
  raw read rate of the notification log (``select_notifications`` alone, same store, same run);
* chain append per committed batch (what the store writer does after each batch) beside the
  batch's own ``apply_batch`` time;
* sealing personal fields: ``to_stored_event`` of a report with the privacy mapper beside the
  library's plain mapper (keys cached, as in the writer).

Size: BENCH_AUDIT_CASES (default 20,000 cases × 7 events = 140,000 events).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from eventsourcing.persistence import Mapper  # noqa: E402

from hub import messages as m  # noqa: E402
from hub.adapters.audit import AuditChain  # noqa: E402
from ops.bootstrap import build_ledger  # noqa: E402
from tests.factories import case_history  # noqa: E402


def _fill(ledger: Any, n_cases: int, per_batch: int = 70) -> tuple[float, float, int]:
    """Write the store in batches of ``per_batch`` cases; chain after each (as the writer does)."""
    chain = AuditChain(ledger.recorder)
    apply_s = chain_s = 0.0
    batches = 0
    for start in range(0, n_cases, per_batch):
        items = []
        for i in range(start, min(n_cases, start + per_batch)):
            events = case_history(f"B{i}")
            events[0]["data"]["reporter"] = {"name": f"市民{i}", "phone": f"139{i:08d}"}
            items.extend(m.validate(orjson.dumps(e), ledger.catalogue) for e in events)
        t0 = time.perf_counter()
        ledger.apply_batch(items)
        t1 = time.perf_counter()
        chain.extend()
        t2 = time.perf_counter()
        apply_s += t1 - t0
        chain_s += t2 - t1
        batches += 1
    return apply_s, chain_s, batches


def _raw_read(recorder: Any) -> tuple[int, float]:
    t0 = time.perf_counter()
    position = total = 0
    while True:
        section = recorder.select_notifications(start=position, limit=5000, inclusive_of_start=False)
        if not section:
            break
        total += len(section)
        position = section[-1].id
    return total, time.perf_counter() - t0


def _sealing(ledger: Any, n: int = 5000) -> dict[str, float]:
    cases = [ledger.get_case(m.case_id_for("citymgmt-dcm", f"B{i}")) for i in range(n)]
    reports = [next(iter(ledger.events.get(c.id, lte=1))) for c in cases]
    notes = [e for c in cases for e in ledger.events.get(c.id) if getattr(e, "note", "")]  # issue 15
    plain = Mapper(transcoder=ledger.mapper.transcoder)
    sealed = ledger.mapper
    sealed.prepare(reports + notes)  # keys cached, as in the writer after the first sight of a case
    figures = {}
    for kind, events in (("", reports), ("note_", notes)):
        for name, mapper in (("plain", plain), ("sealed", sealed)):
            t0 = time.perf_counter()
            for e in events:
                mapper.to_stored_event(e)
            figures[kind + name] = (time.perf_counter() - t0) / max(1, len(events)) * 1e6
    return figures


def run() -> dict[str, Any]:
    n_cases = int(os.environ.get("BENCH_AUDIT_CASES", "20000"))
    with tempfile.TemporaryDirectory() as tmp:
        ledger = build_ledger(f"sqlite:///{Path(tmp) / 'events.sqlite'}")
        apply_s, chain_s, batches = _fill(ledger, n_cases)
        events = ledger.recorder.max_notification_id() or 0
        read_n, read_s = _raw_read(ledger.recorder)
        chain = AuditChain(ledger.recorder)
        t0 = time.perf_counter()
        report = chain.verify()
        verify_s = time.perf_counter() - t0
        assert report.ok and report.checked == events, report.finding
        read_n2, read_s2 = _raw_read(ledger.recorder)  # again after verify: warm cache both ways
        seal = _sealing(ledger, min(5000, n_cases))
        ledger.close()
    raw_rate = max(read_n / read_s, read_n2 / read_s2)
    figures = {
        "events": events,
        "audit_verify_events_per_s": round(report.checked / verify_s),
        "raw_log_read_events_per_s": round(raw_rate),
        "verify_vs_raw_read": round((report.checked / verify_s) / raw_rate, 2),
        "writer_apply_us_per_event": round(apply_s / events * 1e6, 1),
        "writer_chain_append_us_per_event": round(chain_s / events * 1e6, 1),
        "batches": batches,
        "events_per_batch": round(events / batches),
        "report_to_stored_event_us_plain_mapper": round(seal["plain"], 1),
        "report_to_stored_event_us_sealed_mapper": round(seal["sealed"], 1),
        "noted_event_to_stored_event_us_plain_mapper": round(seal["note_plain"], 1),
        "noted_event_to_stored_event_us_sealed_mapper": round(seal["note_sealed"], 1),
    }
    for k, v in figures.items():
        print(f"  {k}: {v}")
    return figures


if __name__ == "__main__":
    run()
