"""Health connector (卫健): public-health reports, 120 dispatches, psychological crises, food tests.

Four systems of the health commission push records here, told apart by ``report_type``; each
report is one hub case. Category codes are in data/health_categories.csv (each code belongs to one
report type). Times without an offset are Beijing time (UTC+8).

Common fields: ``report_type`` (类型), ``report_id`` (报告编号, caseref), ``stage`` (环节), ``time``
(时间, ISO 8601), optional ``grid`` (网格编码), ``note`` (说明), ``address``/``lon``/``lat``.

``public_health`` 传染病/突发公共卫生事件报告 (from the CDC reporting system):

=============== ============ ============== ==============================================
field           中文          when           notes
=============== ============ ============== ==============================================
stage           环节          always         reported 报告 · investigating 流调 · controlled 处置完毕
disease_code    病种代码      reported       ``PH-…``
case_count      病例数        reported       integer ≥ 1
institution     报告单位      reported       actor of the report
=============== ============ ============== ==============================================

``emergency_120`` 120 急救调度:

=============== ============ ============== ==============================================
stage           环节          always         call 受理 · dispatch 派车 · arrive 到达 · complete 送达
complaint_code  主诉分类      call           ``EM-…``
level           分级          call, opt. (2) 1 危重 urgent … 4
caller          呼救人        call, optional {name, phone}
vehicle         车辆          dispatch       ambulance id
hospital        送达医院      complete
=============== ============ ============== ==============================================

``psych_crisis`` 心理危机 (two channels: ``channel`` = ``hotline`` 心理援助热线 12356 or ``grid``
网格员/社区发现). A crisis is handled jointly by both governance channels, 综治 (comprehensive) and
精神卫生 (mental_health): the report dispatches to both, each reports its intervention, then the case
is resolved.

=============== ============ ============== ==============================================
stage           环节          always         reported 报告 · intervened 干预 · resolved 解除
risk_code       风险类型      reported       ``PC-…``
channel         渠道          reported       hotline / grid
subject_person  当事人        reported       {name, phone, id_number}
department      处置渠道      intervened     comprehensive / mental_health
=============== ============ ============== ==============================================

``food_rapid_test`` 农贸市场快检不合格:

=============== ============ ============== ==============================================
stage           环节          always         failed 不合格 · disposed 下架销毁
item_code       检测项目      failed         ``FS-…``
market          市场          failed
stall           摊位          failed
sample          样品          failed         e.g. 韭菜
inspector       检测员        optional       actor
=============== ============ ============== ==============================================

Mapping: the first stage of each type → 上报 + 立案 (+ 派遣 where the responsible unit is known:
cdc, emergency_120, comprehensive + mental_health, market_supervision); the working stage → 签收
(and 处置 for a channel's intervention); the last stage → 处置反馈 + 核查 + 结案.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors import base
from connectors.base import RecordError
from hub import messages as m

A = m.Action
TYPES = {
    "public_health": ("public_health", ("reported", "investigating", "controlled")),
    "emergency_120": ("emergency", ("call", "dispatch", "arrive", "complete")),
    "psych_crisis": ("psych_crisis", ("reported", "intervened", "resolved")),
    "food_rapid_test": ("food_safety", ("failed", "disposed")),
}


def _category(r: Mapping[str, Any], name: str, kind: str) -> str:
    value = base.code(r, name, base.code_table("health_categories.csv"), "卫健分类")
    if base.code_table("health_categories.csv", label="kind")[value] != kind:
        raise RecordError(name, f"code {value!r} is not a {kind} code")
    return value


@dataclass
class HealthConnector(base.Connector):
    name: str = "health"
    department: str = "health"
    source: str = "health-wjw"
    kinds: tuple[str, ...] = ("public_health", "emergency", "psych_crisis", "food_safety")

    def map(self, r: Mapping[str, Any]) -> list[dict[str, Any]]:
        rtype = base.choice(r, "report_type", TYPES)
        kind, stages = TYPES[rtype]
        ref = base.text(r, "report_id", max_len=200)
        stage = base.choice(r, "stage", stages)
        at = base.time_field(r, "time")
        note = base.text(r, "note", required=False)
        grid = base.text(r, "grid", required=False) or None
        key = (
            stage
            if not (rtype == "psych_crisis" and stage == "intervened")
            else f"{stage}:{r.get('department')}"
        )

        def ev(action: m.Action, actor: str, data: Mapping[str, Any]) -> dict[str, Any]:
            return self.event(
                kind=kind, action=action, caseref=ref, key=key, at=at, actor=actor, data=data, grid=grid
            )

        def opened(actor: str, report: dict[str, Any], units: list[str] | None) -> list[dict[str, Any]]:
            report.setdefault("location", base.location(r))
            out = [ev(A.REPORTED, actor, report), ev(A.REGISTERED, actor, {})]
            if units:
                out.append(ev(A.DISPATCHED, actor, {"departments": units}))
            return out

        def finished(unit: str, actor: str, text: str) -> list[dict[str, Any]]:
            return self.closing(kind=kind, caseref=ref, key=key, at=at, actor=actor, unit=unit, note=text)

        data: dict[str, Any]
        if rtype == "public_health":
            if stage == "reported":
                code = _category(r, "disease_code", kind)
                count = r.get("case_count")
                if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    raise RecordError("case_count", "expected an integer ≥ 1")
                inst = base.text(r, "institution")
                title = f"{base.code_table('health_categories.csv')[code]} {count}例"
                pri = "urgent" if code.startswith("PH-A") or count >= 10 else "high"
                data = {
                    "category": code,
                    "title": title,
                    "description": note,
                    "priority": pri,
                    "channel": "cdc_report",
                }
                return opened(f"institution:{inst}", data, None)
            if stage == "investigating":
                return [
                    ev(A.DISPATCHED, "center:cdc", {"departments": ["cdc"]}),
                    ev(A.ACCEPTED, "center:cdc", {"department": "cdc", "note": "流行病学调查"}),
                ]
            return finished("cdc", "center:cdc", note or "处置完毕")
        if rtype == "emergency_120":
            if stage == "call":
                code = _category(r, "complaint_code", kind)
                level = base.text(r, "level", required=False) or "2"
                if level not in base.PRIORITY_BY_LEVEL:
                    raise RecordError("level", f"分级 must be 1–4, got {level!r}")
                data = {
                    "category": code,
                    "title": f"120：{base.code_table('health_categories.csv')[code]}",
                    "description": note,
                    "priority": base.PRIORITY_BY_LEVEL[level],
                    "channel": "emergency_120",
                    "reporter": base.person(r.get("caller"), "caller"),
                }
                return opened("dispatcher:120", data, None)
            if stage == "dispatch":
                vehicle = base.text(r, "vehicle")
                return [
                    ev(A.DISPATCHED, "dispatcher:120", {"departments": ["emergency_120"], "note": vehicle})
                ]
            if stage == "arrive":
                return [ev(A.ACCEPTED, "ambulance", {"department": "emergency_120", "note": "到达现场"})]
            hospital = base.text(r, "hospital")
            return finished("emergency_120", "ambulance", f"送达{hospital}")
        if rtype == "psych_crisis":
            if stage == "reported":
                code = _category(r, "risk_code", kind)
                channel = base.choice(r, "channel", ("hotline", "grid"))
                who = base.person(r.get("subject_person"), "subject_person")
                if who is None:
                    raise RecordError("subject_person", "field required")
                data = {
                    "category": code,
                    "title": f"心理危机：{base.code_table('health_categories.csv')[code]}",
                    "description": note,
                    "priority": "urgent" if code in ("PC-01", "PC-04") else "high",
                    "channel": "hotline_12356" if channel == "hotline" else "grid_worker",
                    "reporter": who,
                }
                return opened(f"channel:{channel}", data, ["comprehensive", "mental_health"])
            if stage == "intervened":
                dept = base.choice(r, "department", ("comprehensive", "mental_health"))
                return [
                    ev(A.ACCEPTED, f"department:{dept}", {"department": dept}),
                    ev(A.HANDLED, f"department:{dept}", {"department": dept, "note": note or "已干预"}),
                ]
            return [
                ev(A.VERIFIED, "center:health", {"passed": True, "note": note}),
                ev(A.CLOSED, "center:health", {"note": note or "危机解除"}),
            ]
        inspector = base.text(r, "inspector", required=False) or "market"
        if stage == "failed":
            code = _category(r, "item_code", kind)
            item = base.code_table("health_categories.csv")[code]
            market, stall, sample = base.text(r, "market"), base.text(r, "stall"), base.text(r, "sample")
            data = {
                "category": code,
                "title": f"快检不合格：{market}{stall} {sample}（{item}）",
                "description": note,
                "priority": "high",
                "channel": "rapid_test",
            }
            return opened(f"inspector:{inspector}", data, ["market_supervision"])
        actor = f"inspector:{inspector}"
        return [
            ev(A.ACCEPTED, actor, {"department": "market_supervision"}),
            *finished("market_supervision", actor, note or "下架销毁"),
        ]
