"""No import cycles anywhere (design §3): every module of hub, ops, connectors and projections.

Why a test of its own beside import-linter's layers: a layers contract forbids imports between
layers, not a cycle inside one (``ops.bootstrap`` → ``ops.writer`` → ``ops.chain_follower`` →
``ops.bootstrap`` broke no layer). A cycle makes the import order matter and hides which module is
the lower one; the design allows none.

What counts: every import grimp finds, and grimp reads *every* import statement of a module, those
inside functions too (a deferred ``from ops.bootstrap import build_ledger`` in a function still
makes the two modules depend on each other; deferring an import hides a cycle, it does not remove
it) and those under ``if TYPE_CHECKING:`` (they tie the modules together for the type checker and
for whoever reads them). A cycle is a strongly connected component of the module import graph with
more than one module; the failure lists each one with the import statements that close it.
"""

from __future__ import annotations

import grimp

PACKAGES = ("hub", "ops", "connectors", "projections")


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """The graph's strongly connected components of more than one module, each sorted, in order.

    Tarjan's algorithm, iterative (a recursion as deep as the longest import chain is not needed)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    work: list[tuple[str, list[str]]] = []  # the depth-first path: a module and its imports left to visit
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        work.append((module, sorted(graph.find_modules_directly_imported_by(module), reverse=True)))

    for root in sorted(graph.modules):
        if root in index:
            continue
        visit(root)
        while work:
            module, todo = work[-1]
            if todo:
                imported = todo.pop()
                if imported not in index:
                    visit(imported)
                elif imported in on_stack:
                    low[module] = min(low[module], index[imported])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _imports_within(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """The import statements between the component's modules: ``importer:line: statement``."""
    members = set(component)
    found = [
        (importer, int(detail["line_number"]), str(detail["line_contents"]))
        for importer in component
        for imported in graph.find_modules_directly_imported_by(importer) & members
        for detail in graph.get_import_details(importer=importer, imported=imported)
    ]
    return [f"{importer}:{line}: {statement}" for importer, line, statement in sorted(found)]


def test_strongly_connected_finds_a_cycle_and_only_cycles() -> None:
    """The finder itself, on a graph made by hand: a ↔ b ← c, d → e → f → d, g alone."""
    graph = grimp.ImportGraph()
    for importer, imported in [("a", "b"), ("b", "a"), ("c", "b"), ("d", "e"), ("e", "f"), ("f", "d")]:
        graph.add_import(importer=importer, imported=imported)
    graph.add_module("g")
    assert strongly_connected(graph) == [["a", "b"], ["d", "e", "f"]]


def test_no_module_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES)
    cycles = strongly_connected(graph)
    report = "\n\n".join(
        f"cycle of {len(c)} modules: {' ↔ '.join(c)}\n  " + "\n  ".join(_imports_within(graph, c))
        for c in cycles
    )
    assert not cycles, f"{len(cycles)} import cycle(s) (imports inside functions count):\n\n{report}"
