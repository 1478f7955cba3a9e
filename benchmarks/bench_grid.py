"""Grid resolution (网格定位) throughput on the demo city (800 grids): points per second.

Figures: the vectorised STRtree query the intake uses per batch, the one-point path, and as the
baseline, measured in the same run, a brute-force scan testing every point against every grid
polygon (shapely's vectorised ``contains_xy``, no index). Also the time to load and index the
GeoJSON at start.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import shapely

from hub.adapters.config.loading import load_grids
from ops import demo_city

POINTS = 100_000


def _best(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run() -> dict[str, Any]:
    started = time.perf_counter()
    index = load_grids()
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = demo_city.BOUNDS
    xs, ys = rng.uniform(x0, x1, POINTS), rng.uniform(y0, y1, POINTS)

    vector_s = _best(lambda: index.resolve_many(xs, ys))
    scalar_n = 20_000
    scalar_s = _best(
        lambda: [index.resolve(float(x), float(y)) for x, y in zip(xs[:scalar_n], ys[:scalar_n], strict=True)]
    )

    def brute() -> None:
        for polygon in index.geometries:
            shapely.contains_xy(polygon, xs, ys)

    brute_s = _best(brute, repeat=1)
    figures = {
        "grids": len(index.leaf_codes),
        "points": POINTS,
        "load_and_index_ms": round(load_s * 1000, 1),
        "strtree_batch_points_per_s": round(POINTS / vector_s),
        "strtree_single_points_per_s": round(scalar_n / scalar_s),
        "baseline_brute_force_points_per_s": round(POINTS / brute_s),
        "speedup_vs_brute_force": round(brute_s / vector_s, 1),
    }
    for key, value in figures.items():
        print(f"  {key:40s} {value}")
    return figures


if __name__ == "__main__":
    run()
