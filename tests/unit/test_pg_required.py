"""CI fails, instead of skipping, when PostgreSQL is unreachable (issue 16); HUB_TEST_SKIP_PG=1 skips."""

from __future__ import annotations

import pytest

from tests import conftest


def test_an_unreachable_postgresql_fails_with_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "PG_DSN", "host=127.0.0.1 port=1 user=postgres dbname=test")
    monkeypatch.delenv(conftest.SKIP_PG_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception) as failure:
        conftest.require_pg()
    message = str(failure.value)
    assert "port=1" in message and "is unreachable" in message
    assert "docker run" in message and "HUB_TEST_SKIP_PG=1" in message


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_explicit_opt_out_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setattr(conftest, "PG_DSN", "host=127.0.0.1 port=1 user=postgres dbname=test")
    monkeypatch.setenv(conftest.SKIP_PG_ENV, value)
    with pytest.raises(pytest.skip.Exception, match="HUB_TEST_SKIP_PG is set"):
        conftest.require_pg()


def test_a_reachable_postgresql_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "_pg_unreachable", lambda: None)
    monkeypatch.setenv(conftest.SKIP_PG_ENV, "0")
    conftest.require_pg()
