"""The architecture is enforced, not hoped for: import rules, the graphql/ contract folder, the layout."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_rules_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_graphql_folder_holds_no_python() -> None:
    assert not list((ROOT / "graphql").rglob("*.py")), "graphql/ must never be a Python package"


def test_graphql_core_is_not_shadowed() -> None:
    import graphql

    assert "site-packages" in str(graphql.__file__), graphql.__file__


def test_packages_are_listed_explicitly() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    assert find["namespaces"] is False
    assert not any(pattern.startswith("graphql") for pattern in find["include"])


def test_required_top_level() -> None:
    for name in ("hub", "connectors", "projections", "graphql", "ops", "benchmarks", "tests", "docs",
                 "pyproject.toml", "Makefile", "README.md", ".ci/run"):  # fmt: skip
        assert (ROOT / name).exists(), name


def test_domain_imports_only_the_standard_library_and_eventsourcing_domain() -> None:
    """hub.vocabulary is allowed: it is itself standard library only (test_vocabulary checks)."""
    import ast

    allowed_external = {"eventsourcing.domain"}
    offenders = []
    for path in (ROOT / "hub" / "domain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if name.startswith(("hub.domain", "hub.vocabulary")) or name in allowed_external:
                    continue
                if top in sys.stdlib_module_names and top not in {
                    "sqlite3",
                    "socket",
                    "asyncio",
                    "subprocess",
                }:
                    continue
                offenders.append(f"{path.relative_to(ROOT)}: import {name}")
    assert not offenders, offenders
