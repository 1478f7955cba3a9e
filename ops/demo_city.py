"""A reproducible demo city (示范城区): one district at the scale of Nanjing's Jianye district.

Jianye (建邺区) has 6 streets (街道), 65 communities (社区) and 793 comprehensive grids (综合网格);
the demo has the same streets and counts of communities, and 800 grids. The geometry is invented:
a jittered 40 × 20 lattice of quadrilateral grid cells over Jianye's real extent (so points look
plausible on a map), communities are contiguous runs of cells inside a street, and streets are
vertical bands. Every level is an exact partition of the one above: no gaps, no overlaps.

Why generated, and by a fixed seed: tests and benchmarks need hundreds of realistic polygons, and a
reviewer must be able to re-create the shipped file byte for byte
(``python -m ops.demo_city hub/defaults/grids.geojson``).

Codes are hierarchical: district 320105, street +3 digits, community +3, grid +3, so a code prefix is
also its roll-up line (the tree in ``hub.domain.grid`` does not rely on that).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import Polygon, mapping

SEED = 20260302
DISTRICT = ("320105", "建邺区")
STREETS = ("南苑街道", "兴隆街道", "莫愁湖街道", "沙洲街道", "双闸街道", "江心洲街道")
STREET_COLUMNS = (7, 7, 6, 7, 6, 7)  # 40 lattice columns
COMMUNITIES_PER_STREET = (11, 11, 10, 11, 11, 11)  # 65 communities
ROWS = 20
BOUNDS = (118.660, 31.960, 118.780, 32.060)  # lon/lat extent of the district
JITTER = 0.28  # of a cell, < 0.5 keeps every quadrilateral simple
DIGITS = 6  # ≈ 0.1 m; shared vertices round identically, so the partition stays exact


def _lattice(rng: random.Random, cols: int, rows: int) -> list[list[tuple[float, float]]]:
    x0, y0, x1, y1 = BOUNDS
    dx, dy = (x1 - x0) / cols, (y1 - y0) / rows
    points: list[list[tuple[float, float]]] = []
    for i in range(cols + 1):
        column: list[tuple[float, float]] = []
        for j in range(rows + 1):
            jx = 0.0 if i in (0, cols) else rng.uniform(-JITTER, JITTER) * dx
            jy = 0.0 if j in (0, rows) else rng.uniform(-JITTER, JITTER) * dy
            column.append((round(x0 + i * dx + jx, DIGITS), round(y0 + j * dy + jy, DIGITS)))
        points.append(column)
    return points


def _feature(code: str, name: str, level: str, parent: str | None, geometry: Any) -> dict[str, Any]:
    geojson = mapping(shapely.set_precision(geometry, 10**-DIGITS))
    return {
        "type": "Feature",
        "properties": {"code": code, "name": name, "level": level, "parent": parent},
        "geometry": json.loads(json.dumps(geojson)),  # tuples → lists
    }


def generate(seed: int = SEED) -> dict[str, Any]:
    """The demo district as a GeoJSON FeatureCollection (district, streets, communities, grids)."""
    rng = random.Random(seed)
    cols = sum(STREET_COLUMNS)
    lattice = _lattice(rng, cols, ROWS)

    def cell(i: int, j: int) -> Polygon:
        return Polygon([lattice[i][j], lattice[i + 1][j], lattice[i + 1][j + 1], lattice[i][j + 1]])

    district_code, district_name = DISTRICT
    streets: list[dict[str, Any]] = []
    communities: list[dict[str, Any]] = []
    grids: list[dict[str, Any]] = []
    first_col = 0
    for s, (street_name, width, n_comm) in enumerate(
        zip(STREETS, STREET_COLUMNS, COMMUNITIES_PER_STREET, strict=True), start=1
    ):
        street_code = f"{district_code}{s:03d}"
        # Serpentine order through the band keeps every run of cells connected.
        order = [
            (first_col + (k if j % 2 == 0 else width - 1 - k), j) for j in range(ROWS) for k in range(width)
        ]
        size, extra = divmod(len(order), n_comm)
        start = 0
        street_cells: list[Polygon] = []
        for c in range(1, n_comm + 1):
            run = order[start : start + size + (1 if c <= extra else 0)]
            start += len(run)
            community_code = f"{street_code}{c:03d}"
            polys = [cell(i, j) for i, j in run]
            for g, poly in enumerate(polys, start=1):
                grids.append(_feature(f"{community_code}{g:03d}", f"第{g}网格", "grid", community_code, poly))
            communities.append(
                _feature(
                    community_code,
                    f"{street_name}第{c}社区",
                    "community",
                    street_code,
                    shapely.union_all(polys),
                )
            )
            street_cells.extend(polys)
        streets.append(
            _feature(street_code, street_name, "street", district_code, shapely.union_all(street_cells))
        )
        first_col += width
    everything = [cell(i, j) for i in range(cols) for j in range(ROWS)]
    district = _feature(district_code, district_name, "district", None, shapely.union_all(everything))
    return {
        "type": "FeatureCollection",
        "name": "demo-city-jianye",
        "features": [district, *streets, *communities, *grids],
    }


def dumps(collection: dict[str, Any]) -> str:
    """One feature per line: small diffs, stable bytes."""
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in collection["features"]]
    head = json.dumps({"type": collection["type"], "name": collection["name"]}, ensure_ascii=False)[:-1]
    return head + ',"features":[\n' + ",\n".join(lines) + "\n]}\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = (
        Path(args[0]) if args else Path(__file__).resolve().parents[1] / "hub" / "defaults" / "grids.geojson"
    )
    out.write_text(dumps(generate()), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
