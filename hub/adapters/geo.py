"""Spatial index of the grids (网格定位): which grid cell a WGS-84 point falls in.

Kept outside ``hub.domain`` because it needs shapely (GEOS): the domain knows the grid *tree*
(``hub.domain.grid``), this module knows the polygons. An STRtree over the finest cells answers a
point in a few microseconds, and a whole batch of points in one vectorised query, which is what
the intake does for the reports of a batch.

A point on an edge shared by two cells belongs to the one listed first in the GeoJSON, so the
answer is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from hub.domain.grid import LEVEL_ORDER, GridCell, GridError, GridTree, Level


class GridIndex:
    """Grid tree plus an STRtree over the leaf cells' polygons."""

    def __init__(self, tree: GridTree, polygons: dict[str, Any]) -> None:
        self.tree = tree
        leaves = [code for code in polygons if not tree.children(code)]
        self.leaf_codes: list[str] = leaves
        self.geometries = [polygons[code] for code in leaves]
        self.all_polygons = polygons
        self._strtree = shapely.STRtree(self.geometries)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_geojson(cls, data: dict[str, Any], where: str = "grids") -> GridIndex:
        """Build from a FeatureCollection whose features carry code, name, level and parent."""
        features = data.get("features")
        if data.get("type") != "FeatureCollection" or not isinstance(features, list):
            raise GridError(f"{where}: expected a GeoJSON FeatureCollection with a 'features' list")
        cells: list[GridCell] = []
        polygons: dict[str, Any] = {}
        levels = {level.value for level in LEVEL_ORDER}
        for i, feature in enumerate(features):
            props = feature.get("properties") or {}
            code = props.get("code")
            entry = f"{where}: feature {i} (code {code!r})"
            if not isinstance(code, str) or not code:
                raise GridError(f"{entry}: properties.code must be a non-empty string")
            if props.get("level") not in levels:
                raise GridError(f"{entry}: properties.level must be one of {sorted(levels)}")
            try:
                geometry = shape(feature["geometry"])
            except Exception as exc:
                raise GridError(f"{entry}: geometry is not a valid GeoJSON geometry ({exc})") from exc
            if geometry.geom_type not in {"Polygon", "MultiPolygon"} or not geometry.is_valid:
                raise GridError(f"{entry}: geometry must be a valid Polygon or MultiPolygon")
            cells.append(
                GridCell(code, str(props.get("name", code)), Level(props["level"]), props.get("parent"))
            )
            polygons[code] = geometry
        try:
            tree = GridTree(cells)
        except GridError as exc:
            raise GridError(f"{where}: {exc}") from exc
        shapely.prepare(list(polygons.values()))
        return cls(tree, polygons)

    @classmethod
    def from_file(cls, path: Path) -> GridIndex:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GridError(f"{path}: cannot read GeoJSON ({exc})") from exc
        return cls.from_geojson(data, str(path))

    # ------------------------------------------------------------------ queries
    def resolve(self, lon: float, lat: float) -> str | None:
        """The code of the leaf cell containing the point, or None outside every cell."""
        hits = self._strtree.query(shapely.Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        return self.leaf_codes[int(hits.min())]

    def resolve_many(self, lons: Sequence[float] | Any, lats: Sequence[float] | Any) -> list[str | None]:
        """Vectorised :meth:`resolve` for a batch of points."""
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        point_idx, tree_idx = self._strtree.query(points, predicate="intersects")
        missing = len(self.leaf_codes)
        best = np.full(len(points), missing, dtype=np.int64)
        np.minimum.at(best, point_idx, tree_idx)  # first-listed cell wins on a shared edge
        codes = self.leaf_codes
        return [codes[i] if i < missing else None for i in best.tolist()]

    def path(self, code: str) -> tuple[str, ...]:
        return self.tree.path(code)
