"""HUB_STORE_KEY turns on the library's encryption at rest: stored states are opaque without the key."""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import orjson
import pytest

from hub import messages as m
from ops.bootstrap import build_ledger
from ops.settings import store_env
from tests.factories import event


def test_store_key_turns_on_encryption_at_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("HUB_STORE_KEY", key)
    url = f"sqlite:///{tmp_path / 'secret.sqlite'}"
    env = store_env(url)
    assert (env["CIPHER_TOPIC"], env["CIPHER_KEY"]) == ("eventsourcing.cryptography:AESCipher", key)

    ledger = build_ledger(url)
    valid = m.validate(orjson.dumps(event("ENC-1", m.Action.REPORTED)), ledger.catalogue)
    assert isinstance(valid, m.Valid)
    ledger.apply_batch([valid])
    with sqlite3.connect(tmp_path / "secret.sqlite") as db:
        states = [bytes(row[0]) for row in db.execute("select state from stored_events")]
    assert states
    assert not any(b"ENC-1" in state or b"citymgmt" in state for state in states)
    assert ledger.get_case(valid.case_id).caseref == "ENC-1"  # readable with the key

    monkeypatch.delenv("HUB_STORE_KEY")
    assert "CIPHER_KEY" not in store_env(url)
