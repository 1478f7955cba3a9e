"""The plausible-time window (可信时间窗): when an event may say it happened, and its deadlines fall.

Why a grammar of its own: the window is configured (``HUB_TIME_WINDOW``, read by ops.settings, and
given to file imports), so it is parsed and explained here, where :func:`hub.messages.validate`
applies it; :data:`TIME_WINDOW_GRAMMAR` is the one text that tells an operator how to write it.
Bounds are held as seconds since the epoch, so the check on the hot path is two float comparisons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SPAN = re.compile(r"([+-])(\d+(?:\.\d+)?)([smhdw])")
TIME_WINDOW_GRAMMAR = (
    "START/AHEAD or START/AHEAD/DEADLINE: START is an ISO 8601 date or time (naive = UTC) or -N<unit> "
    "before now; "
    "AHEAD is +N<unit> after now; DEADLINE (optional, default +366d) is +N<unit> after the event's own "
    "time; units s, m, h, d, w (e.g. 1970-01-01/+1d, -400d/+1h, 2020-01-01/+10m/+90d)"
)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The plausible-time window (可信时间窗) every timestamp of an event must lie in.

    Why at the edge: a time the store or the domain cannot compute with (year 10000 after a UTC
    conversion, year 1) used to pass validation and then fail the store writer's whole batch, again
    and again; a clock set years ahead would file a case under a deadline nobody can meet. Checked
    here, such an event is answered (HTTP, import) or dead-lettered (NATS) naming its field, and its
    neighbours go through. The event ``time`` (when it happened) may lie at most ``ahead`` after now;
    deadlines inside ``data`` (``until``, ``deadline``) are in the future by nature, so they may lie
    at most ``deadline_ahead`` after the event's own time. Both must be at or after the start.
    Bounds are seconds since the epoch, so the check is two float comparisons per timestamp.
    """

    start: float = 0.0
    """Earliest allowed instant (epoch seconds) when ``start_ago`` is None."""
    start_ago: float | None = None
    """When set: the earliest instant is this many seconds before now (a sliding start)."""
    ahead: float = 86400.0
    deadline_ahead: float = 366 * 86400.0
    text: str = "1970-01-01/+1d"

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        """Parse ``START/AHEAD[/DEADLINE]`` (see :data:`TIME_WINDOW_GRAMMAR`); ValueError says why."""
        parts = [p.strip() for p in text.strip().split("/")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"{text!r}: expected {TIME_WINDOW_GRAMMAR}")
        start, start_ago = 0.0, None
        if parts[0].startswith("-"):
            start_ago = _span(parts[0], "-", text)
        else:
            try:
                moment = datetime.fromisoformat(parts[0])
            except ValueError:
                raise ValueError(
                    f"{text!r}: START {parts[0]!r} is not an ISO 8601 date or time "
                    f"nor -N<unit>; expected {TIME_WINDOW_GRAMMAR}"
                ) from None
            start = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        ahead = _span(parts[1], "+", text)
        deadline = _span(parts[2], "+", text) if len(parts) == 3 else 366 * 86400.0
        return cls(start, start_ago, ahead, deadline, text.strip())

    def bounds(self, now: float) -> tuple[float, float]:
        """(earliest, latest) allowed event time at ``now``, as epoch seconds."""
        earliest = self.start if self.start_ago is None else now - self.start_ago
        return earliest, now + self.ahead

    def problem(self, moment: datetime, earliest: float, latest: float, deadline: bool = False) -> str | None:
        """Why ``moment`` lies outside [earliest, latest], or None when it is inside. ``deadline``:
        ``latest`` is the event's time plus ``deadline_ahead`` (a due time), not now plus ``ahead``."""
        try:
            seconds = moment.timestamp()
        except (OverflowError, ValueError, OSError):  # 9999-12-31T23:00-08:00 is year 10000 in UTC
            seconds = float("inf") if moment.year > 1970 else float("-inf")
        if seconds < earliest:
            return (
                f"{moment.isoformat()} is before the plausible-time window "
                f"(not before {_iso(earliest)}; HUB_TIME_WINDOW={self.text}); "
                "send the time it really happened, with its UTC offset"
            )
        if seconds > latest and deadline:
            return (
                f"deadline {moment.isoformat()} is more than {self.deadline_ahead / 86400:g} days after "
                f"the event's time (not after {_iso(latest)}; HUB_TIME_WINDOW={self.text}); "
                "check the date and its time zone"
            )
        if seconds > latest:
            return (
                f"{moment.isoformat()} is after the plausible-time window "
                f"(not after {_iso(latest)}; HUB_TIME_WINDOW={self.text}); "
                "check the sending system's clock and time zone"
            )
        return None


def _span(part: str, sign: str, text: str) -> float:
    match = _SPAN.fullmatch(part)
    if not match or match[1] != sign:
        raise ValueError(f"{text!r}: {part!r} is not {sign}N<unit>; expected {TIME_WINDOW_GRAMMAR}")
    return float(match[2]) * _UNITS[match[3]]


def _iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{seconds:.0f} s after 1970"


DEFAULT_TIME_WINDOW = TimeWindow()
"""Not before 1970-01-01, at most a day ahead of now, deadlines at most 366 days after the event."""
