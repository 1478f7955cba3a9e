"""The vocabulary is written once (issue 16): no copies of its names beside ``hub/vocabulary.py``.

Why a test: the copies it replaced (the open-stage list three times, the priorities five times, the
SLA limit names twice, the application name five times) drifted silently before; an AST scan of the
shipped code keeps new copies from growing back.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

from hub import vocabulary as v

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("hub", "connectors", "projections", "ops", "benchmarks")
VOCABULARY = ROOT / "hub" / "vocabulary.py"


def _sources() -> Iterator[tuple[str, ast.AST]]:
    for package in SHIPPED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == VOCABULARY or "node_modules" in path.parts:
                continue
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text())


def _string_collections(tree: ast.AST) -> Iterator[tuple[int, set[str]]]:
    """Every tuple, list, set literal (and dict literal's keys) made only of string constants."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items: list[ast.expr | None] = list(node.elts)
        elif isinstance(node, ast.Dict):
            items = list(node.keys)
        else:
            continue
        if items and all(isinstance(i, ast.Constant) and isinstance(i.value, str) for i in items):
            yield node.lineno, {i.value for i in items if isinstance(i, ast.Constant)}


def test_the_application_name_is_written_once() -> None:
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value == v.APPLICATION_NAME
    ]
    assert not offenders, f"use hub.vocabulary.APPLICATION_NAME: {offenders}"


def test_stage_priority_and_relation_lists_are_written_once() -> None:
    """A literal list equal to one the vocabulary names is a copy (a source's own subset, such as
    the levels a spreadsheet can report, is a different concept and allowed)."""
    named = {
        "all stages": {s.value for s in v.Stage},
        "open stages": set(v.OPEN_STAGE_NAMES),
        "concluded stages": set(v.CONCLUDED_STAGES),
        "evaluable stages": set(v.EVALUABLE_STAGES),
        "priorities": set(v.PRIORITIES),
        "relations": set(v.RELATIONS),
        "link relations": set(v.LINK_RELATIONS),
        "waiting relations": set(v.WAITING_RELATIONS),
    }
    offenders = [
        f"{name}:{line}: {what}"
        for name, tree in _sources()
        for line, strings in _string_collections(tree)
        for what, words in named.items()
        if strings == words
    ]
    assert not offenders, f"use hub.vocabulary: {offenders}"


def test_stage_limit_names_are_written_once() -> None:
    limits = set(v.STAGE_LIMIT_NAMES.values())
    offenders = [
        f"{name}:{node.lineno}: {node.value}"
        for name, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in limits
    ]
    assert not offenders, f"use hub.vocabulary.STAGE_LIMIT_NAMES: {offenders}"


def test_the_domain_and_the_message_contract_use_the_vocabulary() -> None:
    from hub import messages
    from hub.domain import CONCLUDED_STAGES, INVERSE, OPEN_STAGES, WAITING_RELATIONS, Stage
    from hub.domain.case import PRIORITIES, RELATIONS
    from hub.domain.sla import CLOCKED_STAGES, STAGE_LIMIT_NAMES

    assert Stage is v.Stage
    assert set(v.OPEN_STAGE_NAMES) == OPEN_STAGES
    assert CLOCKED_STAGES is v.OPEN_STAGE_NAMES
    assert CONCLUDED_STAGES is v.CONCLUDED_STAGES and INVERSE is v.INVERSE
    assert WAITING_RELATIONS is v.WAITING_RELATIONS and STAGE_LIMIT_NAMES is v.STAGE_LIMIT_NAMES
    assert PRIORITIES is v.PRIORITIES and RELATIONS is v.RELATIONS
    assert set(v.OPEN_STAGE_NAMES) | v.CONCLUDED_STAGES == {s.value for s in v.Stage}
    assert messages.Reported.__annotations__["priority"] == "Priority"


def test_graphql_enums_mirror_the_vocabulary() -> None:
    """strawberry needs the enums as classes (the schema and mypy read them statically): they
    mirror the vocabulary, and this keeps the mirror exact."""
    from hub.api.gql.types import Priority, Relation, Stage

    def values(enum: type[Enum]) -> tuple[str, ...]:
        return tuple(member.value for member in enum)

    assert values(Stage) == values(v.Stage)
    assert values(Priority) == v.PRIORITIES
    assert values(Relation) == v.LINK_RELATIONS


def test_the_vocabulary_imports_only_the_standard_library() -> None:
    tree = ast.parse(VOCABULARY.read_text())
    imported = [
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert all(name.split(".")[0] in sys.stdlib_module_names | {"__future__"} for name in imported), imported


def test_gc_tuning_is_written_once() -> None:
    offenders = [
        f"{name}:{node.lineno}"
        for name, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {"set_threshold", "freeze"}
        if isinstance(node.value, ast.Name) and node.value.id == "gc"
        if name != "hub/adapters/process.py"
    ]
    assert not offenders, f"use hub.adapters.process.tune_gc: {offenders}"


def test_dead_code_stays_deleted() -> None:
    from hub import application, intake, messages

    assert not hasattr(intake.Intake, "process")
    assert not hasattr(messages, "decode_trusted")
    assert not hasattr(application, "watch_deadlines")
