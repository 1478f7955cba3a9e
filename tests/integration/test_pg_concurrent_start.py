"""Several hub processes starting at once on a fresh PostgreSQL database all get a working ledger
(PostgreSQL's catalog races on concurrent CREATE … IF NOT EXISTS; the losers retry)."""

from __future__ import annotations

import threading

from ops.bootstrap import build_ledger


def test_concurrent_ledger_start_on_a_fresh_database(pg_database: str) -> None:
    errors: list[BaseException] = []
    ledgers: list[object] = []

    def start() -> None:
        try:
            ledgers.append(build_ledger(pg_database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == [] and len(ledgers) == 4
