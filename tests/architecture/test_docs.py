"""The docs keep up with the code: every ``HUB_*`` variable and every ``hub`` command is documented.

Why a test: an operator learns the hub from README.md and docs/, and a setting or a command that
exists only in the code is one nobody can use (or turn off) on purpose. Documented means: named in
README.md or a page under docs/ (a variable anywhere in the text; a command in code — an inline
code span or a fenced block — so that "the hub intake" in prose does not count for ``hub intake``).
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import typer.main

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("hub", "ops", "projections", "connectors", "benchmarks", "tests", ".ci")
CODE_FILES = ("Makefile",)
TEXT_SUFFIXES = {".py", ".toml", ".conf", ".service", ".yml", ".yaml", ".sh", ".cfg", ".ini", ".env", ""}
SKIP_DIRS = {"node_modules", "__pycache__", ".venv", "results"}
VARIABLE = re.compile(r"\bHUB_[A-Z][A-Z0-9_]*\b")


def _code_files() -> Iterator[Path]:
    for name in CODE_FILES:
        yield ROOT / name
    for top in CODE_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and not SKIP_DIRS & set(path.parts):
                yield path


def _mentions(path: Path) -> set[str]:
    """``HUB_*`` names a file mentions; in Python only in strings and comments, so that a constant
    named ``HUB_…`` (a Python name, not an environment variable) does not count."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return set(VARIABLE.findall(text))
    found: set[str] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        kind = tokenize.tok_name[token.type]
        if kind not in ("STRING", "COMMENT", "FSTRING_MIDDLE"):
            continue
        literal = token.string
        if kind == "STRING" and "f" in literal[: literal.find(literal[-1])].lower():
            literal = re.sub(r"\{[^{}]*\}", "", literal)  # an f-string's fields are code, not text
        found.update(VARIABLE.findall(literal))
    return found


def _docs() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(page.read_text() for page in pages)


def _code_spans(markdown: str) -> str:
    """The text of every fenced block and inline code span."""
    fenced = re.findall(r"^```.*?$(.*?)^```", markdown, flags=re.M | re.S)
    rest = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return "\n".join([*fenced, *re.findall(r"`([^`\n]+)`", rest)])


def _commands() -> list[str]:
    from ops.cli import app

    paths: list[str] = []

    def walk(command: object, prefix: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            paths.append(" ".join(prefix))
            return
        for name, sub in subcommands.items():
            if not getattr(sub, "hidden", False):
                walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), ["hub"])
    return paths


def test_every_hub_variable_in_the_code_is_documented() -> None:
    where: dict[str, list[str]] = {}
    this = Path(__file__).resolve()
    for path in _code_files():
        if path.resolve() == this:
            continue
        for name in _mentions(path):
            where.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert len(where) > 10, f"the scan found too few variables to be right: {sorted(where)}"
    documented = set(VARIABLE.findall(_docs()))
    missing = {name: files[:3] for name, files in sorted(where.items()) if name not in documented}
    assert not missing, (
        "HUB_* variables used in the code but named nowhere in README.md or docs/ (add a short entry"
        f" beside the neighbouring settings, e.g. README 'Environment' or docs/operations.md §8): {missing}"
    )


def test_every_hub_command_is_documented() -> None:
    commands = _commands()
    assert {"hub up", "hub intake", "hub audit verify"} <= set(commands), commands
    code = _code_spans(_docs())
    missing = [c for c in commands if not re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", code)]
    assert not missing, f"`hub` commands named in no code span of README.md or docs/: {missing}"
