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
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
BENCHMARKS = ["intake", "bench_grid", "bench_projections", "bench_connectors", "bench_graphql", "bench_audit"]


def main(argv: list[str]) -> int:
    names = argv or BENCHMARKS
    RESULTS.mkdir(exist_ok=True)
    failed = 0
    for name in names:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                print(f"== {name}: not present, skipped")
                continue
            raise
        print(f"== {name}")
        started = time.perf_counter()
        try:
            figures = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"!! {name} failed: {exc!r}")
            failed += 1
            continue
        record = {
            "benchmark": name,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "figures": figures,
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        print(f"   → benchmarks/results/{name}.json ({record['seconds']} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
