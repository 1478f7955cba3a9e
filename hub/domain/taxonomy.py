"""Case categories (案件分类): each department's taxonomy of what a case is about.

City management defaults to the national directory of 管理部件 (components: manhole covers,
street lights …) and 管理事项 (matters: 私搭乱建, 占道经营 …), GB/T 47678.5-2026. Every matter
code on a component (majors 01–05, e.g. 01001 供水井盖异常) shares its number with the component,
so a code names one category and its **basis** for routing (权责清单):

- 部件 (component) matters are routed by **owner** first (the asset's 权属单位, e.g. the water company),
- 事件 (event) matters by **territory** first (the street office of the grid, 属地管理).

Other departments (police, health, courts …) bring their own taxonomies from configuration. A
strict taxonomy refuses an unknown code with a clear error; a lenient one lets it through (the
case then waits for manual dispatch) — for departments whose codes are not yet curated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Basis(StrEnum):
    """Who answers first for a category: its owner (部件) or the territory (事件)."""

    OWNER = "owner"  # 部件: 权属单位优先
    TERRITORY = "territory"  # 事件: 属地优先


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    name: str
    basis: Basis
    major_code: str = ""
    major_name: str = ""


class UnknownCategory(ValueError):
    """A category code the department's (strict) taxonomy does not know."""


@dataclass(frozen=True, slots=True)
class Taxonomy:
    """One department's categories (分类目录)."""

    name: str
    categories: Mapping[str, Category]
    strict: bool = True

    def get(self, code: str) -> Category | None:
        return self.categories.get(code)


@dataclass(frozen=True, slots=True)
class Taxonomies:
    """Department → taxonomy; a department without one accepts any category code."""

    by_department: Mapping[str, Taxonomy]

    def lookup(self, department: str, code: str) -> Category | None:
        """The category, or None when lenient/unconfigured; raises :class:`UnknownCategory` if strict."""
        taxonomy = self.by_department.get(department)
        if taxonomy is None:
            return None
        category = taxonomy.get(code)
        if category is None and taxonomy.strict:
            examples = ", ".join(list(taxonomy.categories)[:3])
            raise UnknownCategory(
                f"category {code!r} is not in {department}'s taxonomy {taxonomy.name!r} "
                f"({len(taxonomy.categories)} codes, e.g. {examples})"
            )
        return category
