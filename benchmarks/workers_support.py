"""Shared by the multi-worker bench and the soak: a throw-away PostgreSQL database, ``hub intake``
worker subprocesses, and their processes' memory read from /proc (no psutil in the venv).

Not a benchmark itself (``python -m benchmarks`` runs only the names in its list).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_ADMIN_DSN = os.environ.get("HUB_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
HUB = str(Path(sys.executable).parent / "hub")


def pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be used (the bench then reports itself skipped), or None."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_ADMIN_DSN!r} is unreachable ({exc}); set HUB_BENCH_PG to a superuser DSN"
    return None


@contextmanager
def pg_database(prefix: str = "hub_bench") -> Iterator[str]:
    """A database of its own on the bench's PostgreSQL, dropped afterwards; yields its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    host, port, user = info.get("host", "127.0.0.1"), info.get("port", "5432"), info.get("user", "postgres")
    try:
        yield f"postgresql://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def spawn_workers(
    nats_url: str, store_url: str, workers: int, logs: Path, extra: tuple[str, ...] = ()
) -> list[subprocess.Popen[bytes]]:
    """``hub intake --worker i --workers N`` for i in 0..N-1, output to ``logs/worker-i.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(workers):
        out = (logs / f"worker-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    HUB, "intake", "--nats-url", nats_url, "--store-url", store_url,
                    "--worker", str(i), "--workers", str(workers), *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HUB_DATA_DIR": str(logs / f"var-{i}")},
            )
        )  # fmt: skip
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> list[int | None]:
    """SIGTERM (they ack what they recorded and stop their writers), then wait; kill stragglers."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            codes.append(None)
    return codes


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, oldest first (by pid, as Linux hands them out in order)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after its closing paren
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


def worker_processes(pid: int) -> dict[str, int]:
    """The processes of one ``hub intake`` worker by role: ``intake``, ``writer`` (the store writer,
    started first), ``chain`` (the audit-chain follower, started after it), ``recorder`` (the
    writer's child). multiprocessing's
    resource tracker, when present, is left out."""
    roles = {"intake": pid}
    spawned = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"resource_tracker" in cmdline:
            continue
        spawned.append(child)
    for role, child in zip(("writer", "chain"), spawned, strict=False):
        roles[role] = child
    if "writer" in roles:  # the writer's recorder, forked by it (hub/adapters/store/recorder.py)
        for child in children(roles["writer"])[:1]:
            roles["recorder"] = child
    return roles
