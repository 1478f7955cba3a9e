"""The governance indicators (考核指标), each a versioned written definition.

Why versioned: a city compares months and districts; if 结案率 silently changed meaning the
comparison would lie. A change of definition is a NEW version (a new entry here and in
docs/indicators.md); every result carries the version that computed it, and old versions stay
computable for comparisons.

Each indicator is a numerator and a denominator over the ``cases`` read model in a scope, for a
window [since, until) and a reference moment ``now`` (what "overdue" means depends on it). The
SQL fragments use ``$since``, ``$until``, ``$now`` and a CTE ``c`` (the scoped cases with the
query-time flags ``is_open``, ``overdue_now`` and ``overdue_ever``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Indicator:
    key: str
    name: str
    version: int
    unit: str  # cases | ratio | hours | score
    numerator: str  # SQL aggregate over c
    denominator: str | None  # None: the value is the numerator itself (a count or a mean)
    definition: str  # the written definition (also in docs/indicators.md)


def _in(col: str) -> str:
    return f"({col} >= $since AND {col} < $until)"


_REG = _in("registered_at")
_CLOSED = _in("closed_at")
_FINISHED = _in("finished_at")
_SUCCESS = "coalesce(outcome, 'success') NOT IN ('failed', 'unsuccessful', 'not_dissuaded', 'withdrawn')"
_CLOSED_OK = f"closed_at IS NOT NULL AND {_SUCCESS}"

INDICATORS: tuple[Indicator, ...] = (
    Indicator(
        "registered", "立案数", 1, "cases",
        f"count(*) FILTER (WHERE {_REG})", None,
        "Cases whose 立案 (registered event time) falls in the window.",
    ),
    Indicator(
        "closed", "结案数", 1, "cases",
        f"count(*) FILTER (WHERE {_CLOSED})", None,
        "Cases whose 结案 (closed event time) falls in the window.",
    ),
    Indicator(
        "closure_rate", "结案率", 1, "ratio",
        f"count(*) FILTER (WHERE {_REG} AND closed_at IS NOT NULL AND closed_at < $now)",
        f"count(*) FILTER (WHERE {_REG})",
        "Of the cases registered in the window, the share closed by the reference moment.",
    ),
    Indicator(
        "on_time_closure_rate", "按期结案率", 1, "ratio",
        f"count(*) FILTER (WHERE {_CLOSED} AND overruns = 0)",
        f"count(*) FILTER (WHERE {_CLOSED})",
        "Of the cases closed in the window, the share that overran no stage deadline (SLA `due`, "
        "after extensions and suspensions) on the way.",
    ),
    Indicator(
        "rework_rate", "返工率", 1, "ratio",
        f"count(*) FILTER (WHERE {_REG} AND handles > 0 AND reworks > 0)",
        f"count(*) FILTER (WHERE {_REG} AND handles > 0)",
        "Of the cases registered in the window that were handled (处置反馈) at least once, the share "
        "that failed a verification (核查不通过 → 返工) at least once.",
    ),
    Indicator(
        "overdue_rate", "超期率", 1, "ratio",
        f"count(*) FILTER (WHERE {_REG} AND overdue_ever)",
        f"count(*) FILTER (WHERE {_REG})",
        "Of the cases registered in the window, the share that overran a stage deadline, or is open, "
        "not suspended and past its current deadline at the reference moment.",
    ),
    Indicator(
        "handling_hours_mean", "平均办理时长", 1, "hours",
        f"avg(epoch(closed_at - coalesce(registered_at, reported_at)) / 3600.0) FILTER (WHERE {_CLOSED})",
        None,
        "Mean of (结案 − 立案) in hours (上报 when never registered) over cases closed in the window; "
        "calendar hours, suspensions included.",
    ),
    Indicator(
        "handling_hours_median", "办理时长中位数", 1, "hours",
        f"median(epoch(closed_at - coalesce(registered_at, reported_at)) / 3600.0) FILTER (WHERE {_CLOSED})",
        None,
        "Median of the same durations.",
    ),
    Indicator(
        "satisfaction_mean", "满意度", 1, "score",
        f"avg(satisfaction) FILTER (WHERE {_in('evaluated_at')} AND satisfaction IS NOT NULL)",
        None,
        "Mean citizen score (1–5) of cases first evaluated in the window (operator scores excluded).",
    ),
    Indicator(
        "satisfaction_rate", "满意率", 1, "ratio",
        f"count(*) FILTER (WHERE {_in('evaluated_at')} AND satisfaction >= 4)",
        f"count(*) FILTER (WHERE {_in('evaluated_at')} AND satisfaction IS NOT NULL)",
        "Share of citizen scores of 4 or 5 among cases first evaluated in the window.",
    ),
    Indicator(
        "mediation_success_rate", "调解成功率", 1, "ratio",
        f"count(*) FILTER (WHERE kind = 'mediation' AND {_FINISHED} AND {_CLOSED_OK})",
        f"count(*) FILTER (WHERE kind = 'mediation' AND {_FINISHED})",
        "Of mediation cases (kind `mediation`) concluded in the window (closed, rejected or merged), "
        "the share closed with a successful outcome; a close without an `outcome` counts as "
        "successful (调解结案) until the domain records outcomes.",
    ),
    Indicator(
        "fraud_dissuasion_rate", "反诈劝阻率", 1, "ratio",
        f"count(*) FILTER (WHERE kind = 'fraud_warning' AND {_FINISHED} AND {_CLOSED_OK})",
        f"count(*) FILTER (WHERE kind = 'fraud_warning' AND {_FINISHED})",
        "Of anti-fraud warnings (kind `fraud_warning`) concluded in the window, the share closed as "
        "dissuaded (no `outcome`, or an outcome other than a failure such as `not_dissuaded`).",
    ),
)  # fmt: skip

BY_KEY = {i.key: i for i in INDICATORS}
