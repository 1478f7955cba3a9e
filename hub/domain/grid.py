"""Grids (网格): the territorial tree every case and every figure on the screen rolls up along.

District (区) → street/town (街道/镇) → community (社区) → grid (网格) → micro-grid (微网格). A
case carries the code of the finest cell its location falls in; counts for a street or the whole
district are sums over the subtree. Jianye district, for example, is 6 streets, 65 communities
and 793 comprehensive grids (综合网格).

This module is the tree only (codes, names, parents): pure data, no geometry. Point-in-polygon
resolution needs a spatial index and lives outside the domain (``hub.adapters.geo``). The level
names are vocabulary (``hub.vocabulary.Level``): the API reads the tree through the read-model port
(``hub.views.GridTreeView``), which this tree satisfies, without importing the domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hub.vocabulary import Level as Level

LEVEL_ORDER = (Level.DISTRICT, Level.STREET, Level.COMMUNITY, Level.GRID, Level.MICRO)


class GridError(ValueError):
    """An inconsistent grid tree (unknown parent, level out of order, cycle, duplicate code)."""


@dataclass(frozen=True, slots=True)
class GridCell:
    code: str
    name: str
    level: Level
    parent: str | None


class GridTree:
    """The hierarchy of grid cells, validated on construction."""

    def __init__(self, cells: Iterable[GridCell]) -> None:
        self.cells: dict[str, GridCell] = {}
        for cell in cells:
            if cell.code in self.cells:
                raise GridError(f"grid code {cell.code!r} appears twice")
            self.cells[cell.code] = cell
        self._children: dict[str | None, list[str]] = {}
        for cell in self.cells.values():
            if cell.parent is not None:
                parent = self.cells.get(cell.parent)
                if parent is None:
                    raise GridError(f"grid {cell.code!r}: parent {cell.parent!r} does not exist")
                if LEVEL_ORDER.index(parent.level) >= LEVEL_ORDER.index(cell.level):
                    raise GridError(
                        f"grid {cell.code!r} ({cell.level.value}) cannot be inside "
                        f"{parent.code!r} ({parent.level.value})"
                    )
            self._children.setdefault(cell.parent, []).append(cell.code)
        self._paths: dict[str, tuple[str, ...]] = {}
        for code in self.cells:
            self._paths[code] = self._path(code)

    def _path(self, code: str) -> tuple[str, ...]:
        path: list[str] = []
        current: str | None = code
        while current is not None:
            path.append(current)
            current = self.cells[current].parent
        return tuple(reversed(path))

    def __contains__(self, code: object) -> bool:
        return code in self.cells

    def __len__(self) -> int:
        return len(self.cells)

    def path(self, code: str) -> tuple[str, ...]:
        """Codes from the root down to ``code`` (the roll-up line); empty for an unknown code."""
        return self._paths.get(code, ())

    def children(self, code: str | None) -> list[str]:
        """Direct children; ``None`` gives the roots."""
        return list(self._children.get(code, ()))

    def at_level(self, level: Level) -> list[GridCell]:
        return [c for c in self.cells.values() if c.level is level]

    def ancestor_at(self, code: str, level: Level) -> str | None:
        for ancestor in self.path(code):
            if self.cells[ancestor].level is level:
                return ancestor
        return None

    def rollup(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Sum per-cell counts up the tree: every ancestor gets the total of its subtree."""
        totals: dict[str, int] = {}
        for code, n in counts.items():
            for ancestor in self.path(code):
                totals[ancestor] = totals.get(ancestor, 0) + n
        return totals
