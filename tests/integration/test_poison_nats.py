"""Issue 14, the NATS door: poison published on ``city.*`` is dead-lettered naming its field.

One real nats-server and one intake (with its store-writer process) for the whole module: every
poison class of tests/poison.py is published raw, each between two valid reports. Then, per class,
its dead letter is in CITY_DLQ with the reason and the field; the valid neighbours are all stored;
and the intake is still running (it used to die on the first invalid UTF-8 byte, for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from hub import messages as m
from hub.intake import DeadLetter, IntakeSettings, read_dead_letters
from ops.bootstrap import build_ledger, connect_nats, start_intake
from ops.natsd import EmbeddedNats, free_port
from tests.factories import event
from tests.poison import NOW, POISONS, field_matches
from tests.support import eventually


@dataclass
class Outcome:
    letters: dict[str, DeadLetter] = field(default_factory=dict)
    """Dead letters by the poison's Nats-Msg-Id."""
    stored: list[str] = field(default_factory=list)
    """Neighbour case refs found in the store."""
    neighbours: list[str] = field(default_factory=list)
    intake_running: bool = False
    dead_lettered: int = 0


async def _scenario(tmp: Path) -> Outcome:
    server = EmbeddedNats(
        store_dir=tmp / "nats", port=free_port(), server_name=f"poison-{uuid.uuid4().hex[:6]}"
    )
    server.start()
    out = Outcome()
    store_url = f"sqlite:///{tmp / 'events.sqlite'}"
    try:
        nc = await connect_nats(server.url, "test-poison")
        js = nc.jetstream(timeout=30)
        intake, task = await start_intake(nc, store_url, settings=IntakeSettings())
        try:

            async def neighbour(n: int) -> None:
                ref = f"N-{n}"
                e = event(ref, m.Action.REPORTED, at=NOW - timedelta(minutes=30 + n))
                await js.publish(
                    "city.citymgmt.case.reported", orjson.dumps(e), headers={"Nats-Msg-Id": e["id"]}
                )
                out.neighbours.append(ref)

            for n, (name, subject, raw, _, _) in enumerate(POISONS):
                await neighbour(n)
                await js.publish(subject, raw, headers={"Nats-Msg-Id": f"poison-{name}"})
            # A subject that is not UTF-8 (the server stores any bytes): nats-py cannot publish it,
            # so it goes over a raw connection. It used to end the intake's read loop.
            await asyncio.to_thread(_publish_raw_subject, server.url, b"city.citymgmt.\xff\xfe.reported")
            # A forged replay header on a valid event: it used to fail its whole batch, forever.
            forged = event("N-forged", m.Action.REPORTED, at=NOW - timedelta(minutes=5))
            await js.publish(
                "city.citymgmt.case.reported",
                orjson.dumps(forged),
                headers={"Nats-Msg-Id": forged["id"], m.H_REPLAY_OF: "not-a-sequence"},
            )
            out.neighbours.append("N-forged")
            await neighbour(len(POISONS))  # after every poison: the intake must still be consuming
            await eventually(
                lambda: (
                    intake.stats.dead_lettered >= len(POISONS) + 1
                    and intake.stats.applied >= len(out.neighbours)
                ),
                timeout=120,
            )
            out.intake_running = not task.done()
            out.dead_lettered = intake.stats.dead_lettered
            out.letters = {lt.msg_id: lt for lt in await read_dead_letters(js)}
        finally:
            intake.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)
            await nc.close()
        ledger = build_ledger(store_url)
        for ref in out.neighbours:
            with contextlib.suppress(Exception):
                if ledger.get_case(m.case_id_for("citymgmt-dcm", ref)).stage.value == "reported":
                    out.stored.append(ref)
    finally:
        server.stop()
    return out


def _publish_raw_subject(url: str, subject: bytes) -> None:
    """PUB on ``subject`` over a plain socket (nats-py only takes str subjects)."""
    parts = urlsplit(url)
    connect = {"verbose": True, "pedantic": False, "user": parts.username or "", "pass": parts.password or ""}
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=30) as sock:
        sock.recv(65536)  # INFO
        sock.sendall(b"CONNECT " + orjson.dumps(connect) + b"\r\n")
        sock.sendall(b"PUB " + subject + b" 2\r\n{}\r\nPING\r\n")
        seen = b""
        while b"PONG" not in seen:
            chunk = sock.recv(65536)
            assert chunk and b"-ERR" not in chunk, chunk
            seen += chunk


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return asyncio.run(_scenario(tmp_path_factory.mktemp("poison-nats")))


@pytest.mark.parametrize(
    ("name", "reason", "field_path"), [(p[0], p[3], p[4]) for p in POISONS], ids=[p[0] for p in POISONS]
)
def test_poison_is_dead_lettered_naming_its_field(
    outcome: Outcome, name: str, reason: str, field_path: str
) -> None:
    letter = outcome.letters.get(f"poison-{name}")
    assert letter is not None, f"{name} is not in CITY_DLQ ({sorted(outcome.letters)})"
    assert letter.reason == reason, letter.as_json()
    assert field_matches(field_path, letter.field), letter.as_json()
    assert letter.detail and "\n" not in letter.detail


def test_neighbours_are_stored_and_the_intake_keeps_running(outcome: Outcome) -> None:
    assert outcome.intake_running, "the intake stopped on a poison message"
    assert outcome.stored == outcome.neighbours, "a valid neighbour of a poison was not stored"
    assert outcome.dead_lettered == len(POISONS) + 1 == len(outcome.letters), (
        "something else was dead-lettered"
    )


def test_a_subject_that_is_not_utf8_is_dead_lettered(outcome: Outcome) -> None:
    [letter] = [lt for lt in outcome.letters.values() if "\ufffd" in lt.subject]
    assert letter.subject == "city.citymgmt.\ufffd\ufffd.reported" and letter.reason == "schema"
