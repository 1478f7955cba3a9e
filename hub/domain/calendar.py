"""Working-time calendar (工作日历): when the SLA clock of a case runs.

Chinese government deadlines (办理时限) are counted in working time: working days (工作日) and
office hours, minus the statutory public holidays (法定节假日), plus the make-up working days
(调休上班日, usually a Saturday or Sunday next to a long holiday) that the State Council announces
each year. A weekday rule alone is wrong twice a year in both directions, so holidays and make-up
days are data, and a make-up day always wins over the weekday rule.

Why it is pure: deadlines are computed from the *event time* the source gave (never arrival
time), so importing last year's history yields last year's deadlines; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

MAX_DAYS = 3660
"""Searching more than ten years ahead for working time means the calendar has no working days."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000


def _micros(moment: datetime) -> int:
    """Exact integer microseconds since the epoch (floats lose the last microsecond around 2026)."""
    return (moment - _EPOCH) // _US


class CalendarError(ValueError):
    """An impossible calendar or computation (no working time at all, naive datetimes)."""


@dataclass(frozen=True, slots=True)
class WorkingCalendar:
    """Working days and office hours (工作时间) in one time zone, with holidays and 调休 days."""

    tz: tzinfo
    periods: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)), (time(13, 30), time(17, 30)))
    """Office hours of a working day, sorted and non-overlapping (e.g. morning and afternoon)."""
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    """Working weekdays, Monday = 0."""
    holidays: frozenset[date] = field(default_factory=frozenset)
    """Public holidays (法定节假日 and the days off shifted next to them)."""
    workdays: frozenset[date] = field(default_factory=frozenset)
    """Make-up working days (调休上班日): working although they fall on a weekend."""
    _days: dict[int, tuple[tuple[int, int], ...]] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )
    """Office periods per day (by ordinal) in epoch microseconds: every case event computes a
    deadline, and building zoned datetimes for each of them cost more than deciding the event."""
    _offset_us: int | None = field(default=None, init=False, compare=False, hash=False, repr=False)
    """The zone's fixed UTC offset (China Standard Time has no daylight saving): the local day of a
    moment is then integer arithmetic, not a conversion (≈ 1.5 µs of a deadline's ≈ 2.8)."""

    def __post_init__(self) -> None:
        previous_end: time | None = None
        for start, end in self.periods:
            if start >= end:
                raise CalendarError(f"office period {start}–{end} ends before it starts")
            if previous_end is not None and start < previous_end:
                raise CalendarError(f"office period {start}–{end} overlaps the one before it")
            previous_end = end
        if both := self.holidays & self.workdays:
            raise CalendarError(f"{min(both)} is both a holiday and a make-up working day")
        if isinstance(self.tz, timezone):
            offset = self.tz.utcoffset(None)
            object.__setattr__(self, "_offset_us", offset // _US)

    # ------------------------------------------------------------------ days
    def is_working_day(self, day: date) -> bool:
        """调休 first, then holidays, then the weekday rule."""
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() in self.weekdays

    def _periods_of(self, day: date) -> Iterable[tuple[datetime, datetime]]:
        if not self.is_working_day(day):
            return ()
        return (
            (datetime.combine(day, start, self.tz), datetime.combine(day, end, self.tz))
            for start, end in self.periods
        )

    def _micro_periods(self, day: int) -> tuple[tuple[int, int], ...]:
        """Office periods of the day with ordinal ``day``."""
        periods = self._days.get(day)
        if periods is None:
            periods = tuple((_micros(b), _micros(e)) for b, e in self._periods_of(date.fromordinal(day)))
            if len(self._days) > 20_000:
                self._days.clear()
            self._days[day] = periods
        return periods

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise CalendarError(f"{moment.isoformat()} has no time zone; event times must be aware")
        return moment.astimezone(self.tz)

    def _local_day(self, moment: datetime, micros: int) -> int:
        """The ordinal of ``moment``'s local date (``micros`` is the same, aware, moment)."""
        offset = self._offset_us
        if offset is None:
            return self._local(moment).toordinal()
        return _EPOCH_ORDINAL + (micros + offset) // _DAY_US

    # ------------------------------------------------------------------ arithmetic
    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of working time after ``start`` (returned in UTC).

        A deadline that uses up a period exactly ends at that period's end (12:00, not 13:30).
        """
        return self.add_micros(start, duration // _US)

    def add_micros(self, start: datetime, remaining: int) -> datetime:
        """:meth:`add` for a duration already in microseconds (SLA rules convert theirs once)."""
        if remaining < 0:
            raise CalendarError(f"negative working time {timedelta(microseconds=remaining)}")
        if start.tzinfo is None:
            raise CalendarError(f"{start.isoformat()} has no time zone; event times must be aware")
        now = _micros(start)
        day = self._local_day(start, now)
        for _ in range(MAX_DAYS):
            for begin, end in self._micro_periods(day):
                if end <= now:
                    continue
                begin = max(begin, now)
                available = end - begin
                if remaining <= available:
                    return _EPOCH + timedelta(microseconds=begin + remaining)
                remaining -= available
            day += 1
        raise CalendarError(f"no working time within {MAX_DAYS} days after {start.isoformat()}")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time in [start, end); zero when end is not after start."""
        a, b = self._local(start), self._local(end)
        if b <= a:
            return timedelta(0)
        lo_us, hi_us = _micros(start), _micros(end)
        total = 0
        day, last = a.toordinal(), b.toordinal()
        while day <= last:
            for begin, finish in self._micro_periods(day):
                lo, hi = max(begin, lo_us), min(finish, hi_us)
                if hi > lo:
                    total += hi - lo
            day += 1
        return timedelta(microseconds=total)

    def working_day_hours(self) -> float:
        """Length of one working day in hours (for "N working days" rules)."""
        seconds = sum(
            (datetime.combine(date.min, e) - datetime.combine(date.min, s)).total_seconds()
            for s, e in self.periods
        )
        return seconds / 3600
