"""Process start-up shared by the hub's long-running processes (intake, store writer, recorder,
audit-chain follower): garbage-collector tuning, dying with the parent, and the ledger factory a
child process is handed.

Why one place: the intake and the store-writer processes tuned the cyclic garbage collector with
two copies of the same thresholds and calls; a change to one (a new measurement) silently left the
other behind. And the children of ``hub up`` must not import the composition root (``ops``) to
open their store: the parent passes them a :data:`LedgerFactory` instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.application import CaseLedger

GC_THRESHOLDS = (50_000, 20, 100)
"""Cyclic-GC thresholds of the hub's processes (defaults 700, 10, 10)."""

LedgerFactory = Callable[[], "CaseLedger"]
"""What a child process calls to open its own case ledger on the store (装配 stays in ``ops``).

Why a callable and not an import: the writer, its recorder and the chain follower each open the
store themselves, with the configuration the composition root chose; importing ``ops`` from here
to do so made the one import cycle (``ops.bootstrap`` ↔ the writer ↔ the chain follower). The
parent passes a picklable callable as the ``Process`` argument — a module-level function, or a
``functools.partial`` of one with plain arguments (``ops.bootstrap.build_ledger`` with the store
URL and configuration directory) — and the child, unpickling it, calls it."""


def tune_gc() -> None:
    """Freeze the heap built so far and make cyclic garbage collection rarer, process-wide.

    Why: every message and batch allocates many short-lived objects (nats-py's ``Msg``, decoded
    events, domain events, stored rows, futures of acks) that die by reference counting, yet with
    the default thresholds they still trigger a young collection every 700 allocations and,
    regularly, a full one over everything the process holds (configuration, the case cache of up to
    100,000 cases, the API's and projector's state in ``hub up``). The startup heap (modules,
    configuration, the ledger as built) is frozen: never scanned again. Measured: intake-process
    CPU ≈ 35 → 30 µs an event; the writer's batch decisions 47 → 42 µs an event, rebuilding events
    13 → 6 µs. The hot paths create no reference cycles worth collecting often; cycles are still
    collected, in larger, rarer passes."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def exit_with_parent() -> None:
    """In a child process: SIGTERM when the hub process dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG), so no server or helper process outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
