"""Topology (拓扑): the hub's two streams, their case partitions, and the durables that pull them.

Why a module of its own: what the server holds — ``CITY`` with its partition transform and
retention, ``CITY_DLQ`` beside it, one durable per partition plus the legacy one — is decided here
once, and read by every process that touches the streams (``hub up``, the intake workers, the
cluster tooling, the CLI's dead-letter commands) without pulling in the consumer loop. The rules
for who pulls what are plain functions of two numbers (worker, workers), so scaling the intake
moves no consumer position (ADR 0006).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import NotFoundError

from hub import messages as m

log = logging.getLogger("hub.intake")  # one logger for the intake's modules, named as before the split

DURABLE = "intake"
"""The legacy durable (4-token subjects, and everything not partitioned); partition *k*'s durable
is ``intake-p<k>`` (ADR 0006)."""
PARTITIONS = m.PARTITIONS
PARTITION_TRANSFORM = SubjectTransform(
    src=f"{m.SUBJECT_PREFIX}.*.*.*.*",
    dest=f"{m.SUBJECT_PREFIX}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}"
    f".{{{{partition({PARTITIONS},4)}}}}",
)
"""``city.d.k.a.<casekey>`` is stored as ``city.d.k.a.<partition>``: the server, not each publisher,
computes the partition (nats-server ≥ 2.10 stream subject transform), and the key itself is not
kept. Why drop it: with the key every case is a subject of its own, and JetStream keeps state per
subject and scans them for wildcard filters — measured ≈ 22 µs of server CPU an event with the key
kept, against ≈ 15 without, and per-subject memory that grows with every case ever seen."""
LEGACY_FILTERS = tuple(f"{m.SUBJECT_PREFIX}.{tail}" for tail in ("*", "*.*", "*.*.*", "*.*.*.*.*.>"))
"""What the legacy durable takes: every stored subject except the partitioned five-token ones, so
4-token events keep working and malformed subjects still reach the intake and are dead-lettered.
(A 5-token subject stored before the transform existed, and not ending in a partition number,
would match no durable: the hub never published one — the 5-token form came with the transform.)"""


# --------------------------------------------------------------------------- streams
DEFAULT_MAX_AGE_S = 30 * 86400.0
"""How long ``CITY`` and ``CITY_DLQ`` keep a message unless configured: 30 days. Why bounded: the
raw stream holds personal data (names, phone numbers, ID numbers in clear) that erasure seals in
the event store; the stream is a buffer in front of the store, not the record, so it must forget
within a bounded time. Why 30 days: it outlasts any outage the intake catches up from, and leaves
an operator a month to replay dead letters (``hub dlq replay``)."""


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """The hub's streams; replicas 3 on a cluster (design §9), 1 on the embedded server.

    Retention (``max_age_s``, ``max_bytes``; ``HUB_STREAM_MAX_AGE`` / ``HUB_STREAM_MAX_BYTES``)
    applies to ``CITY`` and ``CITY_DLQ`` alike. The rule at every start (:func:`ensure_streams`):
    a configured value is applied (the configuration is the truth; change it there); an unset one
    keeps what the stream has, so a limit an operator set on the stream (``nats stream edit``)
    survives restarts — except an unbounded age, which becomes :data:`DEFAULT_MAX_AGE_S` (a new
    stream, or one an earlier version reset to "keep forever"). To keep messages forever, say so:
    ``HUB_STREAM_MAX_AGE=unlimited``.
    """

    replicas: int = 1
    duplicate_window_s: float = 120.0
    max_age_s: float | None = None
    """Seconds a message is kept; 0 = unbounded; ``None`` = not configured (see above)."""
    max_bytes: int | None = None
    """Bytes each stream may hold, oldest discarded first; -1 = unbounded; ``None`` = not configured
    (the stream's own, unbounded for a new one)."""

    def __post_init__(self) -> None:
        if self.max_age_s is not None and 0 < self.max_age_s < self.duplicate_window_s:
            raise ValueError(
                f"stream max age {self.max_age_s:g}s is shorter than the duplicate window "
                f"({self.duplicate_window_s:g}s); JetStream refuses that: keep messages longer"
            )

    def retention(self, current: StreamConfig | None = None) -> tuple[float, int]:
        """(max_age, max_bytes) for a stream whose configuration is ``current`` (``None``: new)."""
        age = self.max_age_s
        if age is None:
            kept = (current.max_age or 0.0) if current is not None else 0.0
            age = kept if kept > 0 else DEFAULT_MAX_AGE_S
        size = self.max_bytes
        if size is None:
            size = current.max_bytes if current is not None and current.max_bytes is not None else -1
        return age, size


def city_stream_config(s: StreamSettings, current: StreamConfig | None = None) -> StreamConfig:
    max_age, max_bytes = s.retention(current)
    return StreamConfig(
        name=m.STREAM,
        description="citybrain-hub canonical department events (city.<department>.<kind>.<action>)",
        subjects=[f"{m.SUBJECT_PREFIX}.>"],
        subject_transform=PARTITION_TRANSFORM,
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        duplicate_window=s.duplicate_window_s,
        max_age=max_age,
        max_bytes=max_bytes,
        num_replicas=s.replicas,
    )


def dlq_stream_config(s: StreamSettings, current: StreamConfig | None = None) -> StreamConfig:
    max_age, max_bytes = s.retention(current)
    return StreamConfig(
        name=m.DLQ_STREAM,
        description="citybrain-hub dead letters: events the hub could not apply, with the reason in headers",
        subjects=[f"{m.DLQ_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=s.duplicate_window_s,
        # Stated always: left unset they read back as 0 / -1 and every start of every worker would
        # "update" the stream.
        max_age=max_age,
        max_bytes=max_bytes,
        num_replicas=s.replicas,
    )


async def ensure_streams(js: JetStreamContext, settings: StreamSettings | None = None) -> None:
    """Create the streams, or bring an existing one to the wanted configuration (idempotent).

    An existing ``CITY`` stream of an earlier version gains the partition transform here; what it
    stored before keeps its subjects and is taken by the legacy durable. Retention follows the
    rule of :class:`StreamSettings`: configured values are applied, unset ones keep the stream's."""
    settings = settings or StreamSettings()
    for build in (city_stream_config, dlq_stream_config):
        name = build(settings).name
        try:
            info = await js.stream_info(name)  # type: ignore[arg-type]
        except NotFoundError:
            config = build(settings)
            await js.add_stream(config)
            log.info("created stream %s (%s)", name, _retention_text(config))
            continue
        current = info.config
        config = build(settings, current)
        if (
            current.subjects != config.subjects
            or current.subject_transform != config.subject_transform
            or current.duplicate_window != config.duplicate_window
            or current.max_age != config.max_age
            or current.max_bytes != config.max_bytes
            or current.num_replicas != config.num_replicas
            or current.description != config.description
        ):
            await js.update_stream(config)
            log.info("updated stream %s (%s)", name, _retention_text(config))


def _retention_text(config: StreamConfig) -> str:
    age = f"messages kept {config.max_age / 86400:g} days" if config.max_age else "messages kept forever"
    size = f"at most {config.max_bytes} bytes" if (config.max_bytes or -1) > 0 else "no size limit"
    return f"{age}, {size}"


# --------------------------------------------------------------------------- partitions
def assigned_partitions(worker: int, workers: int, partitions: int = PARTITIONS) -> tuple[int, ...]:
    """Worker ``worker`` of ``workers`` owns the partitions k ≡ worker (mod workers).

    Why a fixed rule and not a negotiation: the partitions' durables keep their positions whoever
    pulls them, so scaling from 1 to 3 workers (restart each with its number) moves no position
    and loses nothing; each worker knows its share from two numbers."""
    return tuple(k for k in range(partitions) if k % workers == worker)


def partition_durable(stem: str, k: int) -> str:
    return f"{stem}-p{k}"


def partition_filter(k: int) -> str:
    return f"{m.SUBJECT_PREFIX}.*.*.*.{k}"
