"""The ``HUB_*`` variables moved into ops/settings.py (issue 16) keep their meaning, and a malformed
value is refused naming the variable, the value and the expected form."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.adapters.config.loading import DEFAULTS_DIR
from ops.bootstrap import build_ledger
from ops.settings import (
    SettingsError,
    config_dir,
    demo_rate,
    ingest_tokens,
    intake_worker,
    log_format,
    nats_port,
    stream_replicas,
)


def test_nats_port_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_NATS_PORT", raising=False)
    assert nats_port(None) is None
    monkeypatch.setenv("HUB_NATS_PORT", "4333")
    assert nats_port(None) == 4333
    assert nats_port(5000) == 5000
    monkeypatch.setenv("HUB_NATS_PORT", "four")
    with pytest.raises(SettingsError, match="HUB_NATS_PORT 'four': expected a port number"):
        nats_port(None)


def test_demo_rate_from_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_DEMO_RATE", raising=False)
    assert demo_rate(600.0) == 600.0
    monkeypatch.setenv("HUB_DEMO_RATE", "120")
    assert demo_rate(600.0) == 120.0
    monkeypatch.setenv("HUB_DEMO_RATE", "lots")
    with pytest.raises(SettingsError, match="HUB_DEMO_RATE 'lots': expected cases per hour"):
        demo_rate(600.0)


def test_ingest_tokens_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_INGEST_TOKENS", "police=secret1, health = secret2,,broken")
    assert ingest_tokens() == {"secret1": "police", "secret2": "health"}
    monkeypatch.delenv("HUB_INGEST_TOKENS")
    assert ingest_tokens() == {}


def test_stream_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_STREAM_REPLICAS", raising=False)
    assert stream_replicas() is None
    monkeypatch.setenv("HUB_STREAM_REPLICAS", "5")
    assert stream_replicas() == 5
    for bad, why in (("x", "expected a whole number"), ("7", "JetStream allows 1 to 5")):
        monkeypatch.setenv("HUB_STREAM_REPLICAS", bad)
        with pytest.raises(SettingsError, match=why):
            stream_replicas()


def test_intake_worker_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_INTAKE_WORKER", raising=False)
    monkeypatch.delenv("HUB_INTAKE_WORKERS", raising=False)
    assert intake_worker() == (0, 1)
    monkeypatch.setenv("HUB_INTAKE_WORKER", "2")
    monkeypatch.setenv("HUB_INTAKE_WORKERS", "3")
    assert intake_worker() == (2, 3)
    assert intake_worker(1, None) == (1, 3)
    assert intake_worker(None, 4) == (2, 4)
    monkeypatch.setenv("HUB_INTAKE_WORKERS", "three")
    with pytest.raises(SettingsError, match="HUB_INTAKE_WORKERS 'three': expected a whole number"):
        intake_worker()


def test_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_LOG_FORMAT", raising=False)
    assert log_format() == "text"
    monkeypatch.setenv("HUB_LOG_FORMAT", "json")
    assert log_format() == "json"
    assert log_format("text") == "text"


def test_the_ledger_takes_its_config_dir_from_ops_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core ignores HUB_CONFIG_DIR; build_ledger (ops) reads it and passes it in."""
    deployment = tmp_path / "config"
    deployment.mkdir()
    shipped = (Path(__file__).resolve().parents[2] / "hub" / "defaults" / "departments.toml").read_text(
        "utf-8"
    )
    extra = '\n[departments.water]\nname = "水务"\nkinds = ["leak"]\n'
    (deployment / "departments.toml").write_text(shipped + extra, encoding="utf-8")
    monkeypatch.setenv("HUB_CONFIG_DIR", str(deployment))
    assert config_dir() == deployment.resolve()
    in_memory = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    core = build_ledger(f"sqlite:///{tmp_path / 'core.sqlite'}", in_memory, config_dir=DEFAULTS_DIR)
    assert "water" not in core.domain.departments  # the shipped defaults
    wired = build_ledger(f"sqlite:///{tmp_path / 'events.sqlite'}")
    assert "water" in wired.domain.departments
    given = build_ledger(f"sqlite:///{tmp_path / 'given.sqlite'}", in_memory, config_dir=deployment)
    assert "water" in given.domain.departments
