"""The demo city simulator (模拟城区): a synthetic day of every department, through the real connectors.

Why through the connectors: the demo must exercise exactly what department systems do — native
records, mapped by the same anti-corruption layers, published with the same dedup ids — so what
the screen shows in the demo is what production would show.

What a day looks like (all reproducible from ``seed`` and ``start``):

- **Arrivals**: a non-homogeneous Poisson process (thinning) on a diurnal curve (quiet at 04:00,
  peaks mid-morning and mid-afternoon, a 110 evening bump); ``rate`` is the mean number of new
  cases per simulated hour over the day.
- **Mix**: 数字城管 35 %, 110/反诈 28 %, citizens (Open311/12345) 15 %, health 14 %, courts 8 %, each
  with its own category mix (data files of the connectors).
- **Handling times**: log-normal (long-tailed) per department and stage, so some cases breach
  their SLA and are escalated (督办), some get extensions (延期).
- **Loops**: 退回 returns and re-dispatch, 核查不通过 rework, fraud warnings unreachable first,
  police disputes referred to court mediation (警调对接, a linked case the court then works), citizen
  evaluations (满意度评价) after closing, rejections (不予立案).
- **Time**: records carry simulated times; ``speed`` (simulated seconds per wall second) lets a day
  pass in under a minute (``speed=1800`` → 48 s).

The command centre's own steps for citizen requests (立案, 派遣 …) are operator actions
(``city.command.request.*`` with the hub case id), as the real centre's would be.

Locations: the seam is ``locate(rng) → (lon, lat)``; the default draws points inside the demo
district's bounding box and leaves grid resolution to the hub (point-in-polygon). ops may pass a
locator that samples real grid polygons.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors import base
from connectors.base import CHINA_TZ
from hub import messages as m

BBOX = (118.660, 31.960, 118.780, 32.060)
"""Default district extent (lon/lat): the demo city's (ops/demo_city.py BOUNDS)."""

DIURNAL = (
    0.25,
    0.18,
    0.12,
    0.10,
    0.10,
    0.18,
    0.40,
    0.80,
    1.40,
    1.80,
    1.90,
    1.70,
    1.30,
    1.30,
    1.60,
    1.75,
    1.60,
    1.40,
    1.20,
    1.10,
    1.00,
    0.85,
    0.60,
    0.40,
)
"""Relative arrival intensity by hour of day (mean 1.0)."""
_MEAN = sum(DIURNAL) / 24

MIX = (("citymgmt", 0.35), ("police", 0.28), ("open311", 0.15), ("health", 0.14), ("courts", 0.08))

Item = tuple[datetime, int, str, Any]
"""(simulated time, sequence, connector name or "command", native record or canonical event)."""


@dataclass(frozen=True, slots=True)
class Position:
    """How far a simulated day has been published: its last item's simulated time and sequence.

    Why both: several records share a second; the sequence orders them as :meth:`Simulator.items`
    does, so a resumed day continues exactly after the last record published, no earlier, no later.
    """

    at: datetime
    seq: int


def _lognormal(rng: random.Random, median_minutes: float, sigma: float) -> timedelta:
    return timedelta(minutes=rng.lognormvariate(math.log(median_minutes), sigma))


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    return rng.choices([k for k, _ in weighted], [w for _, w in weighted])[0]


def _bbox_locate(rng: random.Random) -> tuple[float, float]:
    x0, y0, x1, y1 = BBOX
    return round(rng.uniform(x0, x1), 6), round(rng.uniform(y0, y1), 6)


