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

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    parse,
)
from strawberry.extensions import SchemaExtension

from hub.api.gql.context import Limits, caller_of

AS_OF_ARGS = ("asOf", "asOfPosition")

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
            if isinstance(value, NullValueNode):
                return None
            return value  # another literal (a string, an object): given
    return None


def _rewinds(node: FieldNode, variables: Mapping[str, Any]) -> bool:
    """The field asks for the past (``asOf`` or ``asOfPosition`` given, literally or by variable)."""
    return any(_arg(node, name, variables) is not None for name in AS_OF_ARGS)


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
        max_page, max_cost, as_of_cost = self.limits.max_page, self.limits.max_cost, self.limits.as_of_cost

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
                    if _rewinds(node, variables):  # a snapshot of the past is rebuilt: costly
                        total += as_of_cost
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


class DocumentSizeLimiter(SchemaExtension):
    """A query document over ``max_bytes`` is refused before it is parsed (issue 15: a 20 MB query
    was parsed whole). Runs first of all hooks; covers WebSocket subscriptions too (HTTP bodies are
    also capped at the ASGI level, ``hub.api.gql.app.BodyLimit``)."""

    limits = Limits()

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        query = ctx.query or ""
        size = len(query.encode("utf-8", "surrogatepass")) if len(query) * 4 > self.limits.max_bytes else 0
        if size > self.limits.max_bytes:
            # strawberry parses only when no document is set, and answers pre-execution errors as
            # such on every transport (raising here would end a WebSocket operation without an
            # answer): a stand-in document, the error, and the text is never parsed
            ctx.graphql_document = _STAND_IN
            ctx._provided_operation_name = None  # (strawberry 0.341) the stand-in is anonymous
            ctx.pre_execution_errors = [too_large(size, self.limits.max_bytes)]
        yield


_STAND_IN = parse("query { __typename }")
"""The document put in place of one refused for its size (never executed: it carries the error)."""


def too_large(size: int, max_bytes: int, *, body: bool = False) -> GraphQLError:
    """QUERY_TOO_LARGE: ``max_bytes`` is the document limit; an HTTP body may be twice that."""
    if body:
        what = (
            f"the request body has more than {2 * max_bytes} bytes (twice the document limit of {max_bytes}"
        )
    else:
        what = f"the query document has {size} bytes (the limit is {max_bytes}"
    return GraphQLError(
        f"{what}, HUB_GRAPHQL_MAX_BYTES): send a smaller document (use variables and fragments) "
        "or ask the operator to raise the limit",
        extensions={"code": "QUERY_TOO_LARGE", "bytes": size, "max_bytes": max_bytes},
    )


INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class IntrospectionNeedsToken(SchemaExtension):
    """Introspection (``__schema``, ``__type``) answers only a caller with a valid token (any role);
    ``__typename`` stays free. Why: the schema names every field of personal data and every
    operator action; anonymous scanners need not learn them (issue 15)."""

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if document is not None and ctx.pre_execution_errors is None and _introspects(document.definitions):
            try:
                caller_of(ctx.context)
            except GraphQLError as exc:
                response = ctx.context.get("response") if isinstance(ctx.context, dict) else None
                if response is not None and hasattr(response, "status_code"):
                    response.status_code = 401
                ctx.pre_execution_errors = [
                    GraphQLError(
                        f"introspection needs a token: {exc.message}",
                        extensions={"code": "UNAUTHENTICATED"},
                    )
                ]
        yield


def _introspects(definitions: Any) -> bool:
    def walk(selection: SelectionSetNode | None) -> bool:
        if selection is None:
            return False
        for node in selection.selections:
            if isinstance(node, FieldNode) and node.name.value in INTROSPECTION_FIELDS:
                return True
            if isinstance(node, InlineFragmentNode | FieldNode) and walk(node.selection_set):
                return True
        return False

    return any(
        walk(d.selection_set)
        for d in definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    )
