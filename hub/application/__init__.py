"""Use cases of the hub on the eventsourcing Application: apply canonical events to cases, in batches.

Why batches: a commit per case costs ≈ 2k commits/s on SQLite and ≈ 600 on PostgreSQL, while one
transaction holding a few hundred cases' events saves ≈ 40k events/s. So the intake hands over a
whole JetStream batch, every event is decided against its case in memory, and all new events of
the batch are recorded in **one** transaction before anything is acknowledged.

Why a case cache: the intake is the only writer of the cases it consumes (one consumer, or one
per case-keyed partition), so the cases it just saved are the current ones and need no reload. The
store's optimistic concurrency (unique originator id + version) is the safety net: when a save
conflicts (a stale cached case, or a "new" case that already existed before a restart) the batch
is decided again with every case read from the store.

The closed loop's policies (issue 3) are applied here, never inside the aggregate: the case
receives computed deadlines (SLA policy in working time), the grid a report's location falls in
(spatial index), the departments the responsibility list (权责清单) names, and cross-department
links open or link the other case in the same transaction. Configuration is loaded and validated
once, when the ledger is built (``HUB_CONFIG_DIR`` overrides the shipped defaults).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    EventStore,
    IntegrityError,
    Mapper,
    Notification,
    PersistenceError,
    StoredEvent,
    Transcoding,
)

from hub import messages as m
from hub.adapters.config.loading import DomainConfig, load_domain
from hub.adapters.privacy import sealing as privacy
from hub.adapters.store.follower import LogFollower
from hub.application.outcome import Outcome as Outcome
from hub.application.outcome import Verdict as Verdict
from hub.domain import (
    AUTO,
    CONCLUDED_STAGES,
    INVERSE,
    AlreadyDone,
    Authority,
    Case,
    CaseRefused,
    NotPermitted,
    Part,
    Stage,
    UnknownCategory,
    Unroutable,
)
from hub.domain.sla import CaseDeadlines, breach_event_id
from hub.vocabulary import APPLICATION_NAME, STAGE_LIMIT_NAMES

log = logging.getLogger(__name__)


class _EnumAsValue(Transcoding):
    """Stage and Part are StrEnums; events store plain strings, but state snapshots may hold them."""

    def __init__(self, enum: type[StrEnum], name: str) -> None:
        self.type = enum
        self.name = name

    def encode(self, obj: Any) -> str:
        return str(obj.value)

    def decode(self, data: Any) -> Any:
        return self.type(data)


def _common(valid: m.Valid) -> dict[str, Any]:
    env = valid.envelope
    return {"event_id": env.id, "at": env.time, "actor": env.actor, "department": env.department}


def _plain(method: Callable[..., None]) -> Callable[[Case, m.Valid, dict[str, Any]], None]:
    """A command whose arguments are the envelope's (event id, time, actor, department) and the
    payload's fields as they are; a payload field of the same name wins (accept/return/handle name
    the acting department in ``data``; the command centre may act for one). One dict is built per
    event: the decide path runs ≈ 40,000 times a second."""

    def command(case: Case, valid: m.Valid, kwargs: dict[str, Any]) -> None:
        kwargs.update(m.payload_dict(valid.payload))
        method(case, **kwargs)

    return command


# How each closed-loop action becomes a command on an existing case.
_COMMANDS: dict[m.Action, Callable[[Case, m.Valid, dict[str, Any]], None]] = {
    m.Action.REGISTERED: _plain(Case.register),
    m.Action.REJECTED: _plain(Case.reject),
    m.Action.MERGED: lambda c, v, k: c.merge(
        **k,
        primary_id=v.payload.primary.resolve(),  # type: ignore[attr-defined]
        note=v.payload.note,  # type: ignore[attr-defined]
    ),
    m.Action.DISPATCHED: _plain(Case.dispatch),
    m.Action.ACCEPTED: _plain(Case.accept),
    m.Action.RETURNED: _plain(Case.return_),
    m.Action.HANDLED: _plain(Case.handle),
    m.Action.VERIFIED: _plain(Case.verify),
    m.Action.CLOSED: _plain(Case.close),
    m.Action.EVALUATED: _plain(Case.evaluate),
    m.Action.ESCALATED: _plain(Case.escalate),
    m.Action.EXTENDED: _plain(Case.extend),
    m.Action.SUSPENDED: _plain(Case.suspend),
    m.Action.RESUMED: _plain(Case.resume),
    m.Action.LINKED: lambda c, v, k: c.link(
        **k,
        relation=v.payload.relation,  # type: ignore[attr-defined]
        target_id=v.payload.target.resolve(),  # type: ignore[attr-defined]
        target_department=v.payload.target_department,  # type: ignore[attr-defined]
        note=v.payload.note,  # type: ignore[attr-defined]
    ),
}
"""Departments act in their own name: accept/return/handle carry the acting department in ``data``
(the command centre may act for one); the envelope's department is who sent the event."""


