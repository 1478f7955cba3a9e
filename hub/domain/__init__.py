"""The domain core (领域核心): pure Python, no I/O; the standard library and ``eventsourcing.domain`` only."""

from hub.domain.audit import AccessRecord
from hub.domain.authority import RESERVED_ROLES, Authority, NotPermitted
from hub.domain.calendar import CalendarError, WorkingCalendar
from hub.domain.case import (
    ALLOWED,
    CONCLUDED_STAGES,
    INVERSE,
    OPEN_STAGES,
    WAITING_RELATIONS,
    AlreadyDone,
    Case,
    CaseRefused,
    Part,
    Stage,
)
from hub.domain.grid import GridCell, GridError, GridTree, Level
from hub.domain.routing import AUTO, ResponsibilityList, Route, Rule, Unroutable
from hub.domain.sla import CaseDeadlines, Deadlines, SlaPolicy, SlaRule, breach_event_id
from hub.domain.taxonomy import Basis, Category, Taxonomies, Taxonomy, UnknownCategory

__all__ = [
    "ALLOWED",
    "AUTO",
    "CONCLUDED_STAGES",
    "INVERSE",
    "OPEN_STAGES",
    "RESERVED_ROLES",
    "WAITING_RELATIONS",
    "AccessRecord",
    "AlreadyDone",
    "Authority",
    "Basis",
    "CalendarError",
    "Case",
    "CaseDeadlines",
    "CaseRefused",
    "Category",
    "Deadlines",
    "GridCell",
    "GridError",
    "GridTree",
    "Level",
    "NotPermitted",
    "Part",
    "ResponsibilityList",
    "Route",
    "Rule",
    "SlaPolicy",
    "SlaRule",
    "Stage",
    "Taxonomies",
    "Taxonomy",
    "UnknownCategory",
    "Unroutable",
    "WorkingCalendar",
    "breach_event_id",
]
