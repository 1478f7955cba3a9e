"""NATS users (issue 15): one list of department users, its checks, the development defaults named,
the hub's secret kept out of what others read, and the retention settings' grammar and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.intake import DEFAULT_MAX_AGE_S, StreamSettings, city_stream_config
from ops.cluster import ACCOUNTS_FILE, NatsCluster
from ops.nats_auth import (
    NatsAuth,
    NatsUsersError,
    department_users,
    development_passwords,
    hub_password,
    nats_development_defaults,
    redact,
    shipped_accounts_conf,
    with_hub_credentials,
)
from ops.settings import SettingsError, StreamRetention, stream_retention


def _users(tmp_path: Path, body: str) -> Path:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "nats_users.toml").write_text(body)
    return config


def test_the_shipped_accounts_file_is_generated_from_the_one_list() -> None:
    assert ACCOUNTS_FILE.read_text() == shipped_accounts_conf(), (
        "ops/nats/cluster-accounts.conf drifted from ops/defaults/nats_users.toml: "
        "regenerate it with `python -m ops.nats_auth > ops/nats/cluster-accounts.conf`"
    )
    assert set(development_passwords()) == {
        "police", "citymgmt", "health", "courts", "citizens", "comprehensive", "mental_health",
    }  # fmt: skip


def test_departments_are_confined_and_the_hub_is_not(tmp_path: Path) -> None:
    text = NatsAuth("s3cret-hub", {"police": "p4ss"}).authorization_config()
    assert '{ user: hub, password: "s3cret-hub" }' in text  # everything: no permissions block
    assert 'publish: { allow: ["city.police.>"] }, subscribe: { allow: ["_INBOX.>"] }' in text
    # hub cluster up generates the same list (the deployment's passwords when configured)
    config = _users(tmp_path, '[users]\npolice = "cluster-police-pw"\n')
    node = NatsCluster.plan(tmp_path / "cluster", config_dir=config).nodes[0]
    assert 'user: police, password: "cluster-police-pw"' in node.config_text()
    assert "user: citymgmt" not in node.config_text()  # the deployment's file replaces the defaults


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[users]\ncommand = "x"\n', "not a department user"),
        ('[users]\nhub = "x"\n', "not a department user"),
        ('[users]\npolce = "x"\n', "no such department"),
        ('[users]\n"Police.x" = "x"\n', "lower-case letters"),
        ('[users]\npolice = ""\n', "non-empty password"),
        ('[users]\npolice = "two words"\n', "may not hold spaces"),
        ('police = "x"\n', "expected a [users] table"),
        ("[users\n", "nats_users.toml"),
    ],
)
def test_a_bad_users_file_is_named_with_the_fix(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(NatsUsersError, match=r"nats_users\.toml") as caught:
        department_users(_users(tmp_path, body))
    assert message in str(caught.value)


def test_each_development_credential_still_active_is_named(tmp_path: Path) -> None:
    named = nats_development_defaults(None)
    assert len(named) == len(development_passwords())
    assert "NATS user police has the development password (set it in HUB_CONFIG_DIR/nats_users.toml)" in named
    config = _users(tmp_path, '[users]\npolice = "Xk2-long-and-random"\nhealth = "health-dev"\n')
    assert nats_development_defaults(config) == [
        "NATS user health has the development password (set it in HUB_CONFIG_DIR/nats_users.toml)"
    ]
    # an external server: what HUB_NATS_URL carries
    assert (
        "development password of NATS user hub"
        in nats_development_defaults(None, "nats://hub:hub-dev@10.0.0.1:4222")[0]
    )
    assert "no credentials" in nats_development_defaults(None, "nats://10.0.0.1:4222")[0]
    assert nats_development_defaults(None, "nats://10.0.0.1:4222", other_credentials=True) == []
    assert nats_development_defaults(None, "nats://hub:Zq8-secret@10.0.0.1:4222") == []


def test_the_hubs_secret_stays_out_of_what_others_read(tmp_path: Path) -> None:
    assert hub_password(tmp_path, create=False) is None
    password = hub_password(tmp_path)
    assert password and hub_password(tmp_path) == password  # generated once, then reused
    url = with_hub_credentials("nats://127.0.0.1:4300", tmp_path, {4300})
    assert url == f"nats://hub:{password}@127.0.0.1:4300"
    assert with_hub_credentials("nats://127.0.0.1:4301", tmp_path, {4300}) == "nats://127.0.0.1:4301"
    assert with_hub_credentials("nats://10.0.0.7:4300", tmp_path, {4300}) == "nats://10.0.0.7:4300"
    assert redact(url) == "nats://hub:***@127.0.0.1:4300"
    assert redact("nats://a:b@h:1,nats://a:b@h:2") == "nats://a:***@h:1,nats://a:***@h:2"
    (tmp_path / "nats-hub-credentials.json").write_text("{not json")
    with pytest.raises(NatsUsersError, match="delete the file"):
        hub_password(tmp_path)


@pytest.mark.parametrize(
    ("age", "size", "expected"),
    [
        ("30d", "10GB", StreamRetention(30 * 86400.0, 10 * 1024**3)),
        ("12h", "512MB", StreamRetention(12 * 3600.0, 512 * 1024**2)),
        ("90m", "1073741824", StreamRetention(5400.0, 1024**3)),
        ("2w", "2GiB", StreamRetention(14 * 86400.0, 2 * 1024**3)),
        ("unlimited", "unlimited", StreamRetention(0.0, -1)),
        ("", "", StreamRetention(None, None)),
    ],
)
def test_retention_settings(age: str, size: str, expected: StreamRetention) -> None:
    assert stream_retention(age, size) == expected


@pytest.mark.parametrize(
    ("age", "size", "message"),
    [
        ("thirty days", "", "HUB_STREAM_MAX_AGE 'thirty days': expected a duration"),
        ("60s", "", "at least 2m"),
        ("", "lots", "HUB_STREAM_MAX_BYTES 'lots': expected a size"),
        ("", "100KB", "at least 1MB"),
    ],
)
def test_bad_retention_settings_are_named(age: str, size: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        stream_retention(age, size)


def test_the_retention_rule() -> None:
    new = city_stream_config(StreamSettings())
    assert (new.max_age, new.max_bytes) == (DEFAULT_MAX_AGE_S, -1)  # bounded by default
    edited = city_stream_config(StreamSettings(), new)
    edited.max_age, edited.max_bytes = 3600.0, 10**9
    assert StreamSettings().retention(edited) == (3600.0, 10**9)  # unset: the stream's own is kept
    assert StreamSettings(max_age_s=7200, max_bytes=-1).retention(edited) == (7200, -1)  # configured
    edited.max_age = 0.0  # unbounded by an earlier version: the default now
    assert StreamSettings().retention(edited) == (DEFAULT_MAX_AGE_S, 10**9)


def test_a_department_gets_its_url_from_the_operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ops.cli import app

    monkeypatch.setenv("HUB_CONFIG_DIR", str(_users(tmp_path, '[users]\npolice = "Pw-of-police-110"\n')))
    data = tmp_path / "var"
    data.mkdir()
    (data / "nats.url").write_text("nats://127.0.0.1:4555\n")
    shown = CliRunner().invoke(app, ["nats", "url", "police", "--data-dir", str(data)])
    assert shown.exit_code == 0 and shown.stdout.strip() == "nats://police:Pw-of-police-110@127.0.0.1:4555"
    assert CliRunner().invoke(app, ["nats", "url", "health", "--data-dir", str(data)]).exit_code == 2
    listed = CliRunner().invoke(app, ["nats", "users"]).stdout
    assert "police" in listed and "own password" in listed and "Pw-of-police-110" not in listed
