"""Audit (审计): the tamper-evident chain over the event store, case histories, the read access log.

Everything here reads the event store itself, never the projections: auditors get what was
recorded. ``chain`` proves nothing was modified, deleted, inserted or reordered; ``history`` lists a
case's events; ``access`` records and lists reads of personal data (in a store of its own). See docs/audit.md.
"""

from hub.adapters.audit.access import Access, AccessLog, AccessStore, open_access_store, read_access
from hub.adapters.audit.chain import AuditChain, Finding, Head, Report
from hub.adapters.audit.history import Entry, case_history

__all__ = [
    "Access",
    "AccessLog",
    "AccessStore",
    "AuditChain",
    "Entry",
    "Finding",
    "Head",
    "Report",
    "case_history",
    "open_access_store",
    "read_access",
]
