"""Responsibility list (权责清单): which department answers for a category in a place.

Each rule names category code prefixes (empty = any), optionally an area (a grid code at any level
of the tree: a street, a community, one grid) and one or more departments (several = 联合处置
joint handling). The national rule of thumb decides between an owner rule and a territory rule:

- **部件 by owner first** (权属优先): a broken water-supply manhole cover is the water company's,
  wherever it is; a street's rule applies only when no owner is configured.
- **事件 by territory first** (属地优先): an illegal street stall is the street office's where it
  happens; a city-wide category rule applies only when the area has none.

Within a tier the longest category prefix wins, then the deepest area. No rule is an
:class:`Unroutable` error with the category and grid named, unless the list is configured to let
such cases wait for manual dispatch (人工派遣).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from hub.domain.taxonomy import Basis, Category

AUTO = "auto"
"""Reserved department name: ``dispatched`` to ``["auto"]`` means "dispatch by the responsibility list"."""


class Unroutable(ValueError):
    """No rule of the responsibility list covers the case."""


@dataclass(frozen=True, slots=True)
class Rule:
    departments: tuple[str, ...]
    categories: tuple[str, ...] = ()
    area: str | None = None
    where: str = ""
    """Where the rule was configured (file and entry), for error messages and audits."""


@dataclass(frozen=True, slots=True)
class Route:
    departments: tuple[str, ...]
    rule: Rule
    basis: Basis


@dataclass(frozen=True, slots=True)
class ResponsibilityList:
    rules: tuple[Rule, ...] = ()
    on_unroutable: Literal["error", "manual"] = "error"
    auto_dispatch: frozenset[str] = field(default_factory=frozenset)
    """Origin departments whose cases are dispatched by this list as soon as they are registered."""

    def route(self, category: str, info: Category | None, grid_path: Sequence[str]) -> Route:
        """The responsible department(s) of a case; raises :class:`Unroutable` when none."""
        basis = info.basis if info is not None else Basis.TERRITORY
        best: Rule | None = None
        best_key: tuple[int, ...] | None = None
        for rule in self.rules:
            prefix = 0
            if rule.categories:
                matched = [len(p) for p in rule.categories if category.startswith(p)]
                if not matched:
                    continue
                prefix = max(matched)
            depth = -1
            if rule.area is not None:
                if rule.area not in grid_path:
                    continue
                depth = grid_path.index(rule.area)
            if basis is Basis.OWNER:
                key = (int(rule.area is None), prefix, depth)
            else:
                key = (int(rule.area is not None), depth, prefix)
            if best_key is None or key > best_key:
                best, best_key = rule, key
        if best is None:
            where = f"grid {grid_path[-1]}" if grid_path else "no grid"
            name = f" ({info.name})" if info is not None else ""
            raise Unroutable(
                f"no responsible department for category {category!r}{name} in {where} "
                f"(权责清单 has no matching rule; basis {basis.value})"
            )
        return Route(best.departments, best, basis)
