"""Intake (接入): JetStream ``CITY`` → validate → cases → one store transaction → ack.

The exactly-once argument, step by step:

1. A durable pull consumer hands out a batch; nothing is acknowledged yet.
2. Every event is validated; each valid one is decided against its case in memory.
3. All new case events of the batch are recorded in **one** store transaction.
4. Only then are the messages acknowledged. A crash before the ack makes JetStream redeliver;
   the case recognises the event id it already holds (idempotent receiver) and the redelivered
   message is simply acknowledged. Publishers' retries are deduplicated earlier still, by the
   stream's ``Nats-Msg-Id`` window.

Bad input never blocks the stream and is never dropped: an invalid event is copied to
``CITY_DLQ`` with headers naming the reason, the field, the original subject and sequence, and
only then terminated. An event its case cannot take *yet* (its report is still on the way, or an
earlier step is) is negatively acknowledged with a growing delay and dead-lettered only when the
retries run out. ``hub dlq replay`` re-drives dead letters; the dead letter is deleted only once
its replay has been applied or dead-lettered again.

Where each part lives: :mod:`~hub.intake.topology` (the streams, their case partitions and the
durables), :mod:`~hub.intake.settings` (one worker's settings), :mod:`~hub.intake.consumer` (the
pull-validate-record-answer loop, ``Intake``), :mod:`~hub.intake.dead_letters` (filing, listing and
replaying ``CITY_DLQ``); the nats-py internals its hot path relies on are an adapter,
:mod:`hub.adapters.nats`. The names below are re-exported so that ``from hub.intake import …``
keeps working wherever it is written.
"""

from hub.intake.consumer import PIPELINE as PIPELINE
from hub.intake.consumer import Intake as Intake
from hub.intake.consumer import IntakeStats as IntakeStats
from hub.intake.consumer import ensure_consumer as ensure_consumer
from hub.intake.dead_letters import DeadLetter as DeadLetter
from hub.intake.dead_letters import read_dead_letters as read_dead_letters
from hub.intake.dead_letters import replay_dead_letters as replay_dead_letters
from hub.intake.settings import IntakeSettings as IntakeSettings
from hub.intake.topology import DEFAULT_MAX_AGE_S as DEFAULT_MAX_AGE_S
from hub.intake.topology import DURABLE as DURABLE
from hub.intake.topology import LEGACY_FILTERS as LEGACY_FILTERS
from hub.intake.topology import PARTITION_TRANSFORM as PARTITION_TRANSFORM
from hub.intake.topology import PARTITIONS as PARTITIONS
from hub.intake.topology import StreamSettings as StreamSettings
from hub.intake.topology import assigned_partitions as assigned_partitions
from hub.intake.topology import city_stream_config as city_stream_config
from hub.intake.topology import dlq_stream_config as dlq_stream_config
from hub.intake.topology import ensure_streams as ensure_streams
from hub.intake.topology import partition_durable as partition_durable
from hub.intake.topology import partition_filter as partition_filter
