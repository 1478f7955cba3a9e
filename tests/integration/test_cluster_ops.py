"""Issue 9: the operations files refer to what exists — metric names the hub exports, flags the CLI has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from ops.cli import app

ROOT = Path(__file__).resolve().parents[2]


def exported_metric_names() -> set[str]:
    source = (ROOT / "ops" / "runtime.py").read_text()
    return set(re.findall(r'"(hub_[a-z_]+)"', source))


def test_alert_rules_use_only_exported_metrics() -> None:
    rules = yaml.safe_load((ROOT / "ops" / "prometheus" / "alerts.yml").read_text())
    exported = exported_metric_names() | {"up"}
    assert {"hub_component_up", "hub_projector_lag_events", "hub_intake_consumer_pending"} <= exported
    seen = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
            names = set(re.findall(r"\b(hub_[a-z_]+|up)\b(?=[{\[\s=<>)]|$)", rule["expr"]))
            assert names and names <= exported, (rule["alert"], names - exported)
            seen += 1
    assert seen >= 8
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"hub-api", "hub-intake"}


def test_systemd_units_run_existing_commands() -> None:
    runner = CliRunner()
    for unit in ("hub.service", "hub-intake@.service"):
        text = (ROOT / "ops" / "systemd" / unit).read_text()
        assert "[Service]" in text and "[Install]" in text
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        argv = shlex.split(exec_start.split("=", 1)[1].replace("%i", "1"))
        command, flags = argv[1], [a.split("=")[0] for a in argv[2:] if a.startswith("--")]
        help_text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        for flag in flags:
            assert flag in help_text, f"{unit}: hub {command} has no {flag}"
