"""Every benchmark module imports: ``make bench`` is not in the suite, so a renamed name of the hub
that a benchmark still uses would otherwise surface only when someone measures (issue 16: a
vocabulary rename broke three benchmarks that lint and the suite did not load)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "benchmarks").glob("*.py") if p.stem != "__main__"
)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_the_benchmark_module_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")
