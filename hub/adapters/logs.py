"""Identical log lines, rate-limited: the first of an interval is written, the rest are counted and
reported as one line with the count when the interval is over.

Why: one fault that repeats as fast as a loop can turn (issue 14: a wedged pipe logged the same two
lines 21.7 million times in 12 minutes, 2.1 GB) must not fill the disk or bury every other line.
Lines that differ (a dead letter names its event) all pass; only the same logger, level and text
within :data:`INTERVAL_S` are folded.

In ``hub`` because the store writer, its recorder and the chain follower (child processes that set
up their own logging) install it as well as the commands do; ``hub`` never imports ``ops``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 10.0
"""Length of a rate-limiting window, per distinct line."""

MAX_LINES = 10_000
"""Distinct lines remembered at once; beyond that the oldest windows are closed early."""

_SUMMARY = "_hub_repeat_summary"


@dataclass(slots=True)
class _Window:
    started: float
    suppressed: int
    example: logging.LogRecord


class RepeatFilter(logging.Filter):
    """A handler filter: passes the first of each identical line per interval and reports how many
    more there were (``… [repeated N more times in the last 10 s]``) once that interval is over.

    The count is written when the next line of any kind passes through the handler after the
    interval (a flood that goes on is reported every interval), or on :meth:`flush`.
    """

    def __init__(
        self,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        max_lines: int = MAX_LINES,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.max_lines = max_lines
        self.handler: logging.Handler | None = None
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        try:
            key = (record.name, record.levelno, record.getMessage())
        except Exception:  # a record whose arguments do not format: let the handler report it
            return True
        now = self.clock()
        with self._lock:
            due = self._sweep(now)
            window = self._windows.get(key)
            if window is not None and now - window.started < self.interval_s:
                window.suppressed += 1
                passed = False
            else:
                if window is not None and window.suppressed:
                    due.append(window)
                self._windows[key] = _Window(now, 0, record)
                if len(self._windows) > self.max_lines:
                    oldest = next(iter(self._windows))
                    closed = self._windows.pop(oldest)
                    if closed.suppressed:
                        due.append(closed)
                passed = True
        self._emit(due)
        return passed

    def flush(self) -> None:
        """Report every count still open (at exit)."""
        with self._lock:
            due = [w for w in self._windows.values() if w.suppressed]
            self._windows.clear()
        self._emit(due)

    def _sweep(self, now: float) -> list[_Window]:
        """Close the windows that are over (at most once a second: cheap on every line)."""
        if now < self._next_sweep:
            return []
        self._next_sweep = now + min(1.0, self.interval_s)
        due: list[_Window] = []
        for key, window in list(self._windows.items()):
            if now - window.started >= self.interval_s:
                del self._windows[key]
                if window.suppressed:
                    due.append(window)
        return due

    def _emit(self, windows: list[_Window]) -> None:
        handler = self.handler
        for window in windows:
            if handler is None:
                continue
            example = window.example
            summary = logging.LogRecord(  # stamped now, when the count is complete
                example.name,
                example.levelno,
                example.pathname,
                example.lineno,
                "%s [repeated %d more times in the last %.0f s]",
                (example.getMessage(), window.suppressed, self.interval_s),
                None,
                example.funcName,
            )
            summary.processName, summary.threadName = example.processName, example.threadName
            setattr(summary, _SUMMARY, True)
            summary.repeated = window.suppressed
            handler.handle(summary)


def limit_repeats(handlers: list[logging.Handler] | None = None, interval_s: float = INTERVAL_S) -> None:
    """Install a :class:`RepeatFilter` on each handler (default: the root logger's), once."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if any(isinstance(f, RepeatFilter) for f in handler.filters):
            continue
        repeat = RepeatFilter(interval_s)
        repeat.handler = handler
        handler.addFilter(repeat)


def child_logging(role: str, level: int = logging.INFO) -> None:
    """Logging of a hub child process (writer, recorder, chain follower): stderr, its role in each
    line, identical lines rate-limited."""
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {role} %(name)s: %(message)s")
    limit_repeats()
