"""Dead letters (死信): how an event the hub could not apply is filed, so an operator can act on it.

Why: one poison message must never stop the intake, and must never vanish either. It goes to its
own stream (``CITY_DLQ``) under ``dlq.<the subject it arrived on>``, with headers saying why (a
stable :class:`Reason` code operators filter on), at which field, in what words, and where it came
from; ``hub dlq replay`` re-drives it from there. Header values are whatever the input held (a
field name with CR/LF, a lone surrogate), so each is made one printable line (:func:`printable`).
"""

from __future__ import annotations

from enum import StrEnum

DLQ_STREAM = "CITY_DLQ"
"""The dead-letter stream (死信): every event the hub could not apply, with the reason."""
DLQ_PREFIX = "dlq"


def dlq_subject_for(subject: str) -> str:
    return f"{DLQ_PREFIX}.{subject}"


class Reason(StrEnum):
    """Why an event was dead-lettered: a stable code operators filter on (``hub dlq replay --reason``)."""

    INVALID_JSON = "invalid_json"
    SCHEMA = "schema"
    UNKNOWN_DEPARTMENT = "unknown_department"
    UNKNOWN_TYPE = "unknown_type"
    SUBJECT_MISMATCH = "subject_mismatch"
    REFUSED = "refused"
    NOT_FOUND = "not_found"
    # issue 14, the edge: bytes that are not UTF-8 text, and timestamps outside the window.
    INVALID_ENCODING = "invalid_encoding"
    TIME_WINDOW = "time_window"
    STORE_FAILED = "store_failed"  # the store writer could not decide or map this one event
    # issue 15: a department acting on a case that is not its own (or as someone it is not).
    NOT_PERMITTED = "not_permitted"


# Headers the hub puts on dead letters (死信) so operators see what went wrong and where it came from.
H_REASON = "Hub-Dlq-Reason"
H_FIELD = "Hub-Dlq-Field"
H_DETAIL = "Hub-Dlq-Detail"
H_SUBJECT = "Hub-Dlq-Subject"
H_SEQ = "Hub-Dlq-Stream-Seq"
H_DELIVERIES = "Hub-Dlq-Deliveries"
H_MSG_ID = "Hub-Dlq-Msg-Id"
H_TIME = "Hub-Dlq-Time"
H_REPLAY_OF = "Hub-Replay-Of"
"""Set by ``hub dlq replay``: the CITY_DLQ sequence that a re-driven event came from."""

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def printable(text: str, limit: int = 2000) -> str:
    """``text`` as one printable, UTF-8-encodable line of at most ``limit`` characters: control
    characters and lone surrogates escaped. For what goes into NATS headers and log lines."""
    out = text.translate(_CONTROL)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        out = out.encode("utf-8", "backslashreplace").decode("utf-8")
    return out if len(out) <= limit else out[: limit - 1] + "…"
