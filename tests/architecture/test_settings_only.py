"""Every ``HUB_*`` variable is read in ``ops/settings.py`` only, and the core reads no environment.

Why: one file then answers "which variables does the hub take, with which defaults and which
errors", and the docs test (test_docs.py) has one place to compare against. The core (``hub/``)
receives plain values from ops (bootstrap, runtime), so it runs the same in a test, a child
process or a tool, whatever the environment holds. tests/ and benchmarks/ set up their own
environments and are excepted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "ops" / "settings.py"
EXCEPTED = {"tests", "benchmarks", ".venv", "node_modules"}
_ENV_METHODS = {"get", "pop", "setdefault", "__getitem__", "__contains__"}


def _sources() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in EXCEPTED or any(part.startswith(".") for part in parts):
            continue
        yield path


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or a bare ``environ`` (``from os import environ``)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _env_reads(tree: ast.AST) -> Iterator[ast.AST]:
    """Each read of the environment: ``os.environ[…]``, ``os.environ.get(…)`` (and pop,
    setdefault), ``os.getenv(…)``, ``… in os.environ``, and an option's ``envvar=`` (typer)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_environ(node.value):
            yield node
        elif isinstance(node, ast.Call):
            func = node.func
            on_environ = (
                isinstance(func, ast.Attribute) and func.attr in _ENV_METHODS and _is_environ(func.value)
            )
            getenv = (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
                isinstance(func, ast.Name) and func.id == "getenv"
            )
            envvar = any(k.arg == "envvar" for k in node.keywords)  # typer/click reading it for us
            if on_environ or getenv or envvar:
                yield node
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            yield node


def _mentions_hub(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and "HUB_" in n.value for n in ast.walk(node)
    )


def hub_reads(source: str) -> list[int]:
    """Lines of ``source`` that read a ``HUB_*`` variable from the environment."""
    return sorted({getattr(n, "lineno", 0) for n in _env_reads(ast.parse(source)) if _mentions_hub(n)})


def any_reads(source: str) -> list[int]:
    """Lines of ``source`` that read the environment at all."""
    return sorted({getattr(n, "lineno", 0) for n in _env_reads(ast.parse(source))})


def test_the_checker_sees_each_form_of_reading() -> None:
    sample = (
        "import os\nfrom os import environ, getenv\n"
        'a = os.environ.get("XX_A")\n'
        'b = os.environ["XX_B"]\n'
        'c = os.getenv("XX_C", "x")\n'
        'd = environ.get("XX_D")\n'
        'e = getenv("XX_E")\n'
        'f = "XX_F" in os.environ\n'
        'g = os.environ.get("OTHER")\n'
        'g = typer.Option("--g", envvar="XX_G")\n'
        'h = {**os.environ, "XX_H": "1"}\n'  # building a child's environment is not reading one
    ).replace("XX_", "HUB_")  # written so, the docs test (every HUB_* name documented) skips them
    assert hub_reads(sample) == [3, 4, 5, 6, 7, 8, 10]
    assert any_reads(sample) == [3, 4, 5, 6, 7, 8, 9, 10]


def test_hub_variables_are_read_in_ops_settings_only() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _sources()
        if path != SETTINGS
        for line in hub_reads(path.read_text())
    ]
    assert not offenders, (
        "HUB_* variables read outside ops/settings.py (add a function or a Settings field there and "
        "pass the value in): " + ", ".join(offenders)
    )


def test_the_core_reads_no_environment() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "hub").rglob("*.py"))
        for line in any_reads(path.read_text())
    ]
    assert not offenders, (
        "hub/ reads the environment (ops/settings.py reads it; ops passes the value in): "
        + ", ".join(offenders)
    )


def hub_lookups(source: str) -> list[int]:
    """Lines of ``source`` that look a ``HUB_*`` name up in any mapping (``env.get("HUB_…")``,
    ``env["HUB_…"]``): the event-sourcing library's ``Application.env`` merges the process
    environment, so a lookup there is a read of the environment too."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript):
            key = node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            key = node.args[0] if node.args else None
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("HUB_"):
            found.add(node.lineno)
    return sorted(found)


def test_the_core_looks_up_no_hub_variable() -> None:
    sample = 'x = self.env.get("HUB_CONFIG_DIR")\ny = env["HUB_CONFIG_DIR"]\nz = d.get("other")\n'
    assert hub_lookups(sample) == [1, 2]
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "hub").rglob("*.py"))
        for line in hub_lookups(path.read_text())
    ]
    assert not offenders, (
        "hub/ looks up HUB_* names (the ledger's env holds the process environment): take the value "
        "as a parameter from ops instead: " + ", ".join(offenders)
    )
