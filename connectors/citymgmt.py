"""City-management connector (城管 / 数字城管): 案卷 from grid supervisors and the hotline.

A 数字城管 system keeps one 案卷 per problem, found by a 监督员 (grid supervisor) on patrol or
reported on the 12319 hotline, classified with the national 管理部件/管理事项 codes
(GB/T 47678.5, 5-digit, data/citymgmt_codes.csv), and pushes one record per workflow step as the
case moves between the 监督中心, the 指挥中心 and the 专业部门 (water, gardens, …).

Native record:

============ ================= ===================================== ===================================
field        中文               when                                  notes
============ ================= ===================================== ===================================
case_no      案卷号             always                                caseref
stage        环节               always                                report 上报 · register 立案 · reject
                                                                      不予立案 · dispatch 派遣 · accept 签收
                                                                      · return 退回 · handle 处置反馈 · verify
                                                                      核查 · close 结案 · escalate 督办 ·
                                                                      extend 延期
time         时间               always                                ISO 8601 (no offset = UTC+8)
channel      来源               report                                supervisor 监督员 / hotline / public
matter_code  部件事件小类代码   report; register (optional correction) national 5-digit code
description  问题描述           report
address      地址               report, optional
lon, lat     经纬度             report, optional                      WGS-84
grid         单元网格           optional                              the hub resolves it otherwise
photos       照片               report, handle, optional              list of http(s) URLs
supervisor   监督员编号         report, verify, optional              actor
reporter     举报人             report, optional (hotline)            {name, phone}
urgent       紧急               report, optional                      true → priority urgent
department   专业部门           dispatch (one or a list), accept,
                                return, handle
operator     操作员             optional                              actor of centre steps
passed       核查结果           verify                                true 通过 / false 不通过 (返工)
reason       原因               reject, return, escalate, extend
until        延期至             extend                                ISO 8601
note         说明               optional
============ ================= ===================================== ===================================

Each step maps to one closed-loop action of the same name. Steps that may repeat (派遣, 签收,
退回, 处置, 核查, 督办, 延期 — rework and re-dispatch happen) carry the step time in their event id.
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
    "report": A.REPORTED,
    "register": A.REGISTERED,
    "reject": A.REJECTED,
    "dispatch": A.DISPATCHED,
    "accept": A.ACCEPTED,
    "return": A.RETURNED,
    "handle": A.HANDLED,
    "verify": A.VERIFIED,
    "close": A.CLOSED,
    "escalate": A.ESCALATED,
    "extend": A.EXTENDED,
}
ONCE = {"report", "register", "reject", "close"}


def codes() -> dict[str, str]:
    return base.code_table("citymgmt_codes.csv")


@dataclass
class CityMgmtConnector(base.Connector):
    name: str = "citymgmt"
    department: str = "citymgmt"
    source: str = "citymgmt-dcm"
    kinds: tuple[str, ...] = ("case",)

    def map(self, r: Mapping[str, Any]) -> list[dict[str, Any]]:
        ref = base.text(r, "case_no", max_len=200)
        stage = base.choice(r, "stage", STAGES)
        at = base.time_field(r, "time")
        note = base.text(r, "note", required=False)
        operator = base.text(r, "operator", required=False)
        supervisor = base.text(r, "supervisor", required=False)
        actor = f"clerk:{operator}" if operator else "center:dcm"  # 操作员 (operator:… is the hub's)
        key = stage if stage in ONCE else f"{stage}@{at.isoformat()}"
        data: dict[str, Any]
        if stage == "report":
            matter = base.code(r, "matter_code", codes(), "部件/事件")
            channel = base.choice(r, "channel", ("supervisor", "hotline", "public"))
            description = base.text(r, "description")
            actor = f"supervisor:{supervisor}" if supervisor else f"channel:{channel}"
            data = {
                "category": matter,
                "title": f"{codes()[matter]}：{ref}",  # public: never from the free text
                "description": description,
                "priority": "urgent" if r.get("urgent") is True else "normal",
                "channel": {"supervisor": "grid_worker", "hotline": "hotline_12319", "public": "public"}[
                    channel
                ],
                "location": base.location(r),
                "reporter": base.person(r.get("reporter"), "reporter"),
                "attachments": base.url_list(r, "photos"),
            }
        elif stage == "register":
            data = {"note": note}
            if r.get("matter_code") not in (None, ""):
                data["category"] = base.code(r, "matter_code", codes(), "部件/事件")
        elif stage in ("reject", "escalate"):
            data = {"reason": base.text(r, "reason")}
        elif stage == "dispatch":
            depts = r.get("department")
            depts = [depts] if isinstance(depts, str) else depts
            if not isinstance(depts, list) or not depts:
                raise RecordError("department", "field required (a department code or a list of them)")
            data = {"departments": [str(d) for d in depts], "note": note}
        elif stage in ("accept", "handle", "return"):
            dept = base.text(r, "department")
            actor = f"department:{dept}"
            data = {"department": dept}
            if stage == "return":
                data["reason"] = base.text(r, "reason")
            else:
                data["note"] = note
            if stage == "handle":
                data["attachments"] = base.url_list(r, "photos")
        elif stage == "verify":
            passed = r.get("passed")
            if not isinstance(passed, bool):
                raise RecordError("passed", "expected true (通过) or false (不通过)")
            actor = f"supervisor:{supervisor}" if supervisor else actor
            data = {"passed": passed, "note": note}
        elif stage == "extend":
            data = {"reason": base.text(r, "reason"), "until": base.time_field(r, "until").isoformat()}
        else:  # close
            data = {"note": note}
        grid = base.text(r, "grid", required=False) or None
        return [
            self.event(
                kind="case",
                action=STAGES[stage],
                caseref=ref,
                key=key,
                at=at,
                actor=actor,
                data=data,
                grid=grid,
            )
        ]
