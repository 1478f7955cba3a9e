"""The audit-chain follower process (审计链跟随): extends the sha256 chain behind the store writer.

Why its own process (ADR 0005): chaining reads every recorded event back and hashes it — measured
≈ 12 % of the store writer's time per event when the writer did it between batches. The writer is
the intake's bottleneck (it decides and records, one core), while the intake process next to it
uses its core about a third of the time. As a sibling process the follower runs beside the writer
instead of in its turn, and it keeps the writer's transactions free of chain work.

It follows the notification log, so it is correct for any number of writers (a block another
follower appended first just makes this one re-read the head, see ``AuditChain.extend``). It
polls every :data:`POLL_S` (one indexed read when nothing is new), so the chain trails the last
commit by about that much; when its parent closes the pipe it chains what is left and exits.
Started and stopped with the store writer by ``remote.RemoteLedger``; like the writer, it opens the
store with the :data:`LedgerFactory` it is handed (``hub.adapters.process``), not by importing ``ops``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from hub.adapters.audit.chain import follower
from hub.adapters.logs import child_logging
from hub.adapters.process import LedgerFactory, exit_with_parent

log = logging.getLogger(__name__)

POLL_S = 0.2
"""Longest time the chain trails a committed batch (plus the time to chain it)."""
START_TIMEOUT_S = 60.0


def _follow(conn: Connection, open_ledger: LedgerFactory) -> None:
    """The child: chain, then wait for the next poll, until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the intake stops us by closing the pipe
    exit_with_parent()  # a SIGKILLed intake leaves no follower behind
    child_logging("chain")  # identical lines rate-limited (hub/adapters/logs.py)
    try:
        ledger = open_ledger()
    except Exception as exc:
        conn.send(f"cannot open the event store: {exc}")
        return
    extend = follower(ledger.recorder)
    conn.send("ready")
    while True:
        extend()
        try:
            if conn.poll(POLL_S):
                conn.recv()  # any message (or end-of-file, below) means: finish up
                break
        except (EOFError, OSError):
            break
    extend()


class ChainFollower:
    """Handle on the follower process: started with the store writer, stopped with it."""

    def __init__(self, open_ledger: LedgerFactory) -> None:
        self.open_ledger = open_ledger
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # the supervisor and the writer's watcher thread may both restart it
        self.restarts = 0
        self._wanted = False  # started and not stopped: a missing process is to be started again
        """How often :meth:`ensure_running` started it again (``hub_child_restarts_total``)."""

    def start(self) -> None:
        """Start the follower and wait until it has opened the store (errors say why it could not)."""
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_follow,
            args=(child, self.open_ledger),
            name="hub-audit-chain",
            daemon=True,
        )
        process.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            process.kill()
            raise RuntimeError(f"the audit-chain follower did not start within {START_TIMEOUT_S:.0f}s")
        try:
            answer = parent.recv()
        except EOFError:
            process.join(5)
            raise RuntimeError(
                f"the audit-chain follower exited while starting (code {process.exitcode})"
            ) from None
        if answer != "ready":
            process.join(5)
            raise RuntimeError(str(answer))
        self._process, self._conn = process, parent
        self._wanted = True

    def ensure_running(self) -> None:
        """Restart a follower that died (it resumes from the chain's head: nothing is skipped)."""
        with self._lock:
            if self.dead:
                log.warning(
                    "the audit-chain follower exited (code %s); starting it again",
                    None if self._process is None else self._process.exitcode,
                )
                self._close_pipe()
                self._process = None
                self.start()  # raises when it cannot start: the next call tries again
                self.restarts += 1

    @property
    def pid(self) -> int | None:
        """The follower's process id while it runs, else ``None``."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    @property
    def dead(self) -> bool:
        """True when it was started, not stopped, and is not running (the supervisor restarts it)."""
        process = self._process
        return self._wanted and (process is None or not process.is_alive())

    def _close_pipe(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the follower to chain what is left and exit; wait for it (the chain is complete then)."""
        self._wanted = False
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
        self._close_pipe()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                log.error("the audit-chain follower did not finish within %.0fs; killing it", timeout)
                self._process.kill()
                self._process.join(5)
            self._process = None
