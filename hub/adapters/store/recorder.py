"""The store recorder (记录进程): the store writer's forked child that commits what the writer decided.

Why a process of its own: mapping and inserting a batch is the event store's own work (what the
benchmark's store append measures), and deciding it is the domain's; in one process they took
turns on one core. Here the writer decides and maps batch N+1 while batch N is inserted and
committed, one transaction per batch, in order. After a failure every later batch is skipped until
the writer, having dropped its cache, sends a reset and stages them again: nothing decided on top of
a lost batch is recorded (ADR 0002, session 4).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import cast

import msgspec

from hub.adapters.process import LedgerFactory, exit_with_parent, tune_gc
from hub.adapters.store.wire import Record, Recorded, Reset, WriterError

log = logging.getLogger(__name__)


def start_recorder(open_ledger: LedgerFactory) -> tuple[Connection, int]:
    """Fork the recorder child (before this process opens any store connection) and wait until it
    has opened the store. ``os.fork``, not multiprocessing: the writer is itself a daemonic child."""
    parent, child = multiprocessing.Pipe()
    pid = os.fork()
    if pid == 0:  # the recorder
        parent.close()
        multiprocessing.current_process().name = "hub-store-recorder"
        code = 0
        try:
            _record(child, open_ledger)
        except BaseException:
            log.exception("the store recorder failed")
            code = 1
        finally:
            os._exit(code)
    child.close()
    decoder = msgspec.msgpack.Decoder(Recorded)
    if not parent.poll(60):
        os.kill(pid, signal.SIGKILL)
        raise WriterError("the store recorder did not start within 60s")
    try:
        ready = decoder.decode(parent.recv_bytes())
    except (EOFError, OSError) as exc:
        raise WriterError("the store recorder exited while starting") from exc
    if ready.error:
        raise WriterError(ready.error)
    return parent, pid


def _record(conn: Connection, open_ledger: LedgerFactory) -> None:
    """The recorder's loop: commit each batch the writer sent in one transaction, in order, and answer it."""
    from eventsourcing.persistence import IntegrityError, StoredEvent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()  # dies with the writer
    encoder = msgspec.msgpack.Encoder()
    decoder: msgspec.msgpack.Decoder[Record | Reset] = msgspec.msgpack.Decoder(Record | Reset)
    try:
        ledger = open_ledger()
        store = ledger.recorder  # keep the ledger: collecting it closes the store's connections
    except Exception as exc:
        conn.send_bytes(encoder.encode(Recorded(0, error=f"cannot open the event store: {exc}")))
        return
    tune_gc()
    conn.send_bytes(encoder.encode(Recorded(0)))
    poisoned = False
    while True:
        try:
            request = decoder.decode(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the writer is gone: nothing it sent is acknowledged without our reply
        if isinstance(request, Reset):
            poisoned = False
            continue
        reply = Recorded(request.seq)
        if poisoned:
            reply.skipped = True
        elif request.events:
            try:
                store.insert_events(cast("list[StoredEvent]", request.events))
            except IntegrityError as exc:
                poisoned, reply.error, reply.conflict = True, f"{exc.__class__.__name__}: {exc}", True
            except Exception as exc:
                log.exception("recording a batch failed")
                poisoned, reply.error = True, f"{exc.__class__.__name__}: {exc}"
        try:
            conn.send_bytes(encoder.encode(reply))
        except (BrokenPipeError, OSError):
            return
