"""Prometheus exposition and JSON logs: the formats operators' tools parse."""

from __future__ import annotations

import logging

import orjson

from hub.api.metrics import Sample, render
from ops.logs import JsonFormatter


def test_exposition_groups_help_and_type_once_per_metric() -> None:
    text = render(
        [
            Sample("hub_intake_dead_letters_total", "counter", "events copied", 3, {"reason": "schema"}),
            Sample("hub_intake_dead_letters_total", "counter", "events copied", 1, {"reason": 'in"valid'}),
            Sample("hub_projector_lag_events", "gauge", "not yet projected", 0),
        ]
    )
    assert text.splitlines() == [
        "# HELP hub_intake_dead_letters_total events copied",
        "# TYPE hub_intake_dead_letters_total counter",
        'hub_intake_dead_letters_total{reason="schema"} 3',
        'hub_intake_dead_letters_total{reason="in\\"valid"} 1',
        "# HELP hub_projector_lag_events not yet projected",
        "# TYPE hub_projector_lag_events gauge",
        "hub_projector_lag_events 0",
    ]


def test_json_logs_keep_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "hub.intake",
            "levelname": "WARNING",
            "msg": "dead-lettered %s",
            "args": ("x",),
            "event_id": "police-110:A1:reported:0",
            "reason": "schema",
        }
    )
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["msg"] == "dead-lettered x"
    assert (entry["level"], entry["logger"]) == ("warning", "hub.intake")
    assert (entry["event_id"], entry["reason"]) == ("police-110:A1:reported:0", "schema")
