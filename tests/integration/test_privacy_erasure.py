"""Issue 8 acceptance: personal data sealed per person; erasing one key keeps every replay intact."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from hub import messages as m
from hub.adapters.audit import AuditChain
from hub.adapters.privacy.erasure import ERASED, find_person
from ops.bootstrap import build_ledger, projector_decoder
from projections import export_parquet, rebuild
from tests.factories import case_history

PERSONS = {
    "P1": {"name": "王小明", "phone": "13911112222", "id_number": "320102199001011234"},
    "P2": {"name": "李四娘", "phone": "13733334444"},
}
CASES = {"C1": "P1", "C2": "P2", "C3": "P1"}  # P1 reported twice


def _events(caseref: str, person: str) -> list[dict[str, Any]]:
    events = case_history(caseref)
    events[0]["data"]["reporter"] = PERSONS[person]
    return events


def _fill(url: str, extra_env: dict[str, str] | None = None) -> Any:
    ledger = build_ledger(url, extra_env)
    for caseref, person in CASES.items():
        ledger.apply_batch([m.validate(orjson.dumps(e), ledger.catalogue) for e in _events(caseref, person)])  # type: ignore[misc]
    return ledger


def _views(ledger: Any, path: Path, until: int | None = None) -> dict[str, list[tuple[Any, ...]]]:
    rebuild(path, ledger.recorder, state_decoder=projector_decoder(ledger), until=until, swap=until is None)
    con = duckdb.connect(str(path), read_only=True)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) for r in con.sql(sql).to_arrow_table().to_pylist()]

    try:
        return {
            "reporters": rows(
                "SELECT c.caseref, r.reporter_name, r.reporter_phone, r.reporter_id_number"
                " FROM case_reporters r JOIN cases c USING (case_id) ORDER BY 1"
            ),
            "cases": rows("SELECT * EXCLUDE (last_recorded_at, title) FROM cases ORDER BY caseref"),
            "titles": rows("SELECT caseref, title FROM cases ORDER BY caseref"),
            "events": rows("SELECT * EXCLUDE (title) FROM events ORDER BY seq"),
            "event_titles": rows("SELECT caseref, title FROM events WHERE title IS NOT NULL ORDER BY seq"),
            "counts": rows("SELECT stage, count(*) FROM cases GROUP BY 1 ORDER BY 1"),
        }
    finally:
        con.close()


def _case_id(caseref: str) -> Any:
    return m.case_id_for("citymgmt-dcm", caseref)


def test_store_key_leaves_no_name_or_phone_in_the_database_file(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    db = tmp_path / "events.sqlite"
    ledger = _fill(
        f"sqlite:///{db}", {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher", "CIPHER_KEY": key}
    )
    assert ledger.get_case(_case_id("C1")).reporter["name"] == "王小明"
    ledger.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("events.sqlite"))
    for person in PERSONS.values():
        for value in person.values():
            assert value.encode() not in raw, value
    assert "供水井盖破损".encode() not in raw  # whole-store cipher: no plain text at all


def test_sealed_fields_without_store_key_are_not_in_the_store(store_url: str, tmp_path: Path) -> None:
    """Even without the whole-store cipher, personal fields are only ever stored sealed."""
    ledger = _fill(store_url)
    for n in ledger.recorder.select_notifications(start=1, limit=1000):
        for person in PERSONS.values():
            for value in person.values():
                assert value.encode() not in n.state
    tables = ledger.mapper.sealer.keyring.tables
    for row in tables.query(f"SELECT * FROM {tables.table('hub_privacy_keys')}"):
        assert all(
            v.encode() not in orjson.dumps(dict(row), default=str)
            for p in PERSONS.values()
            for v in p.values()
        )
    ledger.close()


def test_erasing_one_person_keeps_replay_and_every_other_field(store_url: str, tmp_path: Path) -> None:
    ledger = _fill(store_url)
    chain = AuditChain(ledger.recorder)
    chain.extend()
    before = _views(ledger, tmp_path / "before.duckdb")
    assert before["reporters"] == [
        ("C1", "王小明", "13911112222", "320102199001011234"),
        ("C2", "李四娘", "13733334444", None),
        ("C3", "王小明", "13911112222", "320102199001011234"),
    ]

    kids = find_person(ledger.mapper, ledger.recorder, "139 1111 2222")  # by phone; keyed on id number
    assert ledger.mapper.sealer.keyring.erase(kids, "test erasure") == 1
    ledger.close()

    fresh = build_ledger(store_url)  # another process: nothing cached
    erased = {"name": ERASED, "phone": ERASED, "id_number": ERASED}
    assert fresh.get_case(_case_id("C1")).reporter == erased
    assert fresh.get_case(_case_id("C3")).reporter == erased
    assert fresh.get_case(_case_id("C2")).reporter == {
        "name": "李四娘",
        "phone": "13733334444",
        "id_number": None,
    }
    assert fresh.get_case(_case_id("C1")).stage.value == "closed"  # every other field and the stage replay

    after = _views(fresh, tmp_path / "after.duckdb")
    assert after["reporters"] == [
        ("C1", ERASED, ERASED, ERASED),
        ("C2", "李四娘", "13733334444", None),
        ("C3", ERASED, ERASED, ERASED),
    ]
    assert after["cases"] == before["cases"]
    # titles are free text sealed with the report (issue 15: a department's own title may name
    # its reporter): the erased person's read [erased], everyone else's are kept
    titles = dict(before["titles"])
    assert dict(after["titles"]) == {"C1": ERASED, "C2": titles["C2"], "C3": ERASED}
    assert after["events"] == before["events"]
    assert {ref for ref, title in after["event_titles"] if title == ERASED} == {"C1", "C3"}
    assert [t for t in after["event_titles"] if t[0] == "C2"] == [
        t for t in before["event_titles"] if t[0] == "C2"
    ]
    assert after["counts"] == before["counts"]

    asof = _views(
        fresh, tmp_path / "asof.duckdb", until=10
    )  # the auditor's snapshot (hub replay --until --out)
    assert ("C1", ERASED, ERASED, ERASED) in asof["reporters"]

    out = tmp_path / "parquet"
    export_parquet(tmp_path / "after.duckdb", out)
    exported = b"".join(p.read_bytes() for p in out.rglob("*.parquet"))
    assert b"13911112222" not in exported and "王小明".encode() not in exported

    assert AuditChain(fresh.recorder).verify().ok  # erasure never touches the chained history
    fresh.close()


def test_a_person_reporting_again_after_erasure_gets_a_new_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    ledger = _fill(url)
    ledger.mapper.sealer.keyring.erase(find_person(ledger.mapper, ledger.recorder, "王小明"), "test")
    ledger.apply_batch([m.validate(orjson.dumps(e), ledger.catalogue) for e in _events("C9", "P1")])  # type: ignore[misc]
    ledger.close()
    fresh = build_ledger(url)
    assert fresh.get_case(_case_id("C1")).reporter["name"] == ERASED
    assert fresh.get_case(_case_id("C9")).reporter["name"] == "王小明"
    fresh.close()


@pytest.mark.parametrize("kind", ["psych_crisis"])
def test_sensitive_free_text_is_sealed_under_the_reporters_key(tmp_path: Path, kind: str) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    ledger = build_ledger(url)
    event = case_history("H1", steps=1, department="health", kind=kind, source="health-his")[0]
    event["data"].update(
        {"category": "psych", "description": "患者自述有轻生念头", "reporter": PERSONS["P2"]}
    )
    outcome = ledger.apply_batch([m.validate(orjson.dumps(event), ledger.catalogue)])  # type: ignore[list-item]
    assert outcome[0].verdict.value == "applied", outcome
    n = ledger.recorder.select_notifications(start=1, limit=1)[0]
    assert "轻生".encode() not in n.state
    ledger.mapper.sealer.keyring.erase(find_person(ledger.mapper, ledger.recorder, "13733334444"), "test")
    ledger.close()
    fresh = build_ledger(url)
    case = fresh.get_case(m.case_id_for("health-his", "H1"))
    assert case.description == ERASED and case.title == ERASED  # the title is sealed with the report
    fresh.close()
