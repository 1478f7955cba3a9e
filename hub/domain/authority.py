"""Who may act on which case (数据权限): departments are confined to their own cases.

Why on the data and not only on the subject: NATS permissions let each department's user publish
only on ``city.<department>.>``, and HTTP ingest tokens push only through their department's
connectors, but an event names its case by ``source`` and ``caseref`` (or ``caseid``), which anyone
can copy. Confined by subject alone, the police rejected (不予立案) a city-management case by naming
it, and accepted and handled another "as water" by setting ``data.department``. Like PostgreSQL's
row security or KurrentDB's stream ACLs, the hub now decides on the case itself.

The publishing department is the authenticated one, never what the event says about itself: the
NATS subject's ``city.<department>.…`` token (the intake refuses an event whose ``department``
differs from its subject, ``subject_mismatch``) or the HTTP ingest token's department. For an
event of department ``P``:

1. The command centre (指挥中心, ``P`` = the command department) acts on every case and for every
   department: operator commands and the SLA watcher's 督办. NATS permissions make its subjects
   writable by the hub's own user only.
2. **Identity.** A department's event may not claim one of the hub's own identities: an actor
   ``operator:…`` (the command centre's operators) or ``system:…`` (the hub itself), or the
   ``actorrole`` ``operator`` or ``system``. Otherwise the audit trail would show a department's
   record as an operator's. Final: the event can never become permitted.
3. **The case.** ``P`` reported the case (its origin department, also the department a referral
   opened it for), or the case was dispatched (派遣), referred (转介) or linked (关联) to ``P``
   (:attr:`Case.involved <hub.domain.case.Case.involved>`). Not final: the dispatch that makes it
   permitted may still be on its way, so the intake retries before dead-lettering it.
4. **Acting for another department** (``data.department`` of 签收, 退回, 处置反馈): only on a case
   ``P`` owns. A case's own system records the steps of the handling units and departments it
   dispatched to (数字城管 for 供水, 卫健 for 综治 and 精神卫生); a department that was only
   dispatched, referred or linked to a case acts in its own name. Final.
5. **Links to an existing case** (关联): the linked case receives a link back, which would make
   ``P`` one of its involved departments, so ``P`` must already be permitted on that case too. A
   link that opens a new case (a referral to a case not yet reported) needs nothing more.

6. **Source systems** (来源系统): a department may report a case under a ``source``, or open one
   by a link, only when that source is not another department's (``sources`` in
   ``departments.toml``). Otherwise a department could take another system's case references
   first: the owner's own report would then be refused and its steps ``not_permitted``. A source
   configured for no department may be used by any (a deployment lists every department's
   sources; production mode names departments that list none). Final.

Anything else is a :class:`NotPermitted` refusal; the application answers it with the verdict
the intake dead-letters as ``not_permitted``, naming the case and the department.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uuid import UUID

    from hub.domain.case import Case

RESERVED_ROLES = frozenset({"operator", "system"})
"""Actor prefixes (``operator:dev``, ``system:sla-watcher``) and ``actorrole`` values that belong to
the hub itself (its command centre and its own processes), never to a department's record."""


class NotPermitted(Exception):
    """A department acting beyond its own cases (or as someone it is not); nothing is recorded.

    ``final``: the event can never become permitted (a claimed identity, acting for another
    department); otherwise a later dispatch or link may still permit it, so it is retried first.
    ``field`` is the event's field at fault (dead-letter header ``Hub-Dlq-Field``).
    """

    def __init__(
        self, message: str, *, department: str, case_id: UUID | None, field: str, final: bool
    ) -> None:
        super().__init__(message)
        self.department = department
        self.case_id = case_id
        self.field = field
        self.final = final


def _case_name(case: Case) -> str:
    return f"case {case.id} ({case.source}/{case.caseref})"


@dataclass(frozen=True, slots=True)
class Authority:
    """The rules above, for one deployment: ``command`` is the command centre's department code."""

    command: str = "command"
    sources: Mapping[str, str] = field(default_factory=dict)
    """Source system → the department it belongs to (rule 6)."""

    def check_source(self, source: str, department: str, field_name: str = "source") -> None:
        """Rule 6: raise :class:`NotPermitted` when ``source`` belongs to another department."""
        owner = self.sources.get(source)
        if department == self.command or owner is None or owner == department:
            return
        raise NotPermitted(
            f"a case of {department} may not be opened under source {source!r}: it is {owner}'s source "
            f"system (departments.toml 'sources'); {department} reports under its own sources",
            department=department,
            case_id=None,
            field=field_name,
            final=True,
        )

    def check_identity(self, department: str, actor: str, actorrole: str | None) -> None:
        """Rule 2: raise :class:`NotPermitted` when a department's event claims a hub identity."""
        if department == self.command:
            return
        role = actor.partition(":")[0].strip().casefold()
        if role in RESERVED_ROLES:
            raise NotPermitted(
                f"{department} may not act as {actor!r}: actors {', '.join(sorted(RESERVED_ROLES))}:… "
                f"are the command centre's and the hub's own; a department's event names its own "
                f"staff (e.g. clerk:…, officer:…), and operator commands come only from the command "
                f"centre (city.{self.command}.…)",
                department=department,
                case_id=None,
                field="actor",
                final=True,
            )
        if actorrole is not None and actorrole.strip().casefold() in RESERVED_ROLES:
            raise NotPermitted(
                f"{department} may not claim the actor role {actorrole!r}: it is the command "
                f"centre's or the hub's own",
                department=department,
                case_id=None,
                field="actorrole",
                final=True,
            )

    def check_case(self, case: Case, department: str, acting_for: str | None = None) -> None:
        """Rules 3 and 4: raise :class:`NotPermitted` unless ``department`` may act on ``case``
        (as ``acting_for``, the ``data.department`` it names, when given)."""
        if department == self.command:
            return
        if not case.concerns(department):
            raise NotPermitted(
                f"{department} may not act on {_case_name(case)} owned by {case.origin_department}; "
                f"it was never dispatched, referred or linked to {department}",
                department=department,
                case_id=case.id,
                field="department",
                final=False,
            )
        if acting_for is not None and acting_for != department and case.origin_department != department:
            raise NotPermitted(
                f"{department} may not act as {acting_for} on {_case_name(case)} owned by "
                f"{case.origin_department}: only the case's own department records the steps of "
                f"others; {department} acts on it in its own name (data.department {department!r})",
                department=department,
                case_id=case.id,
                field="data.department",
                final=True,
            )

    def check_link_target(self, target: Case, department: str) -> None:
        """Rule 5: linking to an existing case needs permission on it as well (the link back)."""
        if department == self.command or target.concerns(department):
            return
        raise NotPermitted(
            f"{department} may not link to {_case_name(target)} owned by {target.origin_department}; "
            f"it was never dispatched, referred or linked to {department} (the link would record "
            f"{department} on that case); ask the command centre to link them",
            department=department,
            case_id=target.id,
            field="data.target",
            final=False,
        )