@dataclass
class Simulator:
    """Generates the day's records in time order; :meth:`run` replays them at ``speed``."""

    seed: int = 1
    rate: float = 120.0
    duration: timedelta = timedelta(days=1)
    start: datetime = field(
        default_factory=lambda: datetime.now(CHINA_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    )
    locate: Callable[[random.Random], tuple[float, float]] = _bbox_locate
    _seq: int = 0

    def items(self) -> list[Item]:
        """Every record of the simulated period, sorted by simulated time (deterministic)."""
        rng = random.Random(self.seed)
        self._seq = 0
        out: list[Item] = []
        peak = self.rate * max(DIURNAL) / _MEAN
        t = self.start
        end = self.start + self.duration
        n = 0
        while True:
            t += timedelta(hours=rng.expovariate(peak))
            if t >= end:
                break
            if rng.random() > DIURNAL[t.hour] / max(DIURNAL):
                continue
            n += 1
            dept = _pick(rng, MIX)
            getattr(self, f"_{dept}")(rng, t, f"S{self.seed}-{n:06d}", out)
        out.sort(key=lambda i: (i[0], i[1]))
        return out

    def _add(self, out: list[Item], at: datetime, connector: str, record: Any) -> None:
        self._seq += 1
        out.append((at, self._seq, connector, record))

    @staticmethod
    def _iso(at: datetime) -> str:
        return at.isoformat(timespec="seconds")

    # ------------------------------------------------------------------ departments
    def _citymgmt(self, rng: random.Random, t: datetime, ref: str, out: list[Item]) -> None:
        codes = list(base.code_table("citymgmt_codes.csv"))
        lon, lat = self.locate(rng)
        c = {"case_no": f"CM-{ref}"}
        channel = "supervisor" if rng.random() < 0.75 else "hotline"
        self._add(
            out,
            t,
            "citymgmt",
            {
                **c,
                "stage": "report",
                "time": self._iso(t),
                "channel": channel,
                "matter_code": rng.choice(codes),
                "description": "网格巡查发现问题",
                "lon": lon,
                "lat": lat,
                "supervisor": f"GW-{rng.randint(1, 800):04d}",
                "urgent": rng.random() < 0.05,
                "photos": [f"https://img.example/{ref}.jpg"],
            },
        )
        t += _lognormal(rng, 15, 0.6)
        if rng.random() < 0.05:
            self._add(
                out,
                t,
                "citymgmt",
                {**c, "stage": "reject", "time": self._iso(t), "reason": "不属于城管受理范围"},
            )
            return
        self._add(out, t, "citymgmt", {**c, "stage": "register", "time": self._iso(t)})
        units = ["municipal", "sanitation", "water", "gardens", "street_office"]
        unit = rng.choice(units)
        t += _lognormal(rng, 20, 0.7)
        self._add(out, t, "citymgmt", {**c, "stage": "dispatch", "time": self._iso(t), "department": unit})
        if rng.random() < 0.08:  # 退回: wrong unit, re-dispatched
            t += _lognormal(rng, 60, 0.8)
            self._add(
                out,
                t,
                "citymgmt",
                {**c, "stage": "return", "time": self._iso(t), "department": unit, "reason": "非本单位职责"},
            )
            unit = rng.choice([u for u in units if u != unit])
            t += _lognormal(rng, 20, 0.5)
            self._add(
                out, t, "citymgmt", {**c, "stage": "dispatch", "time": self._iso(t), "department": unit}
            )
        t += _lognormal(rng, 30, 0.8)
        self._add(out, t, "citymgmt", {**c, "stage": "accept", "time": self._iso(t), "department": unit})
        handling = _lognormal(rng, 240, 1.1)  # long tail: a few take days
        if handling > timedelta(hours=24):
            self._add(
                out,
                t + timedelta(hours=24),
                "citymgmt",
                {
                    **c,
                    "stage": "escalate",
                    "time": self._iso(t + timedelta(hours=24)),
                    "reason": "处置超时 督办",
                },
            )
        if handling > timedelta(hours=36) and rng.random() < 0.5:
            at = t + timedelta(hours=25)
            self._add(
                out,
                at,
                "citymgmt",
                {
                    **c,
                    "stage": "extend",
                    "time": self._iso(at),
                    "reason": "需协调施工",
                    "until": self._iso(at + timedelta(days=3)),
                },
            )
        t += handling
        for attempt in range(3):
            self._add(out, t, "citymgmt", {**c, "stage": "handle", "time": self._iso(t), "department": unit})
            t += _lognormal(rng, 90, 0.7)
            passed = attempt == 2 or rng.random() > 0.10
            self._add(
                out,
                t,
                "citymgmt",
                {
                    **c,
                    "stage": "verify",
                    "time": self._iso(t),
                    "passed": passed,
                    "supervisor": f"GW-{rng.randint(1, 800):04d}",
                },
            )
            if passed:
                break
            t += _lognormal(rng, 120, 0.8)  # 返工
        t += _lognormal(rng, 20, 0.5)
        self._add(out, t, "citymgmt", {**c, "stage": "close", "time": self._iso(t)})

    def _police(self, rng: random.Random, t: datetime, ref: str, out: list[Item]) -> None:
        if rng.random() < 0.15:
            w = {"record_type": "fraud_warning", "warning_no": f"FW-{ref}"}
            fraud = rng.choice(list(base.code_table("fraud_types.csv")))
            self._add(
                out,
                t,
                "police",
                {
                    **w,
                    "stage": "issued",
                    "time": self._iso(t),
                    "fraud_type": fraud,
                    "risk_level": rng.choice("1223"),
                    "target": {"name": "预警对象", "phone": "13800000000"},
                    "station": f"PS-{rng.randint(1, 12):02d}",
                },
            )
            t += _lognormal(rng, 20, 0.8)
            if rng.random() < 0.25:
                self._add(out, t, "police", {**w, "stage": "unreachable", "time": self._iso(t)})
                t += _lognormal(rng, 120, 0.9)
            self._add(
                out, t, "police", {**w, "stage": "dissuaded", "time": self._iso(t), "officer": "000001"}
            )
            return
        j = {"record_type": "incident", "jjdbh": f"110-{ref}"}
        cats = list(base.code_table("police_categories.csv"))
        category = rng.choice(cats)
        lon, lat = self.locate(rng)
        self._add(
            out,
            t,
            "police",
            {
                **j,
                "stage": "received",
                "time": self._iso(t),
                "category": category,
                "summary": f"{base.code_table('police_categories.csv')[category]}警情",
                "level": rng.choice("12333"),
                "lon": lon,
                "lat": lat,
                "caller": {"phone": "13900000000"},
            },
        )
        t += _lognormal(rng, 2, 0.5)
        self._add(
            out,
            t,
            "police",
            {**j, "stage": "dispatched", "time": self._iso(t), "unit": f"PS-{rng.randint(1, 12):02d}"},
        )
        t += _lognormal(rng, 9, 0.5)
        officer = f"{rng.randint(1, 999999):06d}"
        self._add(out, t, "police", {**j, "stage": "arrived", "time": self._iso(t), "officer": officer})
        t += _lognormal(rng, 40, 0.9)
        result: dict[str, Any] = {
            **j,
            "stage": "result",
            "time": self._iso(t),
            "officer": officer,
            "result": "已处置",
        }
        if category.startswith("06") and rng.random() < 0.4:  # 警调对接 → court mediation
            mref = f"MD-{ref}"
            result["refer_to"] = {
                "department": "courts",
                "source": "courts-platform",
                "caseref": mref,
                "kind": "mediation",
            }
            result["result"] = "移交诉前调解"
            self._add(out, t, "police", result)
            self._mediation(rng, t + _lognormal(rng, 180, 0.7), mref, out, referred_from=j["jjdbh"])
            return
        self._add(out, t, "police", result)

    def _mediation(
        self, rng: random.Random, t: datetime, ref: str, out: list[Item], referred_from: str | None
    ) -> None:
        c = {"case_type": "mediation", "case_no": ref}
        codes = [
            k for k, v in base.code_table("courts_categories.csv", label="kind").items() if v == "mediation"
        ]
        filed: dict[str, Any] = {
            **c,
            "stage": "filed",
            "time": self._iso(t),
            "dispute_code": rng.choice(codes),
            "summary": "纠纷调解申请",
            "applicant": {"name": "申请人"},
        }
        if referred_from:
            filed["referred_from"] = {"source": "police-110", "caseref": referred_from}
        self._add(out, t, "courts", filed)
        t += _lognormal(rng, 240, 0.6)
        self._add(
            out, t, "courts", {**c, "stage": "mediator_assigned", "time": self._iso(t), "mediator": "调解员"}
        )
        t += _lognormal(rng, 2 * 24 * 60, 0.8)
        outcome = _pick(rng, (("succeeded", 0.65), ("failed", 0.2), ("transferred", 0.15)))
        rec = {**c, "stage": outcome, "time": self._iso(t)}
        if outcome == "failed":
            rec["reason"] = "双方分歧较大"
        self._add(out, t, "courts", rec)

    def _courts(self, rng: random.Random, t: datetime, ref: str, out: list[Item]) -> None:
        if rng.random() < 0.7:
            self._mediation(rng, t, f"MD-{ref}", out, None)
            return
        c = {"case_type": "arbitration", "case_no": f"AR-{ref}"}
        codes = [
            k for k, v in base.code_table("courts_categories.csv", label="kind").items() if v == "arbitration"
        ]
        self._add(
            out,
            t,
            "courts",
            {
                **c,
                "stage": "filed",
                "time": self._iso(t),
                "dispute_code": rng.choice(codes),
                "summary": "劳动争议仲裁申请",
                "applicant": {"name": "劳动者"},
            },
        )
        t += _lognormal(rng, 3 * 24 * 60, 0.5)
        if rng.random() < 0.1:
            self._add(
                out,
                t,
                "courts",
                {**c, "stage": "not_accepted", "time": self._iso(t), "reason": "超过仲裁时效"},
            )
            return
        self._add(out, t, "courts", {**c, "stage": "accepted", "time": self._iso(t)})
        t += _lognormal(rng, 10 * 24 * 60, 0.5)
        self._add(out, t, "courts", {**c, "stage": "hearing", "time": self._iso(t), "mediator": "仲裁员"})
        t += _lognormal(rng, 5 * 24 * 60, 0.6)
        self._add(
            out,
            t,
            "courts",
            {
                **c,
                "stage": _pick(rng, (("award", 0.5), ("settled", 0.4), ("withdrawn", 0.1))),
                "time": self._iso(t),
            },
        )

    def _health(self, rng: random.Random, t: datetime, ref: str, out: list[Item]) -> None:
        table = base.code_table("health_categories.csv", label="kind")
        kind = _pick(
            rng,
            (
                ("emergency_120", 0.5),
                ("food_rapid_test", 0.25),
                ("psych_crisis", 0.15),
                ("public_health", 0.10),
            ),
        )
        r = {"report_type": kind, "report_id": f"H-{ref}"}
        lon, lat = self.locate(rng)

        def add(at: datetime, stage: str, **kw: Any) -> None:
            self._add(out, at, "health", {**r, "stage": stage, "time": self._iso(at), **kw})

        def codes(k: str) -> list[str]:
            return [c for c, v in table.items() if v == k]

        if kind == "emergency_120":
            add(
                t,
                "call",
                complaint_code=rng.choice(codes("emergency")),
                level=rng.choice("1223"),
                lon=lon,
                lat=lat,
            )
            t += _lognormal(rng, 1.5, 0.4)
            add(t, "dispatch", vehicle=f"120-{rng.randint(1, 40):02d}")
            t += _lognormal(rng, 12, 0.4)
            add(t, "arrive")
            add(t + _lognormal(rng, 35, 0.5), "complete", hospital="市第一医院")
        elif kind == "food_rapid_test":
            add(
                t,
                "failed",
                item_code=rng.choice(codes("food_safety")),
                market=f"农贸市场{rng.randint(1, 9)}",
                stall=f"A{rng.randint(1, 60)}",
                sample="蔬菜",
                lon=lon,
                lat=lat,
            )
            add(t + _lognormal(rng, 45, 0.6), "disposed", inspector="QT-1")
        elif kind == "psych_crisis":
            add(
                t,
                "reported",
                risk_code=rng.choice(codes("psych_crisis")),
                channel=rng.choice(["hotline", "grid"]),
                subject_person={"name": "当事人"},
            )
            for dept in ("comprehensive", "mental_health"):
                add(t + _lognormal(rng, 60, 0.7), "intervened", department=dept)
            add(t + timedelta(hours=6) + _lognormal(rng, 600, 0.8), "resolved")
        else:
            add(
                t,
                "reported",
                disease_code=rng.choice(codes("public_health")),
                case_count=rng.randint(1, 15),
                institution="社区卫生服务中心",
                lon=lon,
                lat=lat,
            )
            t += _lognormal(rng, 120, 0.6)
            add(t, "investigating")
            add(t + _lognormal(rng, 3 * 24 * 60, 0.6), "controlled")

    def _open311(self, rng: random.Random, t: datetime, ref: str, out: list[Item]) -> None:
        from connectors.open311 import services

        svc = rng.choice(list(services()))
        sr = f"SR-{ref}"
        lon, lat = self.locate(rng)
        record: dict[str, Any] = {
            "service_request_id": sr,
            "requested_datetime": self._iso(t),
            "service_code": svc["service_code"],
            "lat": lat,
            "long": lon,
            "description": f"市民反映：{svc['service_name']}",
        }
        if svc["service_code"] == "NOISE":
            record["attribute"] = {"period": rng.choice(["day", "night"])}
        self._add(out, t, "open311", record)
        case_id = m.case_id_for("open311", sr)

        def op(at: datetime, action: m.Action, data: Mapping[str, Any]) -> None:
            event = m.make_event(
                id=f"sim-command:{sr}:{action.value}:{at.isoformat()}",
                source="open311",
                department=m.COMMAND_DEPARTMENT,
                kind="request",
                action=action,
                caseref=sr,
                actor="operator:12345",
                time=at,
                data=data,
                caseid=case_id,
            )
            self._add(out, at, "command", event)

        t += _lognormal(rng, 30, 0.6)
        if rng.random() < 0.06:
            op(t, m.Action.REJECTED, {"reason": "重复诉求或非受理范围"})
            return
        op(t, m.Action.REGISTERED, {})
        t += _lognormal(rng, 20, 0.5)
        op(t, m.Action.DISPATCHED, {"departments": ["citymgmt"]})
        t += _lognormal(rng, 40, 0.6)
        op(t, m.Action.ACCEPTED, {"department": "citymgmt"})
        t += _lognormal(rng, 300, 1.0)
        op(t, m.Action.HANDLED, {"department": "citymgmt", "note": "已处理"})
        t += _lognormal(rng, 60, 0.5)
        op(t, m.Action.VERIFIED, {"passed": True})
        op(t + timedelta(minutes=5), m.Action.CLOSED, {})
        if rng.random() < 0.6:  # 满意度评价 (long-tailed: 5 most common)
            score = _pick(rng, (("5", 0.55), ("4", 0.25), ("3", 0.1), ("2", 0.05), ("1", 0.05)))
            at = t + _lognormal(rng, 120, 1.0) + timedelta(minutes=6)
            self._add(
                out,
                at,
                "open311",
                {"service_request_id": sr, "evaluation": int(score), "requested_datetime": self._iso(at)},
            )

    # ------------------------------------------------------------------ running
    async def run(
        self,
        publish: Callable[[Sequence[dict[str, Any]]], Awaitable[Sequence[Any]]],
        *,
        speed: float = 1800.0,
        tick: float = 0.2,
        on_tick: Callable[[datetime, Mapping[str, int]], None] | None = None,
        from_time: datetime | None = None,
        after: Position | None = None,
        on_published: Callable[[Position], None] | None = None,
        chunk: int = 5000,
    ) -> dict[str, int]:
        """Publish the day at ``speed`` (simulated seconds per wall second; ``inf`` = flat out).

        ``from_time`` starts the simulated clock there instead of at ``start``: everything before it
        is published at once (a live demo joins the day at the current time).

        ``after`` resumes a day published up to that :class:`Position` before (a restarted hub):
        the records up to it are not published again, everything after it is, so a case whose
        report went out before the stop still gets its later steps. ``on_published`` receives the
        position after each publish has been acknowledged (the caller persists it to resume from);
        what is due at once (a catch-up) goes out ``chunk`` records at a time, so it is saved as it goes.
        Returns counts of records and events by status. Records are mapped by their connector;
        operator actions are published as they are.
        """
        from connectors.registry import build

        connectors = {name: build(name) for name in ("police", "citymgmt", "health", "courts", "open311")}
        end = self.start + self.duration
        queue = [item for item in self.items() if item[0] < end]  # later steps belong to the next day
        if after is not None:  # the day is deterministic: the same items, in the same order
            queue = [item for item in queue if (item[0], item[1]) > (after.at, after.seq)]
        counts: dict[str, int] = {"records": 0, "events": 0, "accepted": 0, "duplicate": 0, "rejected": 0}
        wall0 = time.monotonic()
        pos = 0
        while pos < len(queue):
            now = (
                (from_time or self.start) + timedelta(seconds=(time.monotonic() - wall0) * speed)
                if math.isfinite(speed)
                else None
            )
            due: list[Item] = []
            more = False  # a catch-up goes out in chunks, so its position is saved as it goes
            while pos < len(queue) and (now is None or queue[pos][0] <= now):
                due.append(queue[pos])
                pos += 1
                if len(due) >= chunk:
                    more = True
                    break
            if due:
                events: list[dict[str, Any]] = []
                for _, _, name, record in due:
                    if name == "command":
                        events.append(record)
                    else:
                        try:
                            events.extend(connectors[name].map_checked(record))
                        except base.RecordError:
                            counts["rejected"] += 1
                counts["records"] += len(due)
                results = await publish(events)
                for result in results:
                    counts[result.status] = counts.get(result.status, 0) + 1
                counts["events"] += len(events)
                unsent = [r for r in results if r.status not in ("accepted", "duplicate")]
                if unsent:
                    # The position must never pass a record that is not in the stream: a resume
                    # would skip it for good (its case's later steps then find no case). Raise, and
                    # the caller resumes from the last saved position (re-sent events are duplicates).
                    raise PublishIncomplete(
                        f"{len(unsent)} of {len(events)} events not published "
                        f"(e.g. {unsent[0].event_id}: {unsent[0].error}); "
                        "resuming from the last saved position"
                    )
                if on_published:
                    on_published(Position(due[-1][0], due[-1][1]))
                if on_tick:
                    on_tick(due[-1][0], counts)
            if now is not None and pos < len(queue) and not more:
                await asyncio.sleep(tick)
        return counts


class PublishIncomplete(RuntimeError):
    """Some events of a chunk were not acknowledged by JetStream (it was restarting, or full)."""


def iter_records(sim: Simulator) -> Iterator[tuple[datetime, str, Any]]:
    """The day's records without publishing (for files: ``hub simulate --out``)."""
    for at, _, name, record in sim.items():
        yield at, name, record
