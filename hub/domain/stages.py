"""The stage table (阶段表): what a case may do next, and in which stages its clock runs.

Why the per-stage table lives in ``hub.vocabulary``: the API refuses a mutation early from the read
model alone (``WRONG_STAGE``) and may not import the domain, so both read one table and say the
same. This module adds what only the case decides with: the stages as a set of :class:`Stage`
members, and what a suspended (挂起) case still allows whatever its stage.
"""

from __future__ import annotations

from hub.vocabulary import ALLOWED as ALLOWED
from hub.vocabulary import OPEN_STAGE_NAMES
from hub.vocabulary import STAGE_LABELS as STAGE_LABELS
from hub.vocabulary import Stage as Stage

OPEN_STAGES = frozenset(Stage(stage) for stage in OPEN_STAGE_NAMES)
"""Stages in which the case is still someone's work (SLA clock running unless suspended)."""

ALLOWED_WHILE_SUSPENDED: tuple[str, ...] = ("resume", "escalate", "extend", "link")
"""A suspended case waits for 恢复: no progress, but 督办, 延期 and 关联 still apply."""
