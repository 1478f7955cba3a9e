"""Police connector (公安): 110 接处警 incidents and 反诈预警 anti-fraud early warnings.

The 110 command system pushes one record per step of an incident (接警 received, 派警 dispatched,
到场 arrived, 处警结果 result); the anti-fraud centre (反诈中心) pushes one record per step of a
warning (预警 issued → 劝阻 dissuaded, or 无法联系 unreachable). Each incident and each warning is
one hub case. Times without an offset are Beijing time (UTC+8).

Native record, ``record_type = "incident"`` (110 警情):

=========== ================ ========================================= ================================
field       中文              when                                      notes
=========== ================ ========================================= ================================
record_type 记录类型          always                                    ``incident``
jjdbh       接警单编号        always                                    the incident number (caseref)
stage       环节              always                                    received/dispatched/arrived/result
time        时间              always                                    ISO 8601 of the step
category    警情类别          received                                  code from data/police_categories.csv
summary     报警内容          received                                  sealed free text; title = 类别：单号
level       警情级别          received, optional (3)                    1 一级 urgent … 4 low
caller      报警人            received, optional                        {name, phone}
address     发生地址          received, optional
lon, lat    经纬度            received, optional                        WGS-84
grid        网格编码          any, optional                             the hub resolves it otherwise
operator    接警员            received, optional                        actor of the report
unit        处警单位          dispatched                                e.g. 派出所 code ``PS-0301``
officer     处警民警警号      arrived, result, optional                 actor of those steps
result      处警结果          result                                    free text
refer_to    移交              result, optional                          {department, source, caseref, kind}:
                                                                            警调对接; the hub opens that case
=========== ================ ========================================= ================================

Native record, ``record_type = "fraud_warning"`` (反诈预警):

=========== ================ ========================================= ================================
field       中文              when                                      notes
=========== ================ ========================================= ================================
record_type 记录类型          always                                    ``fraud_warning``
warning_no  预警编号          always                                    caseref
stage       环节              always                                    issued / dissuaded / unreachable
time        时间              always
fraud_type  诈骗类型          issued                                    code from data/fraud_types.csv
risk_level  风险等级          issued, optional (2)                      1 urgent … 4 low
target      预警对象          issued                                    {name, phone, id_number}
station     责任派出所        issued                                    who must call or visit
officer     民警警号          dissuaded / unreachable, optional
note        说明              optional
=========== ================ ========================================= ================================

Mapping onto the closed loop: received → 上报 + 立案; dispatched → 派遣 (police); arrived → 签收;
result → 处置反馈 + 核查 + 结案 (the police close their own incidents), plus 关联 when referred.
issued → 上报 + 立案 + 派遣; dissuaded → 签收 + 处置反馈 + 核查 + 结案; unreachable → 督办 (the
station must try again, escalated level 1; repeatable, so its id carries the time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors import base
from connectors.base import RecordError
from hub import messages as m

A = m.Action


@dataclass
class PoliceConnector(base.Connector):
    name: str = "police"
    department: str = "police"
    source: str = "police-110"
    kinds: tuple[str, ...] = ("incident", "fraud_warning")

    def map(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = base.choice(record, "record_type", ("incident", "fraud_warning"))
        return self._incident(record) if kind == "incident" else self._warning(record)

    def _incident(self, r: Mapping[str, Any]) -> list[dict[str, Any]]:
        ref = base.text(r, "jjdbh", max_len=200)
        stage = base.choice(r, "stage", ("received", "dispatched", "arrived", "result"))
        at = base.time_field(r, "time")
        grid = base.text(r, "grid", required=False) or None
        officer = base.text(r, "officer", required=False)
        ev: dict[str, Any] = {"kind": "incident", "caseref": ref, "key": stage, "at": at, "grid": grid}
        if stage == "received":
            category = base.code(r, "category", base.code_table("police_categories.csv"), "110 警情类别")
            summary = base.text(r, "summary")
            level = base.text(r, "level", required=False) or "3"
            if level not in base.PRIORITY_BY_LEVEL:
                raise RecordError("level", f"警情级别 must be 1–4, got {level!r}")
            actor = f"calltaker:{base.text(r, 'operator', required=False) or '110'}"  # 接警员
            data = {
                "category": category,
                # public (the screen shows it): from the category and 接警单号, never the summary
                "title": f"{base.code_table('police_categories.csv')[category]}：{ref}",
                "description": summary,
                "priority": base.PRIORITY_BY_LEVEL[level],
                "channel": "police_110",
                "location": base.location(r),
                "reporter": base.person(r.get("caller"), "caller"),
            }
            return [
                self.event(action=A.REPORTED, actor=actor, data=data, **ev),
                self.event(action=A.REGISTERED, actor=actor, data={"note": "接警立案"}, **ev),
            ]
        if stage == "dispatched":
            unit = base.text(r, "unit")
            return [
                self.event(
                    action=A.DISPATCHED,
                    actor="command:110",
                    data={"departments": ["police"], "note": unit},
                    **ev,
                )
            ]
        actor = f"officer:{officer or 'unknown'}"
        if stage == "arrived":
            return [
                self.event(
                    action=A.ACCEPTED, actor=actor, data={"department": "police", "note": "到场"}, **ev
                )
            ]
        result = base.text(r, "result")
        out = self.closing(
            kind="incident", caseref=ref, key=stage, at=at, actor=actor, unit="police", note=result
        )
        refer = r.get("refer_to")
        if refer is not None:
            if not isinstance(refer, Mapping):
                raise RecordError("refer_to", "expected {department, source, caseref}")
            target = {"source": base.text(refer, "source"), "caseref": base.text(refer, "caseref")}
            dept = base.text(refer, "department")
            out.append(
                self.event(
                    action=A.LINKED,
                    actor=actor,
                    data={
                        "relation": "referred_to",
                        "target": target,
                        "target_department": dept,
                        "note": "警调对接",
                    },
                    **ev,
                )
            )
        return out

    def _warning(self, r: Mapping[str, Any]) -> list[dict[str, Any]]:
        ref = base.text(r, "warning_no", max_len=200)
        stage = base.choice(r, "stage", ("issued", "dissuaded", "unreachable"))
        at = base.time_field(r, "time")
        note = base.text(r, "note", required=False)
        officer = base.text(r, "officer", required=False)
        actor = f"officer:{officer}" if officer else "center:anti_fraud"
        ev: dict[str, Any] = {"kind": "fraud_warning", "caseref": ref, "at": at}
        if stage == "issued":
            fraud = base.code(r, "fraud_type", base.code_table("fraud_types.csv"), "诈骗类型")
            level = base.text(r, "risk_level", required=False) or "2"
            if level not in base.PRIORITY_BY_LEVEL:
                raise RecordError("risk_level", f"风险等级 must be 1–4, got {level!r}")
            target = base.person(r.get("target"), "target")
            if target is None:
                raise RecordError("target", "field required")
            station = base.text(r, "station")
            title = f"反诈预警：{base.code_table('fraud_types.csv')[fraud]}"
            data = {
                "category": fraud,
                "title": title,
                "description": note,
                "priority": base.PRIORITY_BY_LEVEL[level],
                "channel": "anti_fraud_center",
                "reporter": target,
            }
            return [
                self.event(action=A.REPORTED, key=stage, actor="center:anti_fraud", data=data, **ev),
                self.event(action=A.REGISTERED, key=stage, actor="center:anti_fraud", data={}, **ev),
                self.event(
                    action=A.DISPATCHED,
                    key=stage,
                    actor="center:anti_fraud",
                    data={"departments": ["police"], "note": station},
                    **ev,
                ),
            ]
        if stage == "unreachable":
            reason = note or "预警对象无法联系"
            key = f"unreachable@{at.isoformat()}"
            return [self.event(action=A.ESCALATED, key=key, actor=actor, data={"reason": reason}, **ev)]
        accept = self.event(action=A.ACCEPTED, key=stage, actor=actor, data={"department": "police"}, **ev)
        closing = self.closing(
            kind="fraud_warning",
            caseref=ref,
            key=stage,
            at=at,
            actor=actor,
            unit="police",
            note=note or "劝阻成功",
        )
        return [accept, *closing]
