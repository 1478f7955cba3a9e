"""Run the benchmarks: ``python -m benchmarks [NAME ...]`` (``make bench`` runs them all).

Each benchmark module exposes ``run() -> dict``; its figures are printed and written as JSON to
``benchmarks/results/<name>.json`` (the latest run) with the machine's core count and the time.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
BENCHMARKS = [
    "intake",
    "bench_workers",  # 1 vs 3 intake workers on PostgreSQL (ADR 0006)
    "bench_grid",
    "bench_projections",
    "bench_connectors",
    "bench_graphql",
    "bench_rewind",  # the live overview's p99 while eight screens rewind (issue 15)
    "bench_audit",
    "bench_open311",  # Open311 id search: one set-based query vs the per-id loop (issue 15)
    "soak",  # last: 10 minutes at a steady rate (HUB_SOAK_MINUTES, or `make soak MINUTES=…`)
]
# Not in the list: ``chaos`` (faults and poison inputs, a pass/fail goal rather than a figure to
# compare) runs on its own with ``make chaos`` / ``python -m benchmarks.chaos``.


def record(name: str, run: Callable[[], dict[str, Any]]) -> bool:
    """Run one benchmark and write its figures to ``results/<name>.json``; False when it failed."""
    RESULTS.mkdir(exist_ok=True)
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    try:
        figures = run()
    except Exception as exc:  # one broken benchmark must not hide the others' figures
        print(f"!! {name} failed: {exc!r}")
        return False
    entry = {
        "benchmark": name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "figures": figures,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(entry, indent=2, ensure_ascii=False) + "\n")
    print(f"   → benchmarks/results/{name}.json ({entry['seconds']} s)")
    return True


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    failed = 0
    for name in names:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                print(f"== {name}: not present, skipped")
                continue
            raise
        if not record(name, module.run):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