_CLOCKED_ACTIONS = frozenset(
    {
        m.Action.REGISTERED,
        m.Action.DISPATCHED,
        m.Action.ACCEPTED,
        m.Action.RETURNED,
        m.Action.HANDLED,
        m.Action.VERIFIED,
        m.Action.RESUMED,
    }
)
"""Actions that may move a case into a new open stage, so the case needs its SLA deadlines."""

SYSTEM_ACTOR = "system:hub"
WATCHER_ACTOR = "system:sla-watcher"


class CaseLedger(Application[UUID]):
    """案件台账: the event-sourced record of every case, and the use cases that change it."""

    name = APPLICATION_NAME

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        cache_size: int = 100_000,
        domain: DomainConfig | None = None,
        config_dir: Path | None = None,
    ) -> None:
        # HUB_CONFIG_DIR is read by ops (ops/settings.py) and passed in: the core reads no environment
        self._config_dir = config_dir
        super().__init__(env)
        self._cache: OrderedDict[UUID, Case] = OrderedDict()
        self._cache_size = cache_size
        if domain is None:
            domain = load_domain(config_dir)
        self.domain = domain
        self.catalogue = m.Catalogue.of({d.code: d.kinds for d in domain.departments.values()})
        self.authority = Authority(
            command=m.COMMAND_DEPARTMENT,
            sources={src: d.code for d in domain.departments.values() for src in d.sources},
        )
        """Who may act on which case (hub.domain.authority): refusals become ``not_permitted``."""
        self._deadlines: dict[tuple[str, str, str, str], CaseDeadlines] = {}
        self._watch_position = 0
        self._watch_log: LogFollower[Notification] | None = None
        self._watch_due: dict[UUID, datetime] = {}
        self._watch_suspended: set[UUID] = set()
        self._known_good: m.Valid | None = None
        """The last event staged without failing: the yardstick of "the event, or the store?"."""

    def construct_mapper(self) -> Mapper[UUID]:
        """Personal fields are sealed with per-person keys before they are recorded (privacy sealing)."""
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=privacy.PrivacyMapper)

    def construct_event_store(self) -> EventStore[UUID]:
        return privacy.install(self.mapper, self.recorder, self._config_dir)

    def register_transcodings(self, transcoder: Any) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(_EnumAsValue(Stage, "case_stage"))
        transcoder.register(_EnumAsValue(Part, "case_part"))

    # ------------------------------------------------------------------ reads
    def get_case(self, case_id: UUID) -> Case:
        case: Case = self.repository.get(case_id)
        return case

    def case_count(self) -> int:
        """Number of cases (created events) in the store; for tests and operators, not a hot path."""
        return sum(1 for _ in self.iter_topics({Case.Reported.TOPIC}))

    def iter_topics(self, topics: Iterable[str], batch: int = 5000) -> Iterable[Any]:
        start = 1
        topics = tuple(topics)
        while True:
            section = self.recorder.select_notifications(start=start, limit=batch, topics=topics)
            if not section:
                return
            yield from section
            start = section[-1].id + 1

    # ------------------------------------------------------------------ writes
    def apply_batch(self, items: Sequence[m.Valid]) -> list[Outcome]:
        """Decide every event against its case and record all new events in one transaction.

        Returns one outcome per item, in order. Raises only on infrastructure failure (nothing
        recorded then; the caller retries the batch, or lets it be redelivered). An event that
        fails by itself is isolated (:meth:`stage_isolating`): ``FAILED``, the rest recorded.
        """
        try:
            try:
                outcomes, touched = self._decide_batch(items, trust_cache=True)
                self._commit(touched)
            except IntegrityError as exc:
                # A conflict means our picture of some case was stale: decide again from the store.
                log.info("batch conflicted (%s); deciding again from the store", exc)
                self._forget(it.case_id for it in items)
                outcomes, touched = self._decide_batch(items, trust_cache=False)
                self._commit(touched)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            self.forget_all()  # a case of the batch may hold half of it
            outcomes, stored = self.stage_isolating(items, trust_cache=False)
            if stored:
                self.recorder.insert_events(stored)
            return outcomes
        self._known_good = items[-1] if items else self._known_good
        return outcomes

    def stage_batch(
        self, items: Sequence[m.Valid], *, trust_cache: bool = True
    ) -> tuple[list[Outcome], list[StoredEvent]]:
        """Decide a batch and map its new events to stored rows, without recording them.

        For a writer that records elsewhere (ops/writer.py: its recorder process commits the rows
        while the next batch is decided here). The case cache then runs ahead of the store: it
        holds what was staged, so the next batch is decided on top of it; when a staged batch is
        not recorded the caller must :meth:`forget_all` and stage every later batch again.
        ``trust_cache=False`` reads every case from the store and creates no case optimistically
        (after a conflict: a reported case existed after all).
        """
        try:
            outcomes, touched = self._decide_batch(items, trust_cache=trust_cache)
        except BaseException:
            self.forget_all()  # cases it touched may hold half a batch: none of it may be staged later
            raise
        events = [event for case in touched.values() for event in case.collect_events()]
        try:
            store = self.events
            assert isinstance(store, privacy.SealingEventStore)
            stored = store.to_stored(events)
        except BaseException:
            self._forget(touched)
            raise
        self._remember(touched)
        return outcomes, stored

    def stage_isolating(
        self,
        items: Sequence[m.Valid],
        *,
        trust_cache: bool = True,
        before_isolating: Callable[[], None] | None = None,
    ) -> tuple[list[Outcome], list[StoredEvent]]:
        """:meth:`stage_batch`, except that an event which fails by itself cannot fail its batch.

        Why: deciding or mapping one event may raise (a time that overflows when its deadlines are
        added, a value a transcoding cannot take); failing the whole batch for it meant the batch
        was redelivered and failed again forever, its valid neighbours never stored. Here a failure
        that is not the store's (:func:`is_infrastructure`) is retried once with every case read
        from the store; if it fails again the batch is split in halves, recursively, until each
        failing event stands alone: its outcome is ``FAILED`` with the exception as the detail (the
        intake dead-letters it), every other event is staged. The store's own failures are raised
        as before (the batch is redelivered; nothing is dead-lettered for an outage), and so is an
        isolated failure when a known-good event also fails alone, or the store cannot be read:
        then it follows no one event. ``before_isolating`` runs once before the retry (the writer
        waits there until what it staged earlier is committed, so the store is current).
        """
        try:
            outcomes, stored = self.stage_batch(items, trust_cache=trust_cache)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            log.warning("deciding a batch of %d failed (%s: %s); isolating the event", len(items),
                        exc.__class__.__name__, exc)  # fmt: skip
        else:
            self._known_good = items[-1] if items else self._known_good
            return outcomes, stored
        if before_isolating is not None:
            before_isolating()
        self.forget_all()
        try:
            outcomes, stored = self.stage_batch(items, trust_cache=False)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
        else:
            self._known_good = items[-1] if items else self._known_good
            return outcomes, stored
        found: list[Outcome | None] = [None] * len(items)
        failures: list[BaseException] = []
        self._bisect(items, list(range(len(items))), found, [], failures)
        if failures:
            if len(items) >= SYSTEMIC_FAILURE_BATCH and len(failures) == len(items):
                # Every one of many events fails alone: the fault follows none of them (a key, a
                # mapper, a bug), and dead-lettering them all would blame the departments. The
                # batch fails and is redelivered, and readiness reports the store.
                raise failures[0]
            self._check_not_the_store(failures[0])
        # The halves above were decided on a cache that a failing half emptied (stage_batch forgets
        # every case when it fails), so their rows may miss steps staged by an earlier half: they
        # only tell which events fail. The others are staged once more, together, from the store
        # (current: the writer let its earlier batches commit before isolating).
        failed = {i for i, o in enumerate(found) if o is not None and o.verdict is Verdict.FAILED}
        survivors = [item for i, item in enumerate(items) if i not in failed]
        self.forget_all()
        decided, rows = self.stage_batch(survivors, trust_cache=False) if survivors else ([], [])
        rest = iter(decided)
        outcomes = []
        for i, item in enumerate(items):
            outcome = found[i] if i in failed else next(rest)
            assert outcome is not None
            outcomes.append(outcome)
            if outcome.verdict is Verdict.FAILED:
                log.error("event %s (case %s) cannot be stored and is dead-lettered: %s",
                          item.envelope.id, item.case_id, outcome.detail)  # fmt: skip
            else:
                self._known_good = item
        return outcomes, rows

    def _bisect(
        self,
        items: Sequence[m.Valid],
        indexes: list[int],
        found: list[Outcome | None],
        rows: list[StoredEvent],
        failures: list[BaseException],
    ) -> None:
        """Stage ``indexes`` of ``items`` in order; halve what fails until each failure is one event."""
        part = [items[i] for i in indexes]
        try:
            outcomes, stored = self.stage_batch(part, trust_cache=True)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            if len(indexes) > 1:
                middle = len(indexes) // 2
                self._bisect(items, indexes[:middle], found, rows, failures)
                self._bisect(items, indexes[middle:], found, rows, failures)
                return
            failures.append(exc)
            (index,) = indexes
            found[index] = Outcome(
                Verdict.FAILED,
                items[index].case_id,
                f"the store writer cannot decide or record this event: {exc.__class__.__name__}: {exc}",
                _field_of(exc),
            )
            return
        for index, outcome in zip(indexes, outcomes, strict=True):
            found[index] = outcome
        rows.extend(stored)

    def _check_not_the_store(self, failure: BaseException) -> None:
        """Raise ``failure`` when it cannot be told from the store's: the store cannot be read, or
        an event known to be good fails alone too (decided afresh from the store, discarded)."""
        try:
            self.recorder.max_notification_id()
            good = self._known_good
            if good is not None:
                _, touched = self._decide_batch([good], trust_cache=False)
                events = [event for case in touched.values() for event in case.collect_events()]
                store = self.events
                assert isinstance(store, privacy.SealingEventStore)
                store.to_stored(events)
        except Exception as exc:
            raise failure from exc

    def forget_all(self) -> None:
        """Drop every cached case: the next decisions read the store (after a batch was not recorded)."""
        self._cache.clear()

    def _commit(self, touched: dict[UUID, Case]) -> None:
        """Record every new event of the batch in one transaction: the event store's ``put``, which is
        what ``save()`` does after its per-aggregate runtime protocol checks (profiled on this path)."""
        events = [event for case in touched.values() for event in case.collect_events()]
        if events:
            try:
                self.events.put(events)
            except BaseException:
                self._forget(touched)
                raise
        self._remember(touched)

    def _remember(self, touched: dict[UUID, Case]) -> None:
        for case_id, case in touched.items():
            self._cache[case_id] = case
            self._cache.move_to_end(case_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _forget(self, case_ids: Iterable[UUID]) -> None:
        for case_id in case_ids:
            self._cache.pop(case_id, None)

    def _case_for(self, case_id: UUID, touched: dict[UUID, Case], trust_cache: bool) -> Case | None:
        case = touched.get(case_id)
        if case is None and trust_cache:
            case = self._cache.get(case_id)
        if case is None:
            try:
                case = self.get_case(case_id)
            except AggregateNotFoundError:
                return None
        touched[case_id] = case
        return case

    def _decide_batch(
        self, items: Sequence[m.Valid], trust_cache: bool
    ) -> tuple[list[Outcome], dict[UUID, Case]]:
        touched: dict[UUID, Case] = {}
        outcomes: list[Outcome] = []
        grids = self._resolve_grids(items)
        authority, command = self.authority, m.COMMAND_DEPARTMENT
        for index, valid in enumerate(items):
            env = valid.envelope
            case_id = valid.case_id
            action = valid.action
            if action is m.Action.REPORTED:
                case = touched.get(case_id) or (self._cache.get(case_id) if trust_cache else None)
                if case is None and not trust_cache:
                    case = self._case_for(case_id, touched, trust_cache)
                if case is None:
                    # Optimistically new: a case that existed after all makes the save conflict.
                    try:
                        if env.department != command:
                            authority.check_identity(env.department, env.actor, env.actorrole)
                            authority.check_source(env.source, env.department)
                        touched[case_id] = self._report(valid, grids.get(index))
                    except NotPermitted as exc:
                        outcomes.append(_not_permitted(case_id, exc))
                    except (CaseRefused, UnknownCategory) as exc:
                        outcomes.append(Outcome(Verdict.REFUSED, case_id, str(exc)))
                    else:
                        outcomes.append(Outcome(Verdict.APPLIED, case_id))
                elif case.has_applied(env.id):
                    outcomes.append(Outcome(Verdict.DUPLICATE, case_id))
                else:
                    touched.setdefault(case_id, case)
                    outcomes.append(
                        Outcome(
                            Verdict.REFUSED,
                            case_id,
                            f"case {env.caseref!r} from {env.source} was already reported "
                            f"(by another event); send updates as other actions",
                        )
                    )
                continue
            case = self._case_for(case_id, touched, trust_cache)
            if case is None:
                outcomes.append(
                    Outcome(
                        Verdict.NOT_FOUND,
                        case_id,
                        f"no case {env.caseref!r} from {env.source} (case id {case_id}); "
                        f"its report must arrive first",
                    )
                )
            elif case.has_applied(env.id):
                outcomes.append(Outcome(Verdict.DUPLICATE, case_id))
            else:
                try:
                    if env.department != command:
                        self._authorise(case, valid)
                    self._command(case, valid, action, touched, trust_cache)
                except NotPermitted as exc:
                    outcomes.append(_not_permitted(case_id, exc))
                except AlreadyDone as exc:  # the step happened already (another source, a stale 督办)
                    outcomes.append(Outcome(Verdict.DUPLICATE, case_id, str(exc)))
                except CaseRefused as exc:
                    outcomes.append(Outcome(Verdict.REFUSED, case_id, str(exc)))
                except ValueError as exc:  # unresolvable reference, unknown category, unroutable …
                    outcomes.append(Outcome(Verdict.REFUSED, case_id, str(exc)))
                else:
                    outcomes.append(Outcome(Verdict.APPLIED, case_id))
        return outcomes, touched

    def _authorise(self, case: Case, valid: m.Valid) -> None:
        """A department's event on an existing case: its identity, its right to this case, and the
        department it acts as (``data.department`` of 签收, 退回, 处置反馈). Raises NotPermitted."""
        env = valid.envelope
        self.authority.check_identity(env.department, env.actor, env.actorrole)
        acting_for = getattr(valid.payload, "department", None)
        self.authority.check_case(case, env.department, acting_for)

    # ------------------------------------------------------------------ closed-loop policies
    def deadlines_for(self, department: str, kind: str, category: str, priority: str) -> CaseDeadlines:
        """The SLA policy bound to one kind of case (memoised: the intake asks on most events)."""
        key = (department, kind, category, priority)
        deadlines = self._deadlines.get(key)
        if deadlines is None:
            deadlines = self.domain.sla.for_case(
                department=department, kind=kind, category=category, priority=priority
            )
            if len(self._deadlines) > 10_000:
                self._deadlines.clear()
            self._deadlines[key] = deadlines
        return deadlines

    def _case_deadlines(self, case: Case) -> CaseDeadlines:
        return self.deadlines_for(case.origin_department, case.kind, case.category, case.priority)

    def _resolve_grids(self, items: Sequence[m.Valid]) -> dict[int, str | None]:
        """网格定位 for every report of the batch that has a location but no grid, in one query."""
        wanted = [
            (i, v.payload.location)
            for i, v in enumerate(items)
            if isinstance(v.payload, m.Reported)  # first: the cheapest test, false for 6 events in 7
            and v.envelope.grid is None
            and v.payload.location is not None
        ]
        if not wanted:
            return {}
        codes = self.domain.grids.resolve_many(
            [loc.lon for _, loc in wanted if loc], [loc.lat for _, loc in wanted if loc]
        )
        return {i: code for (i, _), code in zip(wanted, codes, strict=True)}

    def _report(self, valid: m.Valid, resolved_grid: str | None) -> Case:
        env, p = valid.envelope, valid.payload
        assert isinstance(p, m.Reported)
        self.domain.taxonomies.lookup(env.department, p.category)  # strict taxonomies refuse here
        return Case.report(
            env.case_id,
            **_common(valid),
            source=env.source,
            caseref=env.caseref,
            kind=env.kind,
            category=p.category,
            title=p.title,
            description=p.description,
            priority=p.priority,
            channel=p.channel,
            grid=env.grid or resolved_grid,
            location=m.payload_dict(p.location) if p.location else None,
            reporter=m.payload_dict(p.reporter) if p.reporter else None,
            attachments=p.attachments,
            sla=self.deadlines_for(env.department, env.kind, p.category, p.priority),
        )

    def route(self, case: Case, category: str | None = None) -> tuple[str, ...]:
        """权责清单: the responsible departments of a case (raises Unroutable when none)."""
        code = category or case.category
        info = self.domain.taxonomies.lookup(case.origin_department, code)
        path = self.domain.grids.path(case.grid) if case.grid else ()
        return self.domain.routing.route(code, info, path).departments

    def _command(
        self, case: Case, valid: m.Valid, action: m.Action, touched: dict[UUID, Case], trust_cache: bool
    ) -> None:
        """One closed-loop command on an existing case, with the policies and links it implies."""
        env, payload = valid.envelope, valid.payload
        kwargs: dict[str, Any] = {
            "event_id": env.id,
            "at": env.time,
            "actor": env.actor,
            "department": env.department,
        }
        before = case.stage
        if action in _CLOCKED_ACTIONS:
            category, priority = case.category, case.priority
            if action is m.Action.REGISTERED:
                assert isinstance(payload, m.Registered)
                if payload.category:
                    self.domain.taxonomies.lookup(case.origin_department, payload.category)
                category = payload.category or category
                priority = payload.priority or priority
            kwargs["sla"] = self.deadlines_for(case.origin_department, case.kind, category, priority)
        if action is m.Action.DISPATCHED and AUTO in payload.departments:  # type: ignore[attr-defined]
            assert isinstance(payload, m.Dispatched)
            named = [d for d in payload.departments if d != AUTO]
            routed = self.route(case)
            case.dispatch(**kwargs, departments=[*named, *routed], note=payload.note)
        elif action is m.Action.LINKED:
            self._link(case, valid, touched, trust_cache)
        else:
            _COMMANDS[action](case, valid, kwargs)
        after = case.stage
        if after is before:
            return
        if (
            action is m.Action.REGISTERED
            and after is Stage.REGISTERED
            and case.origin_department in self.domain.routing.auto_dispatch
        ):
            self._auto_dispatch(case, env)
        if after in _CONCLUDED and before not in _CONCLUDED:
            self._propagate_conclusion(case, env, touched, trust_cache)

    def _auto_dispatch(self, case: Case, env: m.Envelope) -> None:
        """Dispatch a just-registered case by the responsibility list (configured per origin department)."""
        try:
            departments = self.route(case)
        except Unroutable:
            if self.domain.routing.on_unroutable == "manual":
                log.info("case %s: no responsibility-list rule, waits for manual dispatch", case.id)
                return
            raise
        case.dispatch(
            event_id=f"{env.id}:route",
            at=env.time,
            actor=SYSTEM_ACTOR,
            department=m.COMMAND_DEPARTMENT,
            departments=departments,
            note="派遣 by the responsibility list (权责清单)",
            sla=self._case_deadlines(case),
        )

    def _link(self, case: Case, valid: m.Valid, touched: dict[UUID, Case], trust_cache: bool) -> None:
        """关联: link this case, and open the target case (or link back to it) in the same batch."""
        env, p = valid.envelope, valid.payload
        assert isinstance(p, m.Linked)
        target_id = p.target.resolve()
        target = self._case_for(target_id, touched, trust_cache) if target_id != case.id else None
        if target is not None:
            self.authority.check_link_target(target, env.department)  # before this case changes
        if target is None and target_id != case.id:
            # Check everything needed to open it before changing this case.
            if not (p.target.source and p.target.caseref):
                raise ValueError(
                    f"target case {target_id} does not exist; name it by source and caseref to open it"
                )
            dept = self.domain.departments.get(p.target_department or "")
            if dept is None:
                raise ValueError(
                    f"target case {p.target.source}/{p.target.caseref} does not exist; "
                    f"target_department must name a configured department to open it "
                    f"(got {p.target_department!r})"
                )
            if env.department != m.COMMAND_DEPARTMENT:  # rule 6: not under another's source
                self.authority.check_source(p.target.source, dept.code, "data.target")
            kind = p.target_kind or dept.kinds[0]
            if kind not in dept.kinds:
                raise ValueError(
                    f"{dept.code} has no record kind {kind!r}; configured: {', '.join(dept.kinds)}"
                )
        case.link(
            **_common(valid),
            relation=p.relation,
            target_id=target_id,
            target_department=p.target_department,
            note=p.note,
        )
        if target is None:
            assert p.target.source and p.target.caseref and p.target_department
            category = p.target_category or case.category
            kind = p.target_kind or self.domain.departments[p.target_department].kinds[0]
            target = Case.report(
                target_id,
                event_id=f"{env.id}:open",
                at=env.time,
                actor=env.actor,
                department=p.target_department,
                source=p.target.source,
                caseref=p.target.caseref,
                kind=kind,
                category=category,
                title=f"{case.title}（{p.relation} from {case.origin_department} {case.caseref}）",
                description=p.note,
                priority=case.priority,
                channel="referral",
                grid=case.grid,
                location=case.location,
                reporter=case.reporter,
                sla=self.deadlines_for(p.target_department, kind, category, case.priority),
            )
            touched[target_id] = target
        inverse = INVERSE[p.relation]
        if not target.is_linked(inverse, case.id) and "link" in target.allowed_commands():
            target.link(
                event_id=f"{env.id}:back",
                at=env.time,
                actor=env.actor,
                department=env.department,
                relation=inverse,
                target_id=case.id,
                target_department=case.origin_department,
                note=p.note,
            )
        if target.is_concluded and target_id in case.awaiting:
            case.conclude_link(
                event_id=f"link:{case.id}:{target_id}:concluded",
                at=env.time,
                actor=SYSTEM_ACTOR,
                department=m.COMMAND_DEPARTMENT,
                target_id=target_id,
                outcome=target.stage.value,
            )

    def _propagate_conclusion(
        self, case: Case, env: m.Envelope, touched: dict[UUID, Case], trust_cache: bool
    ) -> None:
        """A referral or child case concluded: release every case that waits for it (same transaction)."""
        for relation, other_id, _ in case.links:
            if relation not in ("referred_from", "child_of"):
                continue
            other = self._case_for(other_id, touched, trust_cache)
            event_id = f"link:{other_id}:{case.id}:concluded"
            if other is None or case.id not in other.awaiting or other.has_applied(event_id):
                continue
            other.conclude_link(
                event_id=event_id,
                at=env.time,
                actor=SYSTEM_ACTOR,
                department=m.COMMAND_DEPARTMENT,
                target_id=case.id,
                outcome=case.stage.value,
            )

    # ------------------------------------------------------------------ deadline watcher (督办)
    def _follow_deadlines(self) -> None:
        """Bring the deadline index up to date from the notification log (any writer, any process).

        Through the hub's one log follower: on PostgreSQL it never steps past an id that may still
        become visible, which would miss that case's deadline (a missed escalation).
        """
        if self._watch_log is None:
            self._watch_log = LogFollower(self.recorder, _DEADLINE_TOPICS)
        for section in self._watch_log.batches(self._watch_position, 5000):
            for notification in section:
                event = self.mapper.to_domain_event(notification)
                case_id = notification.originator_id
                assert isinstance(case_id, UUID)
                if isinstance(event, Case.Suspended):
                    self._watch_suspended.add(case_id)
                elif isinstance(event, Case.Resumed):
                    self._watch_suspended.discard(case_id)
                if isinstance(event, (Case.Closed, Case.Rejected, Case.Merged)):
                    self._watch_due.pop(case_id, None)
                elif isinstance(event, Case.Extended):
                    self._watch_due[case_id] = event.until
                elif hasattr(event, "due"):
                    due = event.due
                    if due is None:
                        self._watch_due.pop(case_id, None)
                    else:
                        self._watch_due[case_id] = due
            self._watch_position = section[-1].id

    def breach_events(self, now: datetime, limit: int = 10_000) -> list[dict[str, Any]]:
        """Canonical ``escalated`` events (督办) for every deadline passed before ``now``.

        Each has the deterministic id :func:`hub.domain.sla.breach_event_id`, the breach moment as
        its event time, the command centre as department and the hub case id: publish them on NATS
        (the intake applies each once) or hand them to :meth:`apply_batch` directly.
        """
        self._follow_deadlines()
        overdue = sorted(
            (due, case_id)
            for case_id, due in self._watch_due.items()
            if due < now and case_id not in self._watch_suspended
        )
        events: list[dict[str, Any]] = []
        for _, case_id in overdue[:limit]:
            case = self._cache.get(case_id)
            if case is None:
                try:
                    case = self.get_case(case_id)
                except AggregateNotFoundError:
                    continue
            if not case.is_overdue(now) or case.due is None:
                continue
            event_id = breach_event_id(case.id, case.stage.value, case.due)
            if case.has_applied(event_id):
                continue
            limit_name = STAGE_LIMIT_NAMES.get(case.stage.value, case.stage.value)
            events.append(
                m.make_event(
                    id=event_id,
                    source=case.source,
                    department=m.COMMAND_DEPARTMENT,
                    kind=case.kind,
                    action=m.Action.ESCALATED,
                    caseref=case.caseref,
                    actor=WATCHER_ACTOR,
                    actorrole="system",
                    time=case.due,
                    caseid=case.id,
                    data={
                        "reason": f"超期: the {case.stage.value} deadline ({limit_name}) "
                        f"{case.due.isoformat()} passed",
                        "level": min(5, case.breaches + 1),
                        "stage": case.stage.value,
                        "deadline": case.due.isoformat(),
                    },
                )
            )
        return events

    def escalate_overdue(self, now: datetime) -> list[Outcome]:
        """The deadline watcher: escalate every breached deadline exactly once, in one transaction.

        Safe to run any number of times and after restarts (deterministic event ids, idempotent
        receiver). It writes through :meth:`apply_batch`, so run it on the same thread as the
        intake's writer (or publish :meth:`breach_events` instead).
        """
        valids: list[m.Valid] = []
        for event in self.breach_events(now):
            result = m.validate(orjson.dumps(event), self.catalogue)
            if isinstance(result, m.Valid):
                valids.append(result)
            else:
                log.error("deadline watcher built an invalid event %s: %s", event["id"], result)
        return self.apply_batch(valids) if valids else []


SYSTEMIC_FAILURE_BATCH = 8
"""A batch of at least this many events that all fail alone is taken for a fault of the hub, not of
the events: poison arrives mixed with good records, and several poisons alone in one batch are
rare, while a broken key or mapper fails every event of every batch. Below it (a quiet period's
small batches) each failing event is dead-lettered (``hub dlq replay --reason store_failed`` once
the cause is fixed), so a batch of only poison can never be redelivered forever."""


def _not_permitted(case_id: UUID, refusal: NotPermitted) -> Outcome:
    """The outcome of a :class:`NotPermitted` refusal: dead-lettered ``not_permitted`` at once when
    final, else retried first (the dispatch or link that permits it may still be on its way)."""
    verdict = Verdict.NOT_PERMITTED if refusal.final else Verdict.NOT_PERMITTED_YET
    return Outcome(verdict, case_id, str(refusal), refusal.field)


def is_infrastructure(exc: BaseException) -> bool:
    """Is ``exc`` the store's or the machine's (an outage, a full disk, a lost connection), not one
    event's? Those fail the whole batch, to be redelivered; they never dead-letter an event."""
    if isinstance(exc, PersistenceError | OSError | MemoryError):
        return True
    module = type(exc).__module__
    return module.startswith(("sqlite3", "psycopg", "psycopg_pool"))


def _field_of(exc: BaseException) -> str:
    """The field an event-specific failure points at, where the error tells it (a time out of range)."""
    text = str(exc)
    if isinstance(exc, OverflowError) or ("year" in text and "out of range" in text):
        return "time"
    return ""


_CONCLUDED = frozenset(s for s in Stage if s.value in CONCLUDED_STAGES)
"""``Case.is_concluded`` as a set of stages (the property reads the enum's value on every call)."""
_DEADLINE_TOPICS = tuple(
    cls.TOPIC
    for cls in (
        Case.Reported,
        Case.Registered,
        Case.Rejected,
        Case.Merged,
        Case.Dispatched,
        Case.Accepted,
        Case.Returned,
        Case.Handled,
        Case.Verified,
        Case.Closed,
        Case.Extended,
        Case.Suspended,
        Case.Resumed,
    )
)
