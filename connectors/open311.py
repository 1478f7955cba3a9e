"""Citizens connector (市民诉求): Open311 GeoReport v2 service requests and citizen evaluations.

Citizen apps (随手拍, 12345 app, WeChat mini-programs) speak Open311 GeoReport v2: a request is the
spec's ``POST /requests`` body, here as a JSON object. The hub's Open311 API fills
``service_request_id`` and ``requested_datetime`` before mapping; batch pushes and file imports
must carry them (they are the stable identity of the request). A later record with ``evaluation``
is the citizen's satisfaction score (满意度评价) for a closed request.

Native record (service request):

===================== ============ ============== ==============================================
field                 中文          required       notes
===================== ============ ============== ==============================================
service_request_id    诉求编号      yes            caseref
service_code          服务类型      yes            from data/open311_services.csv
requested_datetime    提交时间      yes            ISO 8601
lat, long             纬度, 经度    one of         WGS-84 (GeoReport names)
address_string        地址          location
address_id            地址编号      fields
description           诉求内容      yes            up to 4000 characters
media_url             图片          no             http(s) URL
first_name, last_name 姓名          no             personal data (masked on screens)
phone, email          联系方式      no
device_id, account_id 设备/账号     no             kept in the description footer only if given
attribute             附加属性      no             {code: value} per the service definition
===================== ============ ============== ==============================================

Native record (evaluation): ``service_request_id``, ``evaluation`` (1–5), ``requested_datetime``
(the time of the evaluation), optional ``comment``. Through the Open311 API an evaluation is taken
only for a request the hub knows (else 404) and has closed (else 409); its ``service_request_id`` is
the request's own (docs/security.md).

Mapping: a request → 上报 (department ``citizens``, kind ``request``, channel ``open311``); the
command centre registers and dispatches it. An evaluation → 评价 by the citizen.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from connectors import base
from connectors.base import RecordError
from hub import messages as m

A = m.Action
SOURCE = "open311"


@cache
def services() -> tuple[dict[str, Any], ...]:
    """The GeoReport service list (``GET /services``) with each service's hub category."""
    with (base.DATA_DIR / "open311_services.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with (base.DATA_DIR / "open311_attributes.toml").open("rb") as fh:
        attributes: dict[str, list[dict[str, Any]]] = tomllib.load(fh)
    return tuple(
        {
            "service_code": r["service_code"],
            "service_name": r["service_name"],
            "description": r["description"],
            "metadata": r["service_code"] in attributes,
            "type": r["type"] or "realtime",
            "keywords": ",".join(k for k in r["keywords"].split(";") if k),
            "group": r["group"],
            "category": r["category"],
            "attributes": attributes.get(r["service_code"], []),
        }
        for r in rows
    )


def service(code: str) -> dict[str, Any] | None:
    return next((s for s in services() if s["service_code"] == code), None)


@dataclass
class Open311Connector(base.Connector):
    name: str = "open311"
    department: str = "citizens"
    source: str = SOURCE
    kinds: tuple[str, ...] = ("request",)

    def map(self, r: Mapping[str, Any]) -> list[dict[str, Any]]:
        ref = base.text(r, "service_request_id", max_len=200)
        at = base.time_field(r, "requested_datetime")
        if "evaluation" in r:
            score = r.get("evaluation")
            if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
                raise RecordError("evaluation", "expected an integer score 1–5")
            data = {"score": score, "by": "citizen", "note": base.text(r, "comment", required=False)}
            return [
                self.event(
                    kind="request",
                    action=A.EVALUATED,
                    caseref=ref,
                    key="evaluation",
                    at=at,
                    actor="citizen",
                    data=data,
                )
            ]
        code = base.text(r, "service_code")
        svc = service(code)
        if svc is None:
            raise RecordError("service_code", f"unknown service_code {code!r} (see GET /services)")
        description = base.text(r, "description", max_len=4000)
        loc = base.location(r, lon="long", lat="lat", address="address_string")
        if loc is None and not (r.get("address_string") or r.get("address_id")):
            raise RecordError("lat", "a location is required: lat & long, address_string or address_id")
        attributes = r.get("attribute") or {}
        if not isinstance(attributes, Mapping):
            raise RecordError("attribute", "expected an object {code: value}")
        for code, value in attributes.items():
            values = value if isinstance(value, list) else [value]
            if not all(
                v is None or (isinstance(v, str | int | float) and not isinstance(v, bool)) for v in values
            ):
                raise RecordError(f"attribute[{code}]", "expected text, a number or a list of them")
        for spec in svc["attributes"]:
            if spec.get("required") and attributes.get(spec["code"]) in (None, "", []):
                raise RecordError(f"attribute[{spec['code']}]", "required by the service definition")
            allowed = {v["key"] for v in spec.get("values", [])}
            value = attributes.get(spec["code"])
            given = value if isinstance(value, list) else [value]
            wrong = [v for v in given if v not in (None, "") and v not in allowed]
            if allowed and wrong:
                raise RecordError(
                    f"attribute[{spec['code']}]", f"{wrong[0]!r} is not one of {sorted(allowed)}"
                )
        extra = "".join(f"\n{k}: {v}" for k, v in attributes.items())
        name = " ".join(base.text(r, k, required=False) for k in ("first_name", "last_name")).strip()
        phone = base.text(r, "phone", required=False) or base.text(r, "email", required=False)
        reporter = {k: v for k, v in (("name", name), ("phone", phone)) if v} or None
        address = base.text(r, "address_string", required=False) or base.text(r, "address_id", required=False)
        if loc is None and address:
            description += f"\n地址: {address}"
        data = {
            "category": svc["category"],
            "title": svc["service_name"],  # public (the screen shows it): never from the free text
            "description": description + extra,
            "channel": "open311",
            "location": loc,
            "reporter": reporter,
            "attachments": base.url_list(r, "media_url"),
        }
        return [
            self.event(
                kind="request",
                action=A.REPORTED,
                caseref=ref,
                key="request",
                at=at,
                actor="citizen",
                data=data,
            )
        ]
