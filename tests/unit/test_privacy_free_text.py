"""Issue 15: free text is sealed per case, titles carry no personal data, raw copies are found."""

from __future__ import annotations

import json
import uuid

from connectors.courts import CourtsConnector
from connectors.police import PoliceConnector
from hub import messages as m
from hub.adapters.privacy.policy import load_policy
from hub.adapters.privacy.streams import concerns, needles
from projections.schema import mask_statements

APPLICANT = {"name": "王小明", "phone": "13911112222", "id_number": "320102199001011234"}


def test_a_court_title_is_the_dispute_and_the_case_number_never_the_summary() -> None:
    record = {
        "case_type": "mediation",
        "case_no": "(2026)宁0102诉前调7号",
        "stage": "filed",
        "time": "2026-03-02T08:00:00+08:00",
        "dispute_code": "MD-02",
        "summary": f"申请人{APPLICANT['name']}（身份证{APPLICANT['id_number']}）与邻居噪音纠纷",
        "applicant": APPLICANT,
    }
    report = CourtsConnector().map(record)[0]
    assert report["data"]["title"] == "邻里纠纷：(2026)宁0102诉前调7号"
    assert report["data"]["description"] == record["summary"]  # kept, and sealed by the hub


def test_a_police_title_is_the_category_and_the_call_number_never_the_summary() -> None:
    record = {
        "record_type": "incident", "jjdbh": "J1", "stage": "received", "time": "2026-03-02T08:00:00+08:00",
        "category": "0601", "summary": "李四 13900000000 称邻居噪音扰民", "lon": 118.7, "lat": 32.0,
    }  # fmt: skip
    title = PoliceConnector().map(record)[0]["data"]["title"]
    assert title.endswith("：J1") and "李四" not in title and "139" not in title


def test_the_default_policy_seals_every_free_text_field_of_every_case_event() -> None:
    policy = load_policy()
    report = policy.paths("citybrain.case.reported.v1", {"kind": "case"})
    personal = {
        "reporter.name",
        "reporter.phone",
        "reporter.id_number",
        "title",
        "description",
        "attachments",
    }
    assert personal <= set(report)  # a title too: a department's own may name someone
    for topic in ("citybrain.case.handled.v1", "citybrain.case.registered.v1", "citybrain.case.rejected.v1"):
        assert policy.covers(topic) and {"note", "reason"} <= set(policy.paths(topic, {}))
        assert not policy.names_person(topic)  # sealed under the case's own key
    assert not policy.covers("citybrain.audit.access.recorded.v1")
    assert "location.address" in policy.paths("citybrain.case.reported.v1", {"kind": "psych_crisis"})


def test_the_read_models_mask_exactly_the_sealed_columns() -> None:
    sql = "\n".join(mask_statements("?", load_policy().all_paths))
    assert "UPDATE events SET" in sql and '"note"' in sql and '"reason"' in sql and '"address"' in sql
    assert "UPDATE case_reporters SET" in sql and '"reporter_phone"' in sql
    assert '"title"' in sql and '"category"' not in sql


def test_a_raw_event_is_found_by_case_or_by_value_in_any_encoding() -> None:
    case = m.case_id_for("citymgmt-dcm", "E1")
    event = {"source": "citymgmt-dcm", "caseref": "E1", "data": {"note": "nothing personal"}}
    found = needles(APPLICANT.values())
    assert concerns(json.dumps(event).encode(), None, {str(case)}, found)
    assert concerns(json.dumps([event]).encode(), None, {str(case)}, found)  # a batch array
    other = {"source": "citymgmt-dcm", "caseref": "E2", "data": {"reporter": APPLICANT}}
    assert concerns(json.dumps(other).encode(), None, set(), found)  # ASCII escapes (\\u738b…)
    assert concerns(json.dumps(other, ensure_ascii=False).encode(), None, set(), found)
    assert concerns(b"not json", {"Hub-Dlq-Detail": "phone 139 1111 2222"}, set(), needles(["139 1111 2222"]))
    assert not concerns(json.dumps({**other, "data": {}}).encode(), None, {str(uuid.uuid4())}, found)
