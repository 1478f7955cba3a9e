"""Deciding a batch (批量裁决): every event against its case in memory, one transaction for all.

Why batches: a commit per case costs ≈ 2k commits/s on SQLite and ≈ 600 on PostgreSQL, while one
transaction holding a few hundred cases' events saves ≈ 40k events/s. So the intake hands over a
whole JetStream batch, every event is decided against its case in memory, and all new events of
the batch are recorded in **one** transaction before anything is acknowledged.

Why isolation by bisection: one event that fails by itself (a time that overflows when its
deadlines are added, a value a transcoding cannot take) must not fail its batch forever; the
store's own failures (:func:`is_infrastructure`) must never dead-letter an event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from uuid import UUID

from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent

from hub import messages as m
from hub.application.commands import CommandHandlers
from hub.application.outcome import Outcome, Verdict
from hub.domain import AlreadyDone, Case, CaseRefused, NotPermitted, UnknownCategory

log = logging.getLogger(__name__)

SYSTEMIC_FAILURE_BATCH = 8
"""A batch of at least this many events that all fail alone is taken for a fault of the hub, not of
the events: poison arrives mixed with good records, and several poisons alone in one batch are
rare, while a broken key or mapper fails every event of every batch. Below it (a quiet period's
small batches) each failing event is dead-lettered (``hub dlq replay --reason store_failed`` once
the cause is fixed), so a batch of only poison can never be redelivered forever."""


def is_infrastructure(exc: BaseException) -> bool:
    """Is ``exc`` the store's or the machine's (an outage, a full disk, a lost connection), not one
    event's? Those fail the whole batch, to be redelivered; they never dead-letter an event."""
    if isinstance(exc, PersistenceError | OSError | MemoryError):
        return True
    module = type(exc).__module__
    return module.startswith(("sqlite3", "psycopg", "psycopg_pool"))


def _not_permitted(case_id: UUID, refusal: NotPermitted) -> Outcome:
    """The outcome of a :class:`NotPermitted` refusal: dead-lettered ``not_permitted`` at once when
    final, else retried first (the dispatch or link that permits it may still be on its way)."""
    verdict = Verdict.NOT_PERMITTED if refusal.final else Verdict.NOT_PERMITTED_YET
    return Outcome(verdict, case_id, str(refusal), refusal.field)


def _field_of(exc: BaseException) -> str:
    """The field an event-specific failure points at, where the error tells it (a time out of range)."""
    text = str(exc)
    if isinstance(exc, OverflowError) or ("year" in text and "out of range" in text):
        return "time"
    return ""


class BatchDecisions(CommandHandlers):
    """Apply a batch (decide and record), or decide it for a writer that records elsewhere."""

    _known_good: m.Valid | None
    """The last event decided without failing: the yardstick of "the event, or the store?"."""

    def apply_batch(self, items: Sequence[m.Valid]) -> list[Outcome]:
        """Decide every event against its case and record all new events in one transaction.

        Returns one outcome per item, in order. Raises only on infrastructure failure (nothing
        recorded then; the caller retries the batch, or lets it be redelivered). An event that
        fails by itself is isolated (:meth:`decide_isolating`): ``FAILED``, the rest recorded.
        """
        try:
            try:
                outcomes, touched = self._decide_in_memory(items, trust_cache=True)
                self._commit(touched)
            except IntegrityError as exc:
                # A conflict means our picture of some case was stale: decide again from the store.
                log.info("batch conflicted (%s); deciding again from the store", exc)
                self._forget(it.case_id for it in items)
                outcomes, touched = self._decide_in_memory(items, trust_cache=False)
                self._commit(touched)
        except Exception as exc:
            if is_infrastructure(exc):
                raise
            self.forget_all()  # a case of the batch may hold half of it
            outcomes, stored = self.decide_isolating(items, trust_cache=False)
            if stored:
                self.recorder.insert_events(stored)
            return outcomes
        self._known_good = items[-1] if items else self._known_good
        return outcomes

    def decide_batch(
        self, items: Sequence[m.Valid], *, trust_cache: bool = True
    ) -> tuple[list[Outcome], list[StoredEvent]]:
        """Decide a batch and map its new events to stored rows, without recording them.

        For a writer that records elsewhere (the store writer: its recorder process commits the
        rows while the next batch is decided here). The case cache then runs ahead of the store: it
        holds what was decided, so the next batch is decided on top of it; when a decided batch is
        not recorded the caller must :meth:`forget_all` and decide every later batch again.
        ``trust_cache=False`` reads every case from the store and creates no case optimistically
        (after a conflict: a reported case existed after all).
        """
        try:
            outcomes, touched = self._decide_in_memory(items, trust_cache=trust_cache)
        except BaseException:
            self.forget_all()  # cases it touched may hold half a batch: none of it may be decided on later
            raise
        try:
            stored = self._to_stored(touched)
        except BaseException:
            self._forget(touched)
            raise
        self._remember(touched)
        return outcomes, stored

    def decide_isolating(
        self,
        items: Sequence[m.Valid],
        *,
        trust_cache: bool = True,
        before_isolating: Callable[[], None] | None = None,
    ) -> tuple[list[Outcome], list[StoredEvent]]:
        """:meth:`decide_batch`, except that an event which fails by itself cannot fail its batch.

        Why: deciding or mapping one event may raise (a time that overflows when its deadlines are
        added, a value a transcoding cannot take); failing the whole batch for it meant the batch
        was redelivered and failed again forever, its valid neighbours never stored. Here a failure
        that is not the store's (:func:`is_infrastructure`) is retried once with every case read
        from the store; if it fails again the batch is split in halves, recursively, until each
        failing event stands alone: its outcome is ``FAILED`` with the exception as the detail (the
        intake dead-letters it), every other event is decided. The store's own failures are raised
        as before (the batch is redelivered; nothing is dead-lettered for an outage), and so is an
        isolated failure when a known-good event also fails alone, or the store cannot be read:
        then it follows no one event. ``before_isolating`` runs once before the retry (the writer
        waits there until what it decided earlier is committed, so the store is current).
        """
        try:
            outcomes, stored = self.decide_batch(items, trust_cache=trust_cache)
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
            outcomes, stored = self.decide_batch(items, trust_cache=False)
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
        # The halves above were decided on a cache that a failing half emptied (decide_batch
        # forgets every case when it fails), so their rows may miss steps decided by an earlier
        # half: they only tell which events fail. The others are decided once more, together, from
        # the store (current: the writer let its earlier batches commit before isolating).
        failed = {i for i, o in enumerate(found) if o is not None and o.verdict is Verdict.FAILED}
        survivors = [item for i, item in enumerate(items) if i not in failed]
        self.forget_all()
        decided, rows = self.decide_batch(survivors, trust_cache=False) if survivors else ([], [])
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
        """Decide ``indexes`` of ``items`` in order; halve what fails until each failure is one event."""
        part = [items[i] for i in indexes]
        try:
            outcomes, stored = self.decide_batch(part, trust_cache=True)
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
                _, touched = self._decide_in_memory([good], trust_cache=False)
                self._to_stored(touched)
        except Exception as exc:
            raise failure from exc

    def _decide_in_memory(
        self, items: Sequence[m.Valid], trust_cache: bool
    ) -> tuple[list[Outcome], dict[UUID, Case]]:
        """Decide every event against its case, in order; the new events stay on the cases
        (``touched``) until they are committed or mapped to rows. The hot path."""
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
