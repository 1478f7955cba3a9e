"""The GraphQL contract: the committed SDL equals the code's schema, and every operation document
the screen and the tests use is valid against it (so a rename breaks here, not on the wall)."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import parse, validate

from hub.api.gql.export import sdl
from hub.api.gql.schema import schema

ROOT = Path(__file__).resolve().parents[2]


def test_schema_graphql_matches_the_code() -> None:
    committed = (ROOT / "graphql" / "schema.graphql").read_text(encoding="utf-8")
    assert committed == sdl(), "graphql/schema.graphql drifted: run `python -m hub.api.gql.export`"


@pytest.mark.parametrize("path", sorted((ROOT / "graphql" / "operations").glob("*.graphql")), ids=str)
def test_operation_documents_are_valid(path: Path) -> None:
    errors = validate(schema._schema, parse(path.read_text(encoding="utf-8")))
    assert not errors, [e.message for e in errors]


def test_public_names() -> None:
    fields = schema._schema
    assert set(fields.query_type.fields) >= {  # type: ignore[union-attr]
        "overview", "cases", "case", "indicators", "hotspots", "grids", "departments"
    }  # fmt: skip
    assert set(fields.mutation_type.fields) >= {  # type: ignore[union-attr]
        "register", "reject", "dispatch", "return", "verify", "close", "escalate", "extend", "evaluate",
        "link",
    }  # fmt: skip
    assert set(fields.subscription_type.fields) >= {"caseChanged", "overviewChanged"}  # type: ignore[union-attr]
