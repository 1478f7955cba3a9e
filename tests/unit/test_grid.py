"""Grids (网格): the demo city's tree, its reproducibility, and point resolution against brute force."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from hub.adapters.config.loading import ConfigError, load_grids, load_routing
from hub.adapters.geo import GridIndex
from hub.domain import GridCell, GridError, GridTree, Level
from ops import demo_city

SHIPPED = Path(__file__).resolve().parents[2] / "hub" / "defaults" / "grids.geojson"


@pytest.fixture(scope="module")
def index() -> GridIndex:
    return load_grids()


def brute_force(features: list[dict], xs: np.ndarray, ys: np.ndarray) -> list[str | None]:  # type: ignore[type-arg]
    """Crossing-number test of every point against every grid polygon (numpy only, no GEOS)."""
    order = np.argsort(xs)
    sx, sy = xs[order], ys[order]
    found = np.full(len(xs), -1, dtype=np.int64)
    grids = [f for f in features if f["properties"]["level"] == "grid"]
    for k, feature in enumerate(grids):
        assert feature["geometry"]["type"] == "Polygon"
        ring = np.asarray(feature["geometry"]["coordinates"][0], dtype=float)
        lo, hi = np.searchsorted(sx, [ring[:, 0].min(), ring[:, 0].max()], side="left")
        px, py = sx[lo:hi], sy[lo:hi]
        inside = np.zeros(len(px), dtype=bool)
        for (x1, y1), (x2, y2) in itertools.pairwise(ring):
            crosses = (y1 > py) != (y2 > py)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (px < x_at)
        hits = order[lo:hi][inside]
        assert (found[hits] == -1).all(), "grid polygons overlap"
        found[hits] = k
    codes = [g["properties"]["code"] for g in grids]
    return [codes[i] if i >= 0 else None for i in found.tolist()]


def test_demo_city_scale(index: GridIndex) -> None:
    tree = index.tree
    counts = {level: len(tree.at_level(level)) for level in Level}
    assert counts == {
        Level.DISTRICT: 1,
        Level.STREET: 6,
        Level.COMMUNITY: 65,
        Level.GRID: 800,
        Level.MICRO: 0,
    }
    assert [c.name for c in sorted(tree.at_level(Level.STREET), key=lambda c: c.code)][:2] == [
        "南苑街道",
        "兴隆街道",
    ]
    some_grid = tree.at_level(Level.GRID)[0].code
    path = tree.path(some_grid)
    assert [tree.cells[c].level for c in path] == [Level.DISTRICT, Level.STREET, Level.COMMUNITY, Level.GRID]


def test_demo_city_is_reproducible_byte_for_byte() -> None:
    assert demo_city.dumps(demo_city.generate()) == SHIPPED.read_text(encoding="utf-8")


def test_every_level_partitions_its_parent(index: GridIndex) -> None:
    tree, polys = index.tree, index.all_polygons
    for code, cell in tree.cells.items():
        kids = tree.children(code)
        if not kids:
            continue
        total = sum(polys[k].area for k in kids)
        assert total == pytest.approx(polys[code].area, rel=1e-9), (
            f"{cell.name} is not the union of its children"
        )


def test_100k_random_points_match_brute_force(index: GridIndex) -> None:
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = demo_city.BOUNDS
    # 2% margin outside the district on every side: those points must resolve to nothing.
    mx, my = (x1 - x0) * 0.02, (y1 - y0) * 0.02
    xs = rng.uniform(x0 - mx, x1 + mx, 100_000)
    ys = rng.uniform(y0 - my, y1 + my, 100_000)
    expected = brute_force(json.loads(SHIPPED.read_text(encoding="utf-8"))["features"], xs, ys)
    got = index.resolve_many(xs, ys)
    assert got == expected
    outside = sum(1 for code in expected if code is None)
    assert 0 < outside < 10_000
    # the scalar path agrees with the vectorised one
    for i in range(0, 100_000, 997):
        assert index.resolve(float(xs[i]), float(ys[i])) == got[i]


def test_rollup_sums_along_the_tree(index: GridIndex) -> None:
    tree = index.tree
    a, b = tree.children(tree.children(tree.children(None)[0])[0])[:2]  # two communities of one street
    ga, gb = tree.children(a)[0], tree.children(b)[0]
    totals = tree.rollup({ga: 3, gb: 2})
    street = tree.cells[a].parent
    assert totals[ga] == 3 and totals[a] == 3 and totals[b] == 2
    assert street is not None and totals[street] == 5 and totals["320105"] == 5


def test_tree_errors_name_the_cell() -> None:
    with pytest.raises(GridError, match="parent 'nope' does not exist"):
        GridTree([GridCell("1", "a", Level.GRID, "nope")])
    with pytest.raises(GridError, match="cannot be inside"):
        GridTree([GridCell("1", "g", Level.GRID, None), GridCell("2", "s", Level.STREET, "1")])
    with pytest.raises(GridError, match="appears twice"):
        GridTree([GridCell("1", "a", Level.DISTRICT, None)] * 2)


def test_bad_geojson_is_a_config_error_naming_file_and_feature(tmp_path: Path) -> None:
    data = demo_city.generate()
    data["features"][3]["properties"]["level"] = "province"
    (tmp_path / "grids.geojson").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"grids.geojson: feature 3 \(code '320105003'\): properties.level"):
        load_grids(tmp_path)


def test_routing_areas_must_exist(tmp_path: Path, index: GridIndex) -> None:
    (tmp_path / "routing.toml").write_text(
        '[[rule]]\ncategories = ["06"]\ndepartments = ["police"]\n\n'
        '[[rule]]\narea = "999"\ndepartments = ["police"]\n'
    )
    with pytest.raises(ConfigError, match=r"routing.toml: \[\[rule\]\] #2, line 5: area '999'"):
        load_routing(tmp_path, grids=index)
