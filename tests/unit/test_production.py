"""Issue 15: production mode names every development credential and open door (ops/production.py)."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

import pytest

from ops.production import EXIT_REFUSED, ProductionRefused, production_problems, refuse_if_unfit
from ops.settings import Settings, SettingsError

DOORS = ("API tokens", "ingest tokens", "Open311", "/metrics")
"""The doors this module's checks cover (the NATS users' check joins them when merged)."""


def at_doors(problems: list[str]) -> list[str]:
    return [p for p in problems if p.startswith(DOORS)]


API_DEV = ("dev-screen", "dev-operator", "dev-auditor", "dev-analyst", "dev-police", "dev-citymgmt")
INGEST_DEV = ("dev-police-token", "dev-citymgmt-token", "dev-health-token", "dev-courts-token",
              "dev-citizens-token", "dev-hub-token")  # fmt: skip


def settings(tmp_path: Path, config_dir: Path | None = None, **kw: object) -> Settings:
    return dataclasses.replace(
        Settings(data_dir=tmp_path / "var", nats_url=None, store_url="sqlite:///x", config_dir=config_dir),
        **kw,
    )


def secure_config(tmp_path: Path) -> Path:
    """A deployment's HUB_CONFIG_DIR with its own long random tokens and Open311 keys."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "api_tokens.toml").write_text(
        f'[[token]]\ntoken = "{secrets.token_urlsafe(32)}"\nrole = "screen"\nactor = "screen:wall"\n'
    )
    (config / "ingest_tokens.toml").write_text(f'[tokens]\npolice = "{secrets.token_urlsafe(32)}"\n')
    (config / "open311_keys.toml").write_text(
        f'[[key]]\napi_key = "{secrets.token_urlsafe(32)}"\nname = "12345 app"\nper_minute = 30\n'
    )
    return config


@pytest.fixture(autouse=True)
def _no_env_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_INGEST_TOKENS", raising=False)


def test_every_development_default_is_named(tmp_path: Path) -> None:
    problems = at_doors(production_problems(settings(tmp_path)))
    text = "\n".join(problems)
    for token in API_DEV:
        assert token in text, token
    for token in INGEST_DEV:
        assert token in text, token
    assert "dev-police-token (police)" in text  # the ingest token, beside its department
    assert any(p.startswith("Open311") and "api_key" in p for p in problems)
    assert any(p.startswith("/metrics") and "HUB_METRICS_TOKEN" in p for p in problems)
    assert len(problems) == 4  # one line per door: API tokens, ingest tokens, Open311, /metrics


def test_a_secure_configuration_passes(tmp_path: Path) -> None:
    ok = settings(
        tmp_path, secure_config(tmp_path), env="production", metrics_token=secrets.token_urlsafe(32)
    )
    assert at_doors(production_problems(ok)) == []


def test_weak_and_environment_tokens_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = secure_config(tmp_path)
    (config / "api_tokens.toml").write_text('[[token]]\ntoken = "short"\nrole = "operator"\n')
    monkeypatch.setenv("HUB_INGEST_TOKENS", "health=dev-health-token")
    problems = production_problems(settings(tmp_path, config, metrics_token="dev-metrics"))
    text = "\n".join(problems)
    assert "role operator" in text and "short" not in text.replace("shorter", "")  # no secret logged
    assert "dev-health-token (health)" in text
    assert "HUB_METRICS_TOKEN is shorter" in text
    assert not any(p.startswith("Open311") for p in problems)


def test_production_refuses_development_lists(tmp_path: Path) -> None:
    with pytest.raises(ProductionRefused) as refused:
        refuse_if_unfit(settings(tmp_path, env="production"))
    assert len(at_doors(refused.value.problems)) == 4 and "dev-operator" in str(refused.value)
    assert len(at_doors(refuse_if_unfit(settings(tmp_path)))) == 4  # development: the banner's list
    assert EXIT_REFUSED == 78


def test_hub_env_is_read_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ENV", "Production")
    monkeypatch.setenv("HUB_METRICS_TOKEN", "t" * 30)
    monkeypatch.setenv("HUB_OPEN311_MAX_BYTES", "2048")
    read = Settings.from_env(tmp_path)
    assert (read.production, read.metrics_token, read.open311_max_bytes) == (True, "t" * 30, 2048)
    monkeypatch.setenv("HUB_ENV", "staging")
    with pytest.raises(SettingsError, match="HUB_ENV 'staging'"):
        Settings.from_env(tmp_path)
    monkeypatch.setenv("HUB_ENV", "development")
    monkeypatch.setenv("HUB_OPEN311_MAX_BYTES", "lots")
    with pytest.raises(SettingsError, match="HUB_OPEN311_MAX_BYTES"):
        Settings.from_env(tmp_path)


def test_open311_key_file_errors_name_the_entry(tmp_path: Path) -> None:
    from ops.open311_keys import load_open311_keys

    config = tmp_path / "c"
    config.mkdir()
    assert load_open311_keys(config) == {}
    (config / "open311_keys.toml").write_text('[[key]]\napi_key = "short"\nname = "x"\n')
    with pytest.raises(SettingsError, match=r"\[\[key\]\] #1: api_key must be text of at least 24"):
        load_open311_keys(config)
    key = "k" * 30
    (config / "open311_keys.toml").write_text(
        f'[[key]]\napi_key = "{key}"\nname = "12345 app"\ndepartment = "citizens"\n'
        "per_minute = 30\nburst = 5\n"
    )
    loaded = load_open311_keys(config)[key]
    assert (loaded.name, loaded.department, loaded.per_minute, loaded.burst) == (
        "12345 app",
        "citizens",
        30.0,
        5,
    )
