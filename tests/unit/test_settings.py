"""Operators configure the store and NATS by URL; mistakes get a message naming the variable."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ops.natsd import EmbeddedNats, NatsStartError, free_port
from ops.settings import SettingsError, store_env


def test_sqlite_url(tmp_path: Path) -> None:
    env = store_env(f"sqlite:///{tmp_path}/a/events.sqlite")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == f"{tmp_path}/a/events.sqlite"
    assert (tmp_path / "a").is_dir()


def test_postgres_url() -> None:
    env = store_env("postgresql://hub:s%40cret@db.local:6432/city?schema=hub")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == (
        "db.local",
        "6432",
        "city",
    )
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_SCHEMA"]) == (
        "hub",
        "s@cret",
        "hub",
    )


@pytest.mark.parametrize("url", ["mysql://x/y", "postgresql://host/", "sqlite://"])
def test_bad_store_urls_say_what_is_expected(url: str) -> None:
    with pytest.raises(SettingsError, match="HUB_STORE_URL"):
        store_env(url)


def test_default_port_falls_back_but_an_explicit_one_does_not() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        port, fell_back = EmbeddedNats.choose_port(None, taken)
        assert fell_back and port != taken
        with pytest.raises(NatsStartError, match="already in use"):
            EmbeddedNats.choose_port(taken, 4222)
    free = free_port()
    assert EmbeddedNats.choose_port(free, 4222) == (free, False)
