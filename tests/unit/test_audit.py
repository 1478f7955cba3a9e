"""Pure parts of audit and privacy: chain links, the privacy policy, path handling (no I/O)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import Notification

from hub.adapters.audit.chain import GENESIS, link
from hub.adapters.privacy.policy import get_path, load_policy, normalise
from hub.adapters.privacy.policy import set_path as _set_path

OID = UUID(int=7)


def _n(id_: int = 1, version: int = 1, topic: str = "t.x.y.v1", state: bytes = b'{"a":1}') -> Notification:
    return Notification(id=id_, originator_id=OID, originator_version=version, topic=topic, state=state)


def test_link_covers_every_part_of_the_row_and_the_previous_link() -> None:
    base = link(GENESIS, _n())
    assert len(base) == 32 and base == link(GENESIS, _n())
    variants = [
        link(GENESIS, _n(id_=2)),
        link(GENESIS, _n(version=2)),
        link(GENESIS, _n(topic="t.x.z.v1")),
        link(GENESIS, _n(state=b'{"a":2}')),
        link(base, _n()),
        link(
            GENESIS,
            Notification(
                id=1, originator_id=UUID(int=8), originator_version=1, topic="t.x.y.v1", state=b'{"a":1}'
            ),
        ),
    ]
    assert len({base, *variants}) == 7


def test_length_prefixes_keep_topic_and_state_apart() -> None:
    assert link(GENESIS, _n(topic="ab", state=b"c")) != link(GENESIS, _n(topic="a", state=b"bc"))


def test_default_policy_seals_reporter_fields_and_sensitive_free_text() -> None:
    policy = load_policy()
    topic = "citybrain.case.reported.v1"
    # issue 15: the free text of every case event is sealed too (a crisis note named a person)
    free = ("title", "description", "attachments", "note", "reason")
    assert policy.paths(topic, {"kind": "case"}) == (
        "reporter.name",
        "reporter.phone",
        "reporter.id_number",
        *free,
    )
    assert "description" in policy.paths(topic, {"kind": "psych_crisis"})
    assert policy.paths("citybrain.case.closed.v1", {"kind": "psych_crisis"}) == free
    state = {"reporter": {"name": "张三", "phone": "138 0000-0000", "id_number": None}}
    assert policy.subject_of(state) == "phone:13800000000"
    assert policy.subject_of({"reporter": None}) is None


def test_normalise_and_paths() -> None:
    assert (
        normalise(" 138-0000 0000 ") == "13800000000"
        and normalise("32010219900101123x") == "32010219900101123X"
    )
    original = {"reporter": {"name": "张三"}}
    state = dict(original)
    _set_path(state, "reporter.name", None)
    assert state == {"reporter": {"name": None}} and original == {"reporter": {"name": "张三"}}
    assert get_path(state, "reporter.name") is None and get_path({"reporter": None}, "reporter.name") is None
