"""Identical log lines are rate-limited: one per interval, then one line with the count."""

from __future__ import annotations

import io
import logging

from hub.adapters.logs import RepeatFilter, limit_repeats


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _logger(clock: _Clock, interval: float = 10.0) -> tuple[logging.Logger, io.StringIO, RepeatFilter]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    repeat = RepeatFilter(interval, clock=clock)
    repeat.handler = handler
    handler.addFilter(repeat)
    logger = logging.getLogger(f"test.repeats.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out, repeat


def test_a_flood_of_one_line_becomes_one_line_and_a_count_per_interval() -> None:
    clock = _Clock()
    log, out, _ = _logger(clock)
    for _ in range(20_000):  # the same line as fast as a loop turns, all within one interval
        log.error("the store writer sent a reply nobody asked for; ignored")
    assert out.getvalue().count("\n") == 1
    clock.now += 10.5
    log.error("the store writer sent a reply nobody asked for; ignored")
    lines = out.getvalue().splitlines()
    assert lines[1] == (
        "ERROR " + log.name + ": the store writer sent a reply nobody asked for; ignored "
        "[repeated 19999 more times in the last 10 s]"
    )
    assert lines[2].endswith("ignored") and len(lines) == 3


def test_different_lines_all_pass_and_the_count_comes_with_the_next_line_of_any_kind() -> None:
    clock = _Clock()
    log, out, _ = _logger(clock)
    for seq in range(5):
        log.warning("dead-lettered seq %d", seq)  # each names its event: never folded
    log.info("batch conflicted (%s)", "IntegrityError")
    log.info("batch conflicted (%s)", "IntegrityError")
    log.info("batch conflicted (%s)", "IntegrityError")
    assert out.getvalue().count("\n") == 6
    clock.now += 11
    log.info("something else")
    lines = out.getvalue().splitlines()
    assert "batch conflicted (IntegrityError) [repeated 2 more times in the last 10 s]" in lines[6]
    assert lines[7].endswith("something else")


def test_the_same_text_at_another_level_or_logger_is_another_line() -> None:
    clock = _Clock()
    log, out, _ = _logger(clock)
    log.info("x")
    log.warning("x")
    log.info("x")
    assert out.getvalue().count("\n") == 2


def test_flush_reports_what_is_still_counted() -> None:
    clock = _Clock()
    log, out, repeat = _logger(clock)
    for _ in range(4):
        log.error("same")
    repeat.flush()
    assert out.getvalue().splitlines()[-1].endswith("same [repeated 3 more times in the last 10 s]")


def test_installed_once_on_the_root_handlers() -> None:
    handler = logging.StreamHandler(io.StringIO())
    limit_repeats([handler])
    limit_repeats([handler])
    assert sum(isinstance(f, RepeatFilter) for f in handler.filters) == 1
