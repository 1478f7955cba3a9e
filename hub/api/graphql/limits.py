# mypy: disable-error-code="untyped-decorator, misc"
"""Abusive queries are refused before execution: depth, aliases, tokens (strawberry's limiters)
plus a cost estimate and page-size caps that see the variables (this module).

Why a cost estimate on top of depth: ``cases(first: 200) { edges { node { timeline { … } } } }``
is shallow but asks for 200 timelines. The estimate multiplies the cost of a list field's
selection by its page size (``first``, else an assumed size), so nesting lists is expensive.
The check runs at the start of validation, when the document is parsed and the variables are
known, and reports through ``pre_execution_errors``, so no resolver runs for a refused query.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from hub.api.graphql.context import Limits

LIST_SIZES: dict[str, int] = {
    "cases": 20,  # default page size when `first` is absent
    "timeline": 20,
    "links": 5,
    "children": 20,
    "byDepartment": 25,
    "byStage": 10,
    "byCategory": 30,
    "indicators": 12,
    "hotspots": 20,
    "grids": 50,
    "departments": 25,
    "edges": 1,  # already counted by the connection's `first`
}


def _arg(node: FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for arg in node.arguments or ():
        if arg.name.value == name:
            value = arg.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                return variables.get(value.name.value)
    return None


class CostLimiter(SchemaExtension):
    """Estimated cost ≤ ``max_cost`` and every ``first`` ≤ ``max_page``, or no execution."""

    limits = Limits()

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if document is not None and ctx.pre_execution_errors is None:
            errors = self.check(document.definitions, ctx.variables or {})
            if errors:
                ctx.pre_execution_errors = errors
        yield

    def check(self, definitions: Any, variables: Mapping[str, Any]) -> list[GraphQLError]:
        fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
        errors: list[GraphQLError] = []
        max_page, max_cost = self.limits.max_page, self.limits.max_cost

        def cost(selection: SelectionSetNode | None, seen: frozenset[str]) -> int:
            if selection is None:
                return 0
            total = 0
            for node in selection.selections:
                if isinstance(node, FieldNode):
                    first = _arg(node, "first", variables)
                    if isinstance(first, int) and not 0 < first <= max_page:
                        errors.append(
                            GraphQLError(
                                f"{node.name.value}(first: {first}): page size must be between 1 and "
                                f"{max_page}",
                                extensions={"code": "PAGE_TOO_LARGE", "max": max_page},
                            )
                        )
                    size = first if isinstance(first, int) else LIST_SIZES.get(node.name.value, 1)
                    total += 1 + max(size, 1) * cost(node.selection_set, seen)
                elif isinstance(node, InlineFragmentNode):
                    total += cost(node.selection_set, seen)
                elif isinstance(node, FragmentSpreadNode):
                    name = node.name.value
                    if name in fragments and name not in seen:
                        total += cost(fragments[name].selection_set, seen | {name})
            return total

        for definition in definitions:
            if isinstance(definition, OperationDefinitionNode):
                estimate = cost(definition.selection_set, frozenset())
                if estimate > max_cost:
                    name = definition.name.value if definition.name else "anonymous"
                    errors.append(
                        GraphQLError(
                            f"operation {name!r} has an estimated cost of {estimate}, above the limit of "
                            f"{max_cost}: ask for smaller pages or fewer nested lists",
                            extensions={"code": "COST_LIMIT", "cost": estimate, "max": max_cost},
                        )
                    )
        return errors
