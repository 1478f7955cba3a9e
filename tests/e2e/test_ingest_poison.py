"""Issue 14, the HTTP door: each poison record of a request is answered alone, its neighbours stored.

One real stack for the module (nats-server, the intake with its store-writer process, uvicorn with
the ingest routes): every poison class is sent once in a JSON array body and once in an NDJSON body,
each between valid records. Per class, the poison is answered ``rejected`` naming its own field at
202-time (a far-future time no longer gets 202 and then poisons the store writer's batch); every
valid neighbour is accepted and stored; a body that cannot be read at all gets a clear 400, never a
500; and the stack keeps serving afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from hub import messages as m
from hub.intake import IntakeSettings
from ops.bootstrap import build_ledger, connect_nats, connector_app, start_intake
from ops.natsd import EmbeddedNats, free_port
from tests.support import eventually

CITYMGMT = {"Authorization": "Bearer dev-citymgmt-token"}
NOW = datetime.now(UTC).replace(microsecond=0)
MARK = b'"POISON"'


def _report(ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "case_no": ref,
        "stage": "report",
        "time": (NOW - timedelta(hours=1)).isoformat(),
        "channel": "supervisor",
        "matter_code": "01001",
        "description": f"井盖破损 {ref}",
        "lon": 118.7,
        "lat": 32.0,
    } | extra


def _raw(record: dict[str, Any], value: bytes) -> bytes:
    """The record as JSON with the value ``"POISON"`` replaced by raw bytes (not JSON-encodable)."""
    return orjson.dumps(record).replace(MARK, value)


# name → (record as raw JSON bytes, the field its rejection must name; "*" = prefix)
POISONS: dict[str, tuple[bytes, str]] = {
    "far_future_time": (orjson.dumps(_report("P-1", time="9999-12-31T23:00:00+08:00")), "time"),
    "year_10000_in_utc": (orjson.dumps(_report("P-2", time="9999-12-31T23:00:00-08:00")), "time"),
    "tomorrow_and_more": (orjson.dumps(_report("P-3", time=(NOW + timedelta(days=2)).isoformat())), "time"),
    "before_1970": (orjson.dumps(_report("P-4", time="1969-12-31T23:59:59+00:00")), "time"),
    "deadline_out_of_range": (
        orjson.dumps(
            _report("P-5", stage="extend", reason="r", until="9999-12-31T23:00:00-08:00", description=None)
        ),
        "until",
    ),
    "invalid_utf8": (_raw(_report("P-6", description="POISON"), b'"ab\xff\xfe"'), "description"),
    "nul_character": (orjson.dumps(_report("P-7", description="a\x00b")), "description"),
    "huge_string": (orjson.dumps(_report("P-8", description="字" * 9000)), "description"),
    "deep_nesting": (_raw(_report("P-9", description="POISON"), b"[" * 3000 + b"]" * 3000), "description*"),
    "shallow_nesting": (_raw(_report("P-10", description="POISON"), b"[" * 50 + b"]" * 50), "description"),
    "number_out_of_range": (_raw(_report("P-11", lat="POISON"), b"1e400"), "lat"),
    "integer_out_of_range": (_raw(_report("P-12", lon="POISON"), b"123456789012345678901234567890"), "lon"),
    "wrong_type_at_depth": (orjson.dumps(_report("P-13", lon={"deg": 118})), "lon"),
    "not_an_object": (b"42", ""),
}


@dataclass
class Outcome:
    array: dict[str, dict[str, Any]] = field(default_factory=dict)
    ndjson: dict[str, dict[str, Any]] = field(default_factory=dict)
    neighbours: dict[str, str] = field(default_factory=dict)  # ref → status, both bodies
    stored: set[str] = field(default_factory=set)
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    after: int = 0


def _bodies() -> tuple[bytes, bytes, list[str], list[str]]:
    """A JSON array and an NDJSON body: neighbour, poison, neighbour, … (the same order in both)."""
    members: list[bytes] = []
    order: list[str] = []
    refs: list[str] = []
    for n, (name, (raw, _)) in enumerate(POISONS.items()):
        refs.append(f"N-{n}")
        members += [orjson.dumps(_report(f"N-{n}")), raw]
        order += [f"N-{n}", name]
    refs.append("N-last")
    members.append(orjson.dumps(_report("N-last")))
    order.append("N-last")
    return b"[" + b",".join(members) + b"]", b"\n".join(members) + b"\n", order, refs


async def _scenario(tmp: Path) -> Outcome:
    server = EmbeddedNats(
        store_dir=tmp / "nats", port=free_port(), server_name=f"ingest-{uuid.uuid4().hex[:6]}"
    )
    server.start()
    out = Outcome()
    store_url = f"sqlite:///{tmp / 'events.sqlite'}"
    try:
        nc = await connect_nats(server.url, "test-ingest-poison")
        intake, task = await start_intake(nc, store_url, settings=IntakeSettings())
        js = nc.jetstream(publish_async_max_pending=4000)
        app = connector_app(js, None)  # type: ignore[arg-type]  # ingest only: no Open311 reads here
        port = free_port()
        web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(web.serve())
        while not web.started:
            await asyncio.sleep(0.02)
        try:
            array, ndjson, order, refs = _bodies()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                for body, ctype, into in (
                    (array, "application/json", out.array),
                    (ndjson, "application/x-ndjson", out.ndjson),
                ):
                    resp = await client.post(
                        "/ingest/citymgmt", content=body, headers={**CITYMGMT, "content-type": ctype}
                    )
                    assert resp.status_code == 202, resp.text
                    for name, result in zip(order, resp.json()["results"], strict=True):
                        if name in POISONS:
                            into[name] = result
                        else:
                            out.neighbours[f"{ctype}:{name}"] = result["status"]
                for body in (b"\xff\xfe\x00garbage", b'[{"case_no": "x",', b'{"a":' + b"[" * 5000):
                    resp = await client.post(
                        "/ingest/citymgmt",
                        content=body,
                        headers={**CITYMGMT, "content-type": "application/json"},
                    )
                    out.unreadable.append((resp.status_code, resp.json().get("error", "")))
                resp = await client.post("/ingest/citymgmt", json=[_report("N-after")], headers=CITYMGMT)
                out.after = resp.status_code
            await eventually(lambda: intake.stats.applied >= len(refs) + 1, timeout=120)
            ledger = build_ledger(store_url)
            for ref in [*refs, "N-after"]:
                with contextlib.suppress(Exception):
                    ledger.get_case(m.case_id_for("citymgmt-dcm", ref))
                    out.stored.add(ref)
        finally:
            web.should_exit = True
            await serving
            intake.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 60)
            await nc.close()
    finally:
        server.stop()
    return out


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    return asyncio.run(_scenario(tmp_path_factory.mktemp("ingest-poison")))


@pytest.mark.parametrize("body", ["array", "ndjson"])
@pytest.mark.parametrize("name", list(POISONS))
def test_poison_record_is_rejected_naming_its_field(outcome: Outcome, name: str, body: str) -> None:
    result = getattr(outcome, body)[name]
    expected = POISONS[name][1]
    assert result["status"] == "rejected", result
    got = result.get("field", "")
    assert got.startswith(expected[:-1]) if expected.endswith("*") else got == expected, result
    assert result["error"], result


def test_neighbours_are_accepted_and_stored(outcome: Outcome) -> None:
    assert set(outcome.neighbours.values()) <= {"accepted", "duplicate"}, outcome.neighbours
    assert sum(s == "accepted" for s in outcome.neighbours.values()) == len(POISONS) + 1  # array first
    assert outcome.stored == {*(f"N-{n}" for n in range(len(POISONS))), "N-last", "N-after"}


def test_unreadable_bodies_get_a_clear_400_and_the_hub_keeps_serving(outcome: Outcome) -> None:
    assert [status for status, _ in outcome.unreadable] == [400, 400, 400]
    assert all("not JSON" in error for _, error in outcome.unreadable), outcome.unreadable
    assert "UTF-8" in outcome.unreadable[0][1]
    assert outcome.after == 202
