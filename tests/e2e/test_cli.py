"""The `hub` command as operators use it: real processes, real nats-server, a real store file."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hub import messages as m
from ops.bootstrap import build_ledger
from ops.natsd import free_port
from tests.factories import case_history, event
from tests.support import GENEROUS_S, wait_until

HUB = str(Path(sys.executable).parent / "hub")


def run_hub(
    *args: str, env: dict[str, str] | None = None, timeout: float = GENEROUS_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HUB, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def test_help_documents_every_command() -> None:
    out = run_hub("--help").stdout
    for command in ("up", "intake", "publish", "dlq"):
        assert command in out
    dlq = run_hub("dlq", "--help").stdout
    assert "list" in dlq and "replay" in dlq
    up = run_hub("up", "--help").stdout
    for flag in ("--data-dir", "--host", "--http-port", "--nats-port", "--no-demo", "--production"):
        assert flag in up


def test_explicit_nats_port_that_is_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_hub("up", "--data-dir", str(tmp_path), "--nats-port", str(port), "--no-demo")
    assert result.returncode == 2
    assert f"NATS port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--nats-port" in result.stderr


def test_bad_store_url_is_a_clear_error(tmp_path: Path) -> None:
    result = run_hub("up", "--data-dir", str(tmp_path), "--no-demo", env={"HUB_STORE_URL": "mysql://x/y"})
    assert result.returncode == 2
    assert "unsupported scheme 'mysql'" in result.stderr
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert leftover.stdout == "", "the embedded nats-server outlived a failed start"


def test_up_production_refuses_and_names_each_development_default(tmp_path: Path) -> None:
    """Issue 15: `hub up --production` (or HUB_ENV=production) with the shipped development
    credentials refuses to start, names each one, exits 78 (EX_CONFIG) and starts nothing."""
    env = {"HUB_CONFIG_DIR": "", "HUB_METRICS_TOKEN": "", "HUB_INGEST_TOKENS": "", "HUB_ENV": ""}
    for how, extra in ((("--production",), {}), ((), {"HUB_ENV": "production"})):
        data = tmp_path / f"var{len(how)}"
        result = run_hub("up", "--data-dir", str(data), "--no-demo", *how, env={**env, **extra})
        assert result.returncode == 78, result.stderr
        refusal = result.stderr
        assert "production mode" in refusal and "refuses to start" in refusal, refusal
        for name in (
            "dev-screen",
            "dev-operator",
            "dev-auditor",
            "dev-analyst",
            "dev-police",
            "dev-citymgmt",
        ):
            assert f"{name}," in refusal or f"{name} " in refusal, name  # the API tokens
        for name in ("police", "citymgmt", "health", "courts", "citizens"):
            assert f"dev-{name}-token ({name})" in refusal, name  # the ingest tokens, by department
        assert "dev-hub-token (*)" in refusal
        assert "Open311" in refusal and "open311_keys.toml" in refusal
        assert "/metrics" in refusal and "HUB_METRICS_TOKEN" in refusal
        assert "departments without 'sources'" in refusal  # any could open cases under others' sources
        for name in ("police", "citymgmt", "health", "courts", "citizens"):  # the NATS users
            assert f"NATS user {name} has the development password" in refusal, name
        assert not (data / "nats").exists(), "production mode started something before refusing"


def _anonymous_connect(port: int) -> str:
    """What nats-server answers a client that connects without credentials."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        return sock.recv(4096).decode(errors="replace")


@pytest.mark.slow
def test_up_publish_dlq_and_clean_shutdown(tmp_path: Path) -> None:
    data = tmp_path / "var"
    nats_port, http_port = free_port(), free_port()
    hub = subprocess.Popen(
        [
            HUB,
            "up",
            "--data-dir",
            str(data),
            "--nats-port",
            str(nats_port),
            "--http-port",
            str(http_port),
            "--no-demo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
    )
    try:
        deadline = time.monotonic() + 180  # a busy machine starts nats, the writer and DuckDB slowly
        banner = ""
        while "citybrain-hub is up" not in banner or "stop: Ctrl-C" not in banner:
            assert time.monotonic() < deadline and hub.poll() is None, banner
            banner += hub.stdout.readline()  # type: ignore[union-attr]
        assert (data / "nats.url").read_text().strip() == f"nats://127.0.0.1:{nats_port}"
        # development mode says plainly which development credentials are active (issue 15)
        assert "mode: development" in banner and "DEVELOPMENT CREDENTIALS ACTIVE" in banner, banner
        assert "dev-operator" in banner and "dev-police-token (police)" in banner, banner
        assert "Open311 takes new requests WITHOUT an api_key" in banner and "/metrics answers" in banner
        # issue 15: the embedded NATS refuses anonymous clients; the hub's generated credentials
        # are private (0600) and never in nats.url, which external publishers read
        assert "authorization violation" in _anonymous_connect(nats_port).lower()
        creds = data / "nats-hub-credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert orjson.loads(creds.read_bytes())["password"] not in (data / "nats.url").read_text()

        events = tmp_path / "events.jsonl"
        lines = [orjson.dumps(e) for e in case_history("CLI-1")]
        bad = event("CLI-2", m.Action.REPORTED, data={"category": "01001"})  # no title
        lines += [orjson.dumps(bad), b"{broken"]
        events.write_bytes(b"\n".join(lines) + b"\n")
        result = run_hub("publish", str(events), "--data-dir", str(data))  # finds the running hub's NATS
        assert result.returncode == 1  # one unreadable line is reported, the rest is published
        assert f"{events}:9: not published" in result.stderr
        assert "8 accepted" in result.stdout

        def dead_letters() -> list[Any]:
            listed = run_hub("dlq", "list", "--json", "--data-dir", str(data))
            return [orjson.loads(line) for line in listed.stdout.splitlines() if line.strip()]

        letters = wait_until(dead_letters, what="the dead letter in `hub dlq list`", every=0.3)
        assert [(lt["reason"], lt["field"]) for lt in letters] == [("schema", "data.title")]
        table = run_hub("dlq", "list", "--data-dir", str(data)).stdout
        assert "CITY_DLQ: 1 dead letters" in table and "data.title" in table

        base = f"http://127.0.0.1:{http_port}"
        ready = wait_until(
            lambda: (r := httpx.get(f"{base}/readyz", timeout=30).json())["ready"] and r, what="/readyz ready"
        )
        assert ready["ready"] is True, ready

        # the dead letter (the 8th line) may be out before the 7 valid events are applied
        def metrics_with_all_applied() -> str | None:
            text = httpx.get(f"{base}/metrics", timeout=30).text
            return text if "hub_intake_applied_total 7" in text else None

        metrics = wait_until(metrics_with_all_applied, what="hub_intake_applied_total 7 in /metrics")
        assert "hub_intake_applied_total 7" in metrics
        assert 'hub_intake_dead_letters_total{reason="schema"} 1' in metrics
        assert "hub_projector_lag_events" in metrics and 'hub_component_up{component="intake"} 1' in metrics
    finally:
        hub.send_signal(signal.SIGTERM)
        code = hub.wait(60)
    assert code == 0
    assert not (data / "nats.url").exists()
    with pytest.raises(ConnectionRefusedError):  # the embedded nats-server was stopped with the hub
        socket.create_connection(("127.0.0.1", nats_port), timeout=2).close()
    ledger = build_ledger(f"sqlite:///{data / 'events.sqlite'}")
    assert ledger.get_case(m.case_id_for("citymgmt-dcm", "CLI-1")).stage.value == "closed"
