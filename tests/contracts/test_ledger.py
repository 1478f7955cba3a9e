"""The ledger port's contract (``hub.application.ports.Ledger`` and ``PipelinedLedger``), run against
every implementation on every store.

The intake only knows the port: ``apply_batch`` decides and records a batch and answers one
``Outcome`` per event, in order; ``breach_events`` lists the 督办 events of deadlines passed; a
pipelined ledger's ``submit_batch`` does what ``apply_batch`` does from the event loop. The same
cases run against the in-process ``CaseLedger``, the store-writer process's proxy called as the SLA
watcher and tools call it (blocking), and the same proxy driven as the intake drives it
(``submit_batch`` on its event loop), each on SQLite and on PostgreSQL.

Why one subject per implementation and store (module scope), each case on cases of its own: a
store writer takes seconds to start, and the contract is about what a ledger answers, not about a
fresh store (reopening one is a case of its own, ``test_results_survive_reopening_the_store``).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from hub import messages as m
from hub.adapters.config.loading import load_catalogue
from hub.application.outcome import Outcome, Verdict
from hub.application.ports import Ledger, PipelinedLedger

# The one place naming the ledgers' constructors (the fixtures use these names only): when the
# store writer moves to hub/adapters/store/, these two imports change and nothing else.
from ops.bootstrap import build_ledger as in_process_ledger
from ops.bootstrap import writer_process_ledger
from tests.factories import LIFECYCLE, T0, case_history, event

CALL_TIMEOUT_S = 120.0
CATALOGUE = load_catalogue()


# ---------------------------------------------------------------- the implementations under test
class OnItsLoop:
    """A pipelined ledger driven as the intake drives it: every batch through ``submit_batch`` on
    the event loop that owns it (a thread of its own here), the blocking calls from other threads.
    It is itself a plain ``Ledger``, so the same cases run against it."""

    def __init__(self, ledger: PipelinedLedger) -> None:
        self.ledger = ledger
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="intake-loop", daemon=True)
        self._thread.start()

    def submit_all(self, batches: Sequence[Sequence[m.Valid]]) -> list[list[Outcome]]:
        """Every batch submitted at once, without waiting in between; their outcomes."""

        async def submit() -> list[list[Outcome]]:
            return list(await asyncio.gather(*(self.ledger.submit_batch(b) for b in batches)))

        return asyncio.run_coroutine_threadsafe(submit(), self.loop).result(CALL_TIMEOUT_S)

    def apply_batch(self, items: Sequence[m.Valid]) -> list[Outcome]:
        return self.submit_all([items])[0]

    def breach_events(self, now: datetime) -> list[dict[str, Any]]:
        return self.ledger.breach_events(now)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


@contextmanager
def _opened(ledger: Any) -> Iterator[Ledger]:
    try:
        yield ledger
    finally:
        ledger.close()


@contextmanager
def _writer_pipelined(url: str) -> Iterator[Ledger]:
    with _opened(writer_process_ledger(url)) as ledger:
        driven = OnItsLoop(ledger)
        try:
            yield driven
        finally:
            driven.close()


IMPLEMENTATIONS: dict[str, Callable[[str], AbstractContextManager[Ledger]]] = {
    "in-process": lambda url: _opened(in_process_ledger(url)),
    "writer-process": lambda url: _opened(writer_process_ledger(url)),
    "writer-pipelined": _writer_pipelined,
}


class Subject:
    """One ledger under test on one store, reopened on demand (a restart of the process)."""

    def __init__(self, open_ledger: Callable[[str], AbstractContextManager[Ledger]], url: str) -> None:
        self._open, self.url = open_ledger, url
        self._context: AbstractContextManager[Ledger] | None = None
        self.ledger = self._start()

    def _start(self) -> Ledger:
        self._context = self._open(self.url)
        return self._context.__enter__()

    def reopen(self) -> None:
        self.close()
        self.ledger = self._start()

    def close(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite, and a throw-away PostgreSQL database: the store's URL, for the module's cases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'events.sqlite'}"
    return str(request.getfixturevalue("pg_database_per_module"))


@pytest.fixture(scope="module", params=list(IMPLEMENTATIONS))
def subject(request: pytest.FixtureRequest, store: str) -> Iterator[Subject]:
    opened = Subject(IMPLEMENTATIONS[request.param], store)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture()
def ledger(subject: Subject) -> Ledger:
    return subject.ledger


# ------------------------------------------------------------------------------------ the events
def _ref(what: str) -> str:
    """A case reference no other case of the module uses (the subject is shared)."""
    return f"{what}-{uuid.uuid4().hex[:8]}"


def _valid(raw: dict[str, Any]) -> m.Valid:
    result = m.validate(orjson.dumps(raw), CATALOGUE)
    assert isinstance(result, m.Valid), result
    return result


def _history(caseref: str, steps: int) -> list[m.Valid]:
    return [_valid(e) for e in case_history(caseref, steps)]


def _step(caseref: str, step: int, **kw: Any) -> m.Valid:
    """The ``step``-th action of the closed loop (``LIFECYCLE``) on a city-management case."""
    return _valid(event(caseref, LIFECYCLE[step], n=step, **kw))


def _police(caseref: str, action: m.Action, n: int, data: dict[str, Any], **kw: Any) -> m.Valid:
    """A police event naming a city-management case (its source and case reference copied)."""
    raw = event(caseref, action, n=n, department="police", kind="incident", data=data,
                event_id=f"police:{caseref}:{n}", **kw)  # fmt: skip
    raw["actor"] = "officer:007"
    return _valid(raw)


def _case_id(caseref: str) -> uuid.UUID:
    return m.case_id_for("citymgmt-dcm", caseref)


def _verdicts(outcomes: Sequence[Outcome]) -> list[Verdict]:
    return [o.verdict for o in outcomes]


# ------------------------------------------------------------------------------------- the cases
def test_a_report_then_its_steps_are_applied_in_order(ledger: Ledger) -> None:
    ref = _ref("applied")
    history = _history(ref, 4)  # reported, registered, dispatched, accepted
    outcomes = ledger.apply_batch(history)
    assert _verdicts(outcomes) == [Verdict.APPLIED] * 4
    assert {o.case_id for o in outcomes} == {_case_id(ref)}
    later = ledger.apply_batch([_step(ref, 4), _step(ref, 5)])  # handled, verified
    assert _verdicts(later) == [Verdict.APPLIED] * 2


def test_the_same_event_id_again_is_a_duplicate(ledger: Ledger) -> None:
    ref = _ref("duplicate")
    history = _history(ref, 2)
    assert _verdicts(ledger.apply_batch(history)) == [Verdict.APPLIED] * 2
    assert _verdicts(ledger.apply_batch(history)) == [Verdict.DUPLICATE] * 2  # redelivered
    step = _step(ref, 2)
    assert _verdicts(ledger.apply_batch([step, step])) == [Verdict.APPLIED, Verdict.DUPLICATE]


def test_a_refused_transition_is_refused_with_its_reason(ledger: Ledger) -> None:
    ref = _ref("refused")
    ledger.apply_batch(_history(ref, 2))  # registered (立案): not yet dispatched
    (outcome,) = ledger.apply_batch([_step(ref, 6)])  # closed
    assert (outcome.verdict, outcome.case_id) == (Verdict.REFUSED, _case_id(ref))
    assert "cannot close" in outcome.detail and "registered" in outcome.detail
    (again,) = ledger.apply_batch([_step(ref, 6)])
    assert again.verdict is Verdict.REFUSED  # refused events are never recorded: not a duplicate


def test_an_unknown_case_is_not_found(ledger: Ledger) -> None:
    ref = _ref("unknown")
    (outcome,) = ledger.apply_batch([_step(ref, 1)])  # registered, never reported
    assert (outcome.verdict, outcome.case_id) == (Verdict.NOT_FOUND, _case_id(ref))
    assert "its report must arrive first" in outcome.detail


def test_a_department_acting_on_another_departments_case_is_not_permitted(ledger: Ledger) -> None:
    ref = _ref("permitted")
    ledger.apply_batch(_history(ref, 2))
    # Police rejecting (不予立案) a city-management case: not yet, a dispatch may be on its way.
    reject = _police(ref, m.Action.REJECTED, 10, {"reason": "不予立案"}, caseid=_case_id(ref))
    (outcome,) = ledger.apply_batch([reject])
    assert (outcome.verdict, outcome.field) == (Verdict.NOT_PERMITTED_YET, "department")
    assert "police may not act on case" in outcome.detail
    # Dispatched to water and police: police may not act as water, for good.
    dispatch = _step(ref, 2, data={"departments": ["water", "police"]})
    as_water = _police(ref, m.Action.ACCEPTED, 11, {"department": "water"})
    outcomes = ledger.apply_batch([dispatch, as_water])
    assert _verdicts(outcomes) == [Verdict.APPLIED, Verdict.NOT_PERMITTED]
    assert outcomes[1].field == "data.department" and "police may not act as water" in outcomes[1].detail
    own = _police(ref, m.Action.ACCEPTED, 12, {"department": "police"})
    assert _verdicts(ledger.apply_batch([own])) == [Verdict.APPLIED]


def test_a_batch_with_one_failing_event_records_its_neighbours(ledger: Ledger) -> None:
    ref, missing = _ref("neighbours"), _ref("missing")
    batch = [*_history(ref, 2), _step(missing, 1), _step(ref, 2), _step(ref, 6)]
    assert _verdicts(ledger.apply_batch(batch)) == [
        Verdict.APPLIED, Verdict.APPLIED, Verdict.NOT_FOUND, Verdict.APPLIED, Verdict.REFUSED,
    ]  # fmt: skip
    assert _verdicts(ledger.apply_batch(batch)) == [
        Verdict.DUPLICATE, Verdict.DUPLICATE, Verdict.NOT_FOUND, Verdict.DUPLICATE, Verdict.REFUSED,
    ]  # fmt: skip


def test_results_survive_reopening_the_store(subject: Subject) -> None:
    ref = _ref("reopened")
    history = _history(ref, 3)
    reject = _police(ref, m.Action.REJECTED, 10, {"reason": "不予立案"}, caseid=_case_id(ref))
    before = subject.ledger.apply_batch([*history, reject])
    assert _verdicts(before) == [Verdict.APPLIED] * 3 + [Verdict.NOT_PERMITTED_YET]
    subject.reopen()  # a new process: nothing cached, everything read from the store
    after = subject.ledger.apply_batch([*history, reject, _step(ref, 3)])
    assert _verdicts(after) == [Verdict.DUPLICATE] * 3 + [Verdict.NOT_PERMITTED_YET, Verdict.APPLIED]


def test_breach_events_find_an_overdue_case_once(ledger: Ledger) -> None:
    ref = _ref("overdue")
    case_id = str(_case_id(ref))
    ledger.apply_batch(_history(ref, 3))  # dispatched: the 签收时限 runs

    def breaches(now: datetime) -> list[dict[str, Any]]:
        return [b for b in ledger.breach_events(now) if b.get("caseid") == case_id]

    assert breaches(T0) == []  # not yet due
    (breach,) = breaches(T0 + timedelta(days=30))
    assert breach["id"].startswith(f"sla:{case_id}:dispatched:")
    assert (breach["type"], breach["department"], breach["actor"]) == (
        "case.escalated",
        m.COMMAND_DEPARTMENT,
        "system:sla-watcher",
    )
    assert _verdicts(ledger.apply_batch([_valid(breach)])) == [Verdict.APPLIED]  # 督办 recorded
    assert breaches(T0 + timedelta(days=30)) == []  # found once
    assert _verdicts(ledger.apply_batch([_valid(breach)])) == [Verdict.DUPLICATE]


@pytest.mark.parametrize("subject", ["writer-pipelined"], indirect=True)
def test_batches_submitted_at_once_are_applied_in_call_order(subject: Subject) -> None:
    """``PipelinedLedger.submit_batch``: several batches in the pipe, each step in a later batch
    than the one before it, all applied (a batch applied ahead of its predecessor would find no
    case or refuse the step)."""
    driven = subject.ledger
    assert isinstance(driven, OnItsLoop)
    ref = _ref("pipelined")
    batches = [[_step(ref, i)] for i in range(len(LIFECYCLE))]
    results = driven.submit_all(batches)
    assert [_verdicts(r) for r in results] == [[Verdict.APPLIED]] * len(LIFECYCLE)
