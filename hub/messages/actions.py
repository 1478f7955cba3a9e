"""The closed-loop steps (闭环环节): the one vocabulary of actions every department's records map onto.

Why a module of its own: the step is the last token of every subject (``city.<dept>.<kind>.<action>``),
the key of the payload schemas and a property of the envelope, so subjects, payloads and the envelope
all import it, and it imports nothing of theirs. ``ACTION_OF`` and ``ACTIONS`` exist for the intake's
hot path: ``Action(value)`` costs a slow enum lookup per event, a dict lookup does not.
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """The closed-loop steps (闭环环节) every department's records map onto."""

    REPORTED = "reported"  # 上报
    REGISTERED = "registered"  # 立案
    REJECTED = "rejected"  # 不予立案
    MERGED = "merged"  # 合并 (duplicate of a primary case)
    DISPATCHED = "dispatched"  # 派遣
    ACCEPTED = "accepted"  # 签收
    RETURNED = "returned"  # 退回
    HANDLED = "handled"  # 处置反馈
    VERIFIED = "verified"  # 核查 (passed → closable; failed → 返工 rework)
    CLOSED = "closed"  # 结案
    EVALUATED = "evaluated"  # 评价
    ESCALATED = "escalated"  # 督办
    EXTENDED = "extended"  # 延期
    SUSPENDED = "suspended"  # 挂起
    RESUMED = "resumed"  # 恢复
    LINKED = "linked"  # 关联 (referral, duplicate, parent/child across departments)


ACTIONS = frozenset(a.value for a in Action)
ACTION_OF = {a.value: a for a in Action}  # Action(value) costs a slow enum lookup per call
