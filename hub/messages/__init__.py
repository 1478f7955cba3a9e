"""The connector contract: canonical envelope, per-action payload schemas and subject names.

Every department system speaks to the hub in one shape: a CloudEvents 1.0 JSON event (规范事件)
with the hub's extensions ``department``, ``grid``, ``actor``, ``caseref`` (design §4). Connectors
import only this package, so it stays light: msgspec and the standard library, no I/O
(msgspec validates an event in ≈ 4 µs where pydantic took ≈ 15: this is the intake's hot path).

Subjects are ``city.<department>.<kind>.<action>``: ``kind`` is the department's own record kind
(``incident``, ``case``, ``psych_crisis``, ``mediation`` …, from configuration) and ``action`` is one
step of the closed loop (上报 reported → 立案 registered → 派遣 dispatched → …), the same for every
department. The CloudEvents ``type`` is ``<kind>.<action>``.

One concept a module, each importing only those above it in this list:

- :mod:`~hub.messages.actions`: the closed-loop steps (闭环环节), :class:`Action`;
- :mod:`~hub.messages.subjects`: subjects (主题), streams, case ids (案件编号), case keys and partitions;
- :mod:`~hub.messages.dead_letters`: the dead-letter stream (死信), its reason codes and headers;
- :mod:`~hub.messages.payloads`: what each step carries (``data`` schemas);
- :mod:`~hub.messages.envelope`: the CloudEvents envelope and the connectors' constructor;
- :mod:`~hub.messages.time_window`: the plausible-time window (可信时间窗) and its grammar;
- :mod:`~hub.messages.catalogue`: the configured departments and their record kinds;
- :mod:`~hub.messages.forensics`: where in a poison message's raw bytes the fault lies;
- :mod:`~hub.messages.validation`: :func:`validate`, the edge check on the intake's hot path;
- :mod:`~hub.messages.wire`: the validated event as handed to the store-writer process.

Callers keep writing ``from hub import messages as m`` and ``m.validate``: the names below are the
contract, re-exported explicitly; the modules are how it is kept.
"""

from hub.messages.actions import Action as Action
from hub.messages.catalogue import Catalogue as Catalogue
from hub.messages.dead_letters import DLQ_PREFIX as DLQ_PREFIX
from hub.messages.dead_letters import DLQ_STREAM as DLQ_STREAM
from hub.messages.dead_letters import H_DELIVERIES as H_DELIVERIES
from hub.messages.dead_letters import H_DETAIL as H_DETAIL
from hub.messages.dead_letters import H_FIELD as H_FIELD
from hub.messages.dead_letters import H_MSG_ID as H_MSG_ID
from hub.messages.dead_letters import H_REASON as H_REASON
from hub.messages.dead_letters import H_REPLAY_OF as H_REPLAY_OF
from hub.messages.dead_letters import H_SEQ as H_SEQ
from hub.messages.dead_letters import H_SUBJECT as H_SUBJECT
from hub.messages.dead_letters import H_TIME as H_TIME
from hub.messages.dead_letters import Reason as Reason
from hub.messages.dead_letters import dlq_subject_for as dlq_subject_for
from hub.messages.dead_letters import printable as printable
from hub.messages.envelope import SPECVERSION as SPECVERSION
from hub.messages.envelope import Envelope as Envelope
from hub.messages.envelope import json_schemas as json_schemas
from hub.messages.envelope import make_event as make_event
from hub.messages.forensics import split_array as split_array
from hub.messages.forensics import undecodable_path as undecodable_path
from hub.messages.payloads import PAYLOADS as PAYLOADS
from hub.messages.payloads import Accepted as Accepted
from hub.messages.payloads import AwareDatetime as AwareDatetime
from hub.messages.payloads import CaseRef as CaseRef
from hub.messages.payloads import Closed as Closed
from hub.messages.payloads import Dispatched as Dispatched
from hub.messages.payloads import Escalated as Escalated
from hub.messages.payloads import Evaluated as Evaluated
from hub.messages.payloads import Extended as Extended
from hub.messages.payloads import Handled as Handled
from hub.messages.payloads import Linked as Linked
from hub.messages.payloads import Location as Location
from hub.messages.payloads import Merged as Merged
from hub.messages.payloads import NonEmpty as NonEmpty
from hub.messages.payloads import Note as Note
from hub.messages.payloads import Person as Person
from hub.messages.payloads import Registered as Registered
from hub.messages.payloads import Rejected as Rejected
from hub.messages.payloads import Reported as Reported
from hub.messages.payloads import Resumed as Resumed
from hub.messages.payloads import Returned as Returned
from hub.messages.payloads import Short as Short
from hub.messages.payloads import Suspended as Suspended
from hub.messages.payloads import Text as Text
from hub.messages.payloads import Token as Token
from hub.messages.payloads import Url as Url
from hub.messages.payloads import Verified as Verified
from hub.messages.payloads import WithReason as WithReason
from hub.messages.payloads import payload_dict as payload_dict
from hub.messages.subjects import CASE_NAMESPACE as CASE_NAMESPACE
from hub.messages.subjects import COMMAND_DEPARTMENT as COMMAND_DEPARTMENT
from hub.messages.subjects import DONE_PREFIX as DONE_PREFIX
from hub.messages.subjects import PARTITIONS as PARTITIONS
from hub.messages.subjects import STREAM as STREAM
from hub.messages.subjects import SUBJECT_PREFIX as SUBJECT_PREFIX
from hub.messages.subjects import case_id_for as case_id_for
from hub.messages.subjects import case_id_of as case_id_of
from hub.messages.subjects import case_key as case_key
from hub.messages.subjects import case_key_of as case_key_of
from hub.messages.subjects import done_subject_for as done_subject_for
from hub.messages.subjects import keyed_subject as keyed_subject
from hub.messages.subjects import partition_of as partition_of
from hub.messages.subjects import public_subject as public_subject
from hub.messages.subjects import subject_for as subject_for
from hub.messages.time_window import DEFAULT_TIME_WINDOW as DEFAULT_TIME_WINDOW
from hub.messages.time_window import TIME_WINDOW_GRAMMAR as TIME_WINDOW_GRAMMAR
from hub.messages.time_window import TimeWindow as TimeWindow
from hub.messages.validation import Invalid as Invalid
from hub.messages.validation import Valid as Valid
from hub.messages.validation import published_as as published_as
from hub.messages.validation import validate as validate
from hub.messages.wire import WireEvent as WireEvent
from hub.messages.wire import from_wire as from_wire
from hub.messages.wire import to_wire as to_wire
