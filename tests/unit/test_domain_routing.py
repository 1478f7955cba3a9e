"""Taxonomy and the responsibility list (权责清单), alone and as the ledger applies them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub import messages as m
from hub.adapters.config.loading import ConfigError, load_domain, load_routing, load_sla, load_taxonomies
from hub.adapters.store.follower import LogFollower
from hub.application import CaseLedger, Verdict
from hub.domain import Basis, Category, ResponsibilityList, Rule, Stage, Unroutable

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DOMAIN = load_domain()
NANYUAN_GRID = DOMAIN.grids.resolve(118.665, 31.962)  # a grid of 南苑街道 (street 320105001)


def test_citymgmt_taxonomy_is_the_national_directory() -> None:
    tax = load_taxonomies()
    water = tax.lookup("citymgmt", "01001")
    assert water == Category("01001", "供水井盖异常", Basis.OWNER, "01", "市政公用设施类")
    stall = tax.lookup("citymgmt", "09001")
    assert stall is not None and stall.basis is Basis.TERRITORY
    assert len(tax.by_department["citymgmt"].categories) == 250
    with pytest.raises(ValueError, match=r"category '99999' is not in citymgmt's taxonomy"):
        tax.lookup("citymgmt", "99999")
    assert tax.lookup("police", "anything-new") is None  # lenient taxonomy
    assert tax.lookup("citizens", "x") is None  # no taxonomy configured


def rules() -> ResponsibilityList:
    return ResponsibilityList(
        (
            Rule(("water",), ("01001",)),
            Rule(("municipal",), ("01",)),
            Rule(("street_a",), (), "S1"),
            Rule(("community_c",), ("06",), "C1"),
            Rule(("enforcement",), ("06",)),
        )
    )


def test_components_by_owner_first_events_by_territory_first() -> None:
    owner = Category("01001", "供水井盖异常", Basis.OWNER)
    event = Category("06001", "私搭乱建", Basis.TERRITORY)
    path = ("D", "S1", "C1", "G1")
    assert rules().route("01001", owner, path).departments == ("water",)  # owner beats street
    assert rules().route("01002", owner, path).departments == ("municipal",)  # longest prefix of owners
    assert rules().route("06001", event, path).departments == ("community_c",)  # deepest area
    assert rules().route("06001", event, ("D", "S1", "C2")).departments == ("street_a",)
    assert rules().route("06001", event, ("D", "S9")).departments == ("enforcement",)  # no area: by category
    assert rules().route("01002", owner, ()).departments == ("municipal",)


def test_unroutable_names_category_and_grid() -> None:
    with pytest.raises(Unroutable, match=r"no responsible department for category '07001' \(x\) in grid G9"):
        ResponsibilityList((Rule(("a",), ("06",)),)).route(
            "07001", Category("07001", "x", Basis.TERRITORY), ("G9",)
        )


def test_config_errors_name_file_entry_and_line(tmp_path: Path) -> None:
    (tmp_path / "routing.toml").write_text('[[rule]]\ncategories = ["06"]\ndepartments = ["nobody"]\n')
    with pytest.raises(ConfigError, match=r"routing.toml: \[\[rule\]\] #1, line 1: department 'nobody'"):
        load_routing(tmp_path)
    (tmp_path / "sla.toml").write_text(
        '[[rule]]\nname = "a"\nhours = { accepted = 1 }\n\n[[rule]]\nhours = { done = 1 }\n'
    )
    with pytest.raises(
        ConfigError, match=r"sla.toml: \[\[rule\]\] #2, line 5: hours.done: not a clocked stage"
    ):
        load_sla(tmp_path)
    (tmp_path / "sla.toml").unlink()
    (tmp_path / "calendar.toml").write_text('holidays = ["2026-13-01"]\n')
    with pytest.raises(ConfigError, match=r"calendar.toml: holidays\[0\]: '2026-13-01'"):
        load_sla(tmp_path)
    (tmp_path / "categories.toml").write_text("[taxonomies.x\n")
    with pytest.raises(ConfigError, match=r"categories.toml: .*line 1"):
        load_taxonomies(tmp_path)


# --------------------------------------------------------------------------- in the ledger
def valid(caseref: str, n: int, action: str, data: dict[str, Any], **kw: Any) -> m.Valid:
    raw = m.make_event(
        id=f"{caseref}:{n}", source="citymgmt-dcm", department=kw.pop("department", "citymgmt"), kind="case",
        action=action, caseref=caseref, actor="gw:1", time=T0 + timedelta(minutes=n), data=data, **kw,
    )  # fmt: skip
    result = m.validate(orjson.dumps(raw), m.Catalogue.of({"citymgmt": ["case"], "command": ["case"]}))
    assert isinstance(result, m.Valid), result
    return result


def reported(caseref: str, category: str, lon: float = 118.665, lat: float = 31.962) -> m.Valid:
    return valid(
        caseref, 0, "reported", {"category": category, "title": "t", "location": {"lon": lon, "lat": lat}}
    )


@pytest.fixture()
def auto_ledger(tmp_path: Path) -> CaseLedger:
    text = (Path(__file__).resolve().parents[2] / "hub/defaults/routing.toml").read_text(encoding="utf-8")
    text = text.replace("auto_dispatch = []", 'auto_dispatch = ["citymgmt"]')
    (tmp_path / "routing.toml").write_text(text, encoding="utf-8")
    return CaseLedger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=load_domain(tmp_path), follow_log=LogFollower
    )


def test_location_resolves_to_grid_and_registration_routes(auto_ledger: CaseLedger) -> None:
    out = auto_ledger.apply_batch(
        [
            reported("W", "01001"),
            valid("W", 1, "registered", {}),
            reported("S", "09001"),  # 占道经营 → the street where it happens
            valid("S", 1, "registered", {}),
        ]
    )
    assert [o.verdict for o in out] == [Verdict.APPLIED] * 4
    water = auto_ledger.get_case(m.case_id_for("citymgmt-dcm", "W"))
    stall = auto_ledger.get_case(m.case_id_for("citymgmt-dcm", "S"))
    assert NANYUAN_GRID is not None and NANYUAN_GRID.startswith("320105001")
    assert water.grid == NANYUAN_GRID and stall.grid == NANYUAN_GRID
    assert water.stage is Stage.DISPATCHED and list(water.parts) == ["water"]
    assert list(stall.parts) == ["street_nanyuan"]
    assert water.due is not None  # 签收时限 running


def test_dispatch_auto_and_unknown_category(auto_ledger: CaseLedger) -> None:
    ledger = CaseLedger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=DOMAIN, follow_log=LogFollower
    )  # auto_dispatch off
    out = ledger.apply_batch(
        [
            reported("X", "04001", lon=118.775, lat=32.05),
            valid("X", 1, "registered", {}),
            valid("X", 2, "dispatched", {"departments": ["auto", "enforcement"]}),
            reported("Y", "99999"),
        ]
    )
    assert [o.verdict for o in out[:3]] == [Verdict.APPLIED] * 3
    case = ledger.get_case(m.case_id_for("citymgmt-dcm", "X"))
    assert case.grid is not None and case.grid.startswith("320105006")  # 江心洲街道
    assert sorted(case.parts) == ["enforcement", "greening"]
    assert out[3].verdict is Verdict.REFUSED and "'99999' is not in citymgmt's taxonomy" in out[3].detail


def test_unroutable_waits_for_manual_dispatch_or_refuses(tmp_path: Path) -> None:
    (tmp_path / "routing.toml").write_text('on_unroutable = "error"\nauto_dispatch = ["citymgmt"]\n')
    ledger = CaseLedger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=load_domain(tmp_path), follow_log=LogFollower
    )
    out = ledger.apply_batch([reported("Z", "06001"), valid("Z", 1, "registered", {})])
    assert (
        out[1].verdict is Verdict.REFUSED
        and "no responsible department for category '06001'" in out[1].detail
    )
    (tmp_path / "routing.toml").write_text('on_unroutable = "manual"\nauto_dispatch = ["citymgmt"]\n')
    ledger = CaseLedger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"}, domain=load_domain(tmp_path), follow_log=LogFollower
    )
    out = ledger.apply_batch([reported("Z", "06001"), valid("Z", 1, "registered", {})])
    assert [o.verdict for o in out] == [Verdict.APPLIED] * 2
    assert ledger.get_case(m.case_id_for("citymgmt-dcm", "Z")).stage is Stage.REGISTERED  # waits for 人工派遣
