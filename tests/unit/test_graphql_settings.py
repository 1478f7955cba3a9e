"""HUB_GRAPHQL_MAX_BYTES and HUB_GRAPHQL_REWINDS_PER_MINUTE (issue 15), read in ops/settings.py only."""

from __future__ import annotations

import pytest

from hub.api.gql import Limits
from ops.settings import SettingsError, graphql_limits


def test_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_GRAPHQL_MAX_BYTES", raising=False)
    monkeypatch.delenv("HUB_GRAPHQL_REWINDS_PER_MINUTE", raising=False)
    limits = Limits(**graphql_limits())
    assert (limits.max_bytes, limits.rewinds_per_minute) == (100_000, 10)
    monkeypatch.setenv("HUB_GRAPHQL_MAX_BYTES", "250_000")
    monkeypatch.setenv("HUB_GRAPHQL_REWINDS_PER_MINUTE", "3")
    assert graphql_limits() == {"max_bytes": 250_000, "rewinds_per_minute": 3}


@pytest.mark.parametrize("value", ["100KB", "0", "-5"])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HUB_GRAPHQL_MAX_BYTES", value)
    with pytest.raises(SettingsError, match="HUB_GRAPHQL_MAX_BYTES"):
        graphql_limits()
