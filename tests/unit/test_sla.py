"""SLA deadlines in working time (工作时) on the shipped 2026 calendar, with exact expected moments.

Office hours 08:30–12:00 and 13:30–17:30 China Standard Time (7.5 h a day); holidays and 调休
make-up days from hub/defaults/calendar.toml.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.adapters.config.loading import load_calendar, load_sla
from hub.domain import Case, Stage, WorkingCalendar
from hub.domain.calendar import CalendarError

CST = timezone(timedelta(hours=8))
CAL = load_calendar()
SLA = load_sla(calendar=CAL)


def cst(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=CST)


@pytest.mark.parametrize(
    ("start", "hours", "expected", "why"),
    [
        (cst(2026, 3, 2, 9, 0), 2, cst(2026, 3, 2, 11, 0), "within a morning"),
        (cst(2026, 3, 2, 11, 0), 2, cst(2026, 3, 2, 14, 30), "across the lunch break"),
        (cst(2026, 3, 2, 7, 0), 1, cst(2026, 3, 2, 9, 30), "reported before office hours"),
        (cst(2026, 3, 2, 11, 0), 1, cst(2026, 3, 2, 12, 0), "uses up the morning exactly"),
        (cst(2026, 3, 6, 16, 30), 2, cst(2026, 3, 9, 9, 30), "across a weekend"),
        (cst(2026, 3, 7, 10, 0), 1, cst(2026, 3, 9, 9, 30), "reported on a Saturday"),
        (cst(2026, 4, 30, 16, 30), 7.5, cst(2026, 5, 6, 16, 30), "across 劳动节 May 1–5"),
        (cst(2026, 4, 3, 17, 0), 2, cst(2026, 4, 7, 10, 0), "across 清明 Apr 4–6 (Monday off)"),
        (cst(2026, 5, 8, 17, 0), 2, cst(2026, 5, 9, 10, 0), "into the 调休 Saturday May 9"),
        (cst(2026, 2, 13, 17, 0), 8.5, cst(2026, 2, 24, 9, 0), "调休 Sat Feb 14, then 春节 Feb 15–23"),
        (cst(2025, 9, 30, 17, 0), 1, cst(2025, 10, 9, 9, 0), "history import: 国庆 2025 Oct 1–8"),
        (cst(2026, 1, 2, 10, 0), 1, cst(2026, 1, 4, 9, 30), "元旦 holiday, then 调休 Sunday Jan 4"),
    ],
)
def test_working_time_deadlines(start: datetime, hours: float, expected: datetime, why: str) -> None:
    assert CAL.add(start, timedelta(hours=hours)) == expected, why
    assert CAL.between(start, expected) == timedelta(hours=hours), why


def test_fixed_offset_arithmetic_agrees_with_zone_conversion() -> None:
    """A fixed-offset zone finds the local day by integer arithmetic; a named zone converts. Both
    must give the same deadlines and working times (Asia/Shanghai has kept +08:00 since 1991)."""
    import dataclasses
    import random
    from zoneinfo import ZoneInfo

    named = dataclasses.replace(CAL, tz=ZoneInfo("Asia/Shanghai"))
    assert CAL._offset_us is not None and named._offset_us is None
    rng = random.Random(7)
    for _ in range(2000):
        start = cst(2025, 9, 20, 0) + timedelta(minutes=rng.randrange(0, 60 * 24 * 200))
        start = start.astimezone(rng.choice([UTC, CST, timezone(timedelta(hours=-5))]))
        duration = timedelta(minutes=rng.randrange(0, 60 * 40))
        due = CAL.add(start, duration)
        assert due == named.add(start, duration), (start, duration)
        assert CAL.between(start, due) == named.between(start, due) == duration, (start, duration)


def test_calendar_days() -> None:
    assert CAL.is_working_day(cst(2026, 5, 9, 0).date())  # Saturday, 调休
    assert not CAL.is_working_day(cst(2026, 10, 5, 0).date())  # Monday, 国庆
    assert not CAL.is_working_day(cst(2026, 3, 8, 0).date())  # ordinary Sunday
    assert CAL.working_day_hours() == 7.5


def test_calendar_rejects_naive_times_and_bad_periods() -> None:
    with pytest.raises(CalendarError, match="no time zone"):
        CAL.add(datetime(2026, 3, 2, 9), timedelta(hours=1))
    with pytest.raises(CalendarError, match="negative working time -1 day, 23:00:00"):
        CAL.add(cst(2026, 3, 2, 9), timedelta(hours=-1))
    with pytest.raises(CalendarError, match="overlaps"):
        WorkingCalendar(CST, periods=((cst(1, 1, 1, 8).time(), cst(1, 1, 1, 12).time()),) * 2)
    with pytest.raises(CalendarError, match="no working time"):
        WorkingCalendar(CST, weekdays=frozenset()).add(cst(2026, 3, 2, 9), timedelta(hours=1))


# --------------------------------------------------------------------------- the policy on cases
def deadlines(
    category: str = "01001", priority: str = "normal", department: str = "citymgmt", kind: str = "case"
):  # type: ignore[no-untyped-def]
    return SLA.for_case(department=department, kind=kind, category=category, priority=priority)


def test_most_specific_rule_wins() -> None:
    assert deadlines("01001").rules["accepted"].name.startswith("数字城管 井盖等")  # type: ignore[union-attr]
    assert deadlines("04001").rules["accepted"].name.startswith("数字城管 部件")  # type: ignore[union-attr]
    assert deadlines("06001").rules["accepted"].name.startswith("数字城管 事件")  # type: ignore[union-attr]
    assert deadlines("06001").rules["reported"].name == "default"  # type: ignore[union-attr]
    urgent = deadlines("06001", "urgent")
    assert urgent.rules["reported"].clock == "calendar"  # type: ignore[union-attr]
    # 自然时: an urgent report on a Saturday night is due half an hour later, weekend or not.
    assert urgent.due("reported", cst(2026, 3, 7, 22, 0)) == cst(2026, 3, 7, 22, 30)


class Flow:
    """A city-management case driven by commands with the default SLA policy."""

    def __init__(self, category: str = "01001") -> None:
        self.n = 0
        self.sla = deadlines(category)
        self.case = Case.report(
            uuid.uuid4(), **self.kw(cst(2026, 3, 2, 9, 0), "citymgmt"), source="dcm", caseref="C1",
            kind="case", category=category, title="供水井盖破损", sla=self.sla,
        )  # fmt: skip

    def kw(self, at: datetime, department: str = "command") -> dict[str, object]:
        self.n += 1
        return {"event_id": f"e{self.n}", "at": at, "actor": "op", "department": department}

    def to_accepted(self, at: datetime) -> Case:
        c = self.case
        c.register(**self.kw(at), sla=self.sla)  # type: ignore[arg-type]
        c.dispatch(**self.kw(at), departments=["water"], sla=self.sla)  # type: ignore[arg-type]
        c.accept(**self.kw(at, "water"), sla=self.sla)  # type: ignore[arg-type]
        return c


def test_every_stage_gets_its_deadline_from_event_time() -> None:
    f = Flow()
    c = f.case
    assert c.due == cst(2026, 3, 2, 11, 0)  # 立案时限 2 working hours
    c.register(**f.kw(cst(2026, 3, 2, 10, 0)), sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 2, 11, 0)  # 派遣时限 1 h
    c.dispatch(**f.kw(cst(2026, 3, 2, 11, 45)), departments=["water"], sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 2, 14, 15)  # 签收时限 1 h across lunch
    c.accept(**f.kw(cst(2026, 3, 2, 17, 0), "water"), sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 3, 10, 0)  # 处置时限 2 h (井盖), overnight
    c.handle(**f.kw(cst(2026, 3, 3, 9, 0), "water"), sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 3, 14, 30)  # 核查时限 4 h
    c.verify(**f.kw(cst(2026, 3, 3, 9, 30)), passed=False, sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 3, 11, 30)  # 返工: a fresh 处置时限
    c.handle(**f.kw(cst(2026, 3, 3, 10, 0), "water"), sla=f.sla)  # type: ignore[arg-type]
    c.verify(**f.kw(cst(2026, 3, 3, 11, 0)), passed=True, sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 3, 16, 30)  # 结案时限 4 h
    c.close(**f.kw(cst(2026, 3, 3, 12, 0)))  # type: ignore[arg-type]
    assert c.due is None and not c.is_overdue(cst(2027, 1, 1, 0))


def test_suspension_pauses_the_clock() -> None:
    f = Flow()
    c = f.to_accepted(cst(2026, 3, 6, 10, 0))  # Friday
    assert c.due == cst(2026, 3, 6, 12, 0)
    c.suspend(**f.kw(cst(2026, 3, 6, 11, 15)), reason="等待产权单位确认")  # type: ignore[arg-type]
    assert not c.is_overdue(cst(2026, 3, 9, 9, 0))  # suspended: never overdue
    c.resume(**f.kw(cst(2026, 3, 9, 16, 0)), sla=f.sla)  # type: ignore[arg-type]
    # 45 working minutes were left; Monday 16:00 + 45 min.
    assert c.due == cst(2026, 3, 9, 16, 45)
    assert c.is_overdue(cst(2026, 3, 9, 16, 46)) and not c.is_overdue(cst(2026, 3, 9, 16, 44))


def test_suspension_across_a_holiday_and_into_a_make_up_day() -> None:
    f = Flow("06001")  # 私搭乱建: 处置时限 one working day (7.5 h)
    c = f.to_accepted(cst(2026, 4, 30, 9, 0))
    assert c.due == cst(2026, 5, 6, 9, 0)  # Thu 9:00 + 7.5 h, May 1–5 off
    c.suspend(**f.kw(cst(2026, 4, 30, 14, 0)), reason="当事人外出")  # type: ignore[arg-type]
    c.resume(**f.kw(cst(2026, 5, 8, 17, 0)), sla=f.sla)  # type: ignore[arg-type]
    # remaining: Thu 14:00–17:30 (3.5 h) + Wed May 6 08:30–09:00 (0.5 h) = 4 h;
    # Fri May 8 17:00 → 17:30 (0.5 h), Sat May 9 is a 调休 working day: 08:30 + 3.5 h = 12:00.
    assert c.due == cst(2026, 5, 9, 12, 0)


def test_suspended_after_the_breach_keeps_the_breach() -> None:
    f = Flow()
    c = f.to_accepted(cst(2026, 3, 2, 9, 0))
    c.suspend(**f.kw(cst(2026, 3, 2, 15, 0)), reason="x")  # type: ignore[arg-type]
    c.resume(**f.kw(cst(2026, 3, 3, 9, 0)), sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 2, 11, 0)


def test_extension_moves_the_deadline_and_the_next_stage_starts_fresh() -> None:
    f = Flow()
    c = f.to_accepted(cst(2026, 3, 2, 9, 0))
    c.extend(**f.kw(cst(2026, 3, 2, 10, 0)), until=cst(2026, 3, 4, 17, 30), reason="需更换整套井座")  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 4, 17, 30) and c.extended_until == c.due
    assert not c.is_overdue(cst(2026, 3, 4, 17, 0))
    c.handle(**f.kw(cst(2026, 3, 4, 16, 0), "water"), sla=f.sla)  # type: ignore[arg-type]
    assert c.due == cst(2026, 3, 5, 11, 0)  # 核查时限 4 h from Wed 16:00: 1.5 h + Thu 2.5 h
    assert c.stage is Stage.HANDLED
    # an extension during a suspension is what the clock resumes from
    c.suspend(**f.kw(cst(2026, 3, 4, 17, 0)), reason="x")  # type: ignore[arg-type]
    c.extend(**f.kw(cst(2026, 3, 4, 17, 10)), until=cst(2026, 3, 6, 9, 30), reason="y")  # type: ignore[arg-type]
    c.resume(**f.kw(cst(2026, 3, 5, 17, 0)), sla=f.sla)  # type: ignore[arg-type]
    # 03-04 17:00 → 03-06 09:30 holds 0.5 + 7.5 + 1 = 9 working hours; Thu 17:00 + 0.5 + Fri 7.5 + 1
    assert c.due == cst(2026, 3, 9, 9, 30)


def test_breach_escalation_is_checked_against_the_current_deadline() -> None:
    f = Flow()
    c = f.to_accepted(cst(2026, 3, 2, 9, 0))
    from hub.domain import CaseRefused

    stale = cst(2026, 3, 2, 10, 0)
    with pytest.raises(CaseRefused, match="is not current"):
        c.escalate(**f.kw(stale), reason="超期", stage="accepted", deadline=stale)  # type: ignore[arg-type]
    assert c.due is not None
    c.escalate(**f.kw(c.due), reason="超期", stage="accepted", deadline=c.due)  # type: ignore[arg-type]
    assert (c.breaches, c.escalations) == (1, 1)
