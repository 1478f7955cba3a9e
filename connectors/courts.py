"""Courts and justice connector (法院/司法): 诉前调解 pre-litigation mediation and 劳动仲裁.

The court's mediation platform (人民法院调解平台) and the labour-arbitration commission's system
push one record per step; each mediation and each arbitration is one hub case. Dispute codes are
in data/courts_categories.csv (``MD-…`` mediation, ``AR-…`` arbitration). Times without an offset
are Beijing time (UTC+8).

Native record:

============== ============== ========================== ===========================================
field          中文            when                       notes
============== ============== ========================== ===========================================
case_type      类型            always                     mediation 诉前调解 · arbitration 劳动仲裁
case_no        案号            always                     caseref, e.g. (2026)粤0605诉前调123号
stage          环节            always                     mediation: filed 收案 · mediator_assigned 指派调解员
                                                          · succeeded 调解成功 · failed 调解失败 ·
                                                          transferred 转立案诉讼;
                                                          arbitration: filed 申请 · accepted 受理 ·
                                                          not_accepted 不予受理 · hearing 开庭 ·
                                                          award 裁决 · settled 调解结案 · withdrawn 撤回
time           时间            always                     ISO 8601
dispute_code   纠纷类型        filed                      ``MD-…`` / ``AR-…``
summary        案情摘要        filed                      description only (sealed); title = 纠纷类型：案号
applicant      申请人          filed                      {name, phone, id_number}
respondent     被申请人        filed, optional            {name, phone}
referred_from  来源案件        filed, optional            {source, caseref}: 警调/诉调对接; the referring
                                                          department's 关联 opened this case, so the
                                                          filing is its 立案 (category = dispute_code)
mediator       调解员/仲裁员   mediator_assigned, hearing actor
reason         原因            not_accepted, failed
note           说明            optional
============== ============== ========================== ===========================================

Mapping: filed → 上报 (+ 立案 for mediation, which the court files at once; arbitration is 立案
on 受理 and 不予立案 on 不予受理); a referred filing → 立案 only (the case exists already);
mediator_assigned /
hearing → 派遣 + 签收 (courts, arbitration); every outcome → 处置反馈 + 核查 + 结案 with the
outcome as the note (调解失败 and 转立案诉讼 also close the pre-litigation case).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors import base
from connectors.base import RecordError
from hub import messages as m

A = m.Action
STAGES = {
    "mediation": ("filed", "mediator_assigned", "succeeded", "failed", "transferred"),
    "arbitration": ("filed", "accepted", "not_accepted", "hearing", "award", "settled", "withdrawn"),
}
OUTCOMES = {
    "succeeded": "调解成功",
    "failed": "调解失败",
    "transferred": "转立案诉讼",
    "award": "仲裁裁决",
    "settled": "仲裁调解结案",
    "withdrawn": "申请人撤回",
}


@dataclass
class CourtsConnector(base.Connector):
    name: str = "courts"
    department: str = "courts"
    source: str = "courts-platform"
    kinds: tuple[str, ...] = ("mediation", "arbitration")

    def map(self, r: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = base.choice(r, "case_type", STAGES)
        ref = base.text(r, "case_no", max_len=200)
        stage = base.choice(r, "stage", STAGES[kind])
        at = base.time_field(r, "time")
        note = base.text(r, "note", required=False)
        unit = "courts" if kind == "mediation" else "labour_arbitration"

        def ev(action: m.Action, actor: str, data: Mapping[str, Any]) -> dict[str, Any]:
            return self.event(kind=kind, action=action, caseref=ref, key=stage, at=at, actor=actor, data=data)

        if stage == "filed":
            code = base.code(r, "dispute_code", base.code_table("courts_categories.csv"), "纠纷类型")
            if base.code_table("courts_categories.csv", label="kind")[code] != kind:
                raise RecordError("dispute_code", f"code {code!r} is not a {kind} code")
            summary = base.text(r, "summary")
            applicant = base.person(r.get("applicant"), "applicant")
            if applicant is None:
                raise RecordError("applicant", "field required")
            base.person(r.get("respondent"), "respondent")
            data = {
                "category": code,
                # public (the screen shows it): never from the summary, which names the parties
                "title": f"{base.code_table('courts_categories.csv')[code]}：{ref}",
                "description": summary,
                "channel": "court_platform" if kind == "mediation" else "arbitration_commission",
                "reporter": applicant,
            }
            src = r.get("referred_from")
            if src is not None:
                # 警调/诉调对接: the referring department's 关联 opened this case already (the hub
                # opens a link's missing target); the court's filing registers it.
                if not isinstance(src, Mapping):
                    raise RecordError("referred_from", "expected {source, caseref}")
                origin = f"{base.text(src, 'source')}/{base.text(src, 'caseref')}"
                note = f"诉前调解收案（{origin} 移交）：{summary}"
                return [ev(A.REGISTERED, f"clerk:{unit}", {"category": code, "note": note})]
            out = [ev(A.REPORTED, f"clerk:{unit}", data)]
            if kind == "mediation":
                out.append(ev(A.REGISTERED, f"clerk:{unit}", {"note": "诉前调解收案"}))
            return out
        if stage == "accepted":
            return [ev(A.REGISTERED, f"clerk:{unit}", {"note": "仲裁受理"})]
        if stage == "not_accepted":
            return [ev(A.REJECTED, f"clerk:{unit}", {"reason": base.text(r, "reason")})]
        if stage in ("mediator_assigned", "hearing"):
            who = f"mediator:{base.text(r, 'mediator')}"
            return [
                ev(A.DISPATCHED, f"clerk:{unit}", {"departments": [unit], "note": who}),
                ev(A.ACCEPTED, who, {"department": unit}),
            ]
        text = (
            OUTCOMES[stage]
            + (f"：{base.text(r, 'reason')}" if stage == "failed" else "")
            + (f"；{note}" if note else "")
        )
        return self.closing(
            kind=kind, caseref=ref, key=stage, at=at, actor=f"clerk:{unit}", unit=unit, note=text
        )
