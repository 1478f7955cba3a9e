"""The domain core (领域核心): pure Python, no I/O; the standard library and ``eventsourcing.domain`` only."""

from hub.domain.audit import AccessRecord
from hub.domain.authority import RESERVED_ROLES, Authority, NotPermitted
from hub.domain.calendar import CalendarError, WorkingCalendar
from hub.domain.case import CONCLUDED_STAGES, INVERSE, WAITING_RELATIONS, Case, Stage
from hub.domain.grid import GridCell, GridError, GridTree, Level
from hub.domain.progress import DepartmentProgress, stage_of
from hub.domain.refusals import AlreadyDone, CaseRefused
from hub.domain.routing import AUTO, ResponsibilityList, Route, Rule, Unroutable
from hub.domain.sla import CaseDeadlines, Deadlines, SlaPolicy, SlaRule, breach_event_id
from hub.domain.stages import ALLOWED, OPEN_STAGES, STAGE_LABELS
from hub.domain.taxonomy import Basis, Category, Taxonomies, Taxonomy, UnknownCategory

__all__ = [
    "ALLOWED",
    "AUTO",
    "CONCLUDED_STAGES",
    "INVERSE",
    "OPEN_STAGES",
    "RESERVED_ROLES",
    "STAGE_LABELS",
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
    "DepartmentProgress",
    "GridCell",
    "GridError",
    "GridTree",
    "Level",
    "NotPermitted",
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
    "stage_of",
]
