"""What one intake worker is told: its share of the partitions, batch sizes, waits and retries.

Why apart from the consumer loop: ``hub up``, the intake workers, the CLI and the tests build and
check these settings (``ops/settings.py`` fills them from ``HUB_*`` variables and flags) without
the loop; and every rule that a wrong value would break at run time — retries that must outlast a
crashed worker's ack wait, a worker number within the worker count — is checked here, at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.intake.topology import (
    DURABLE,
    LEGACY_FILTERS,
    PARTITIONS,
    assigned_partitions,
    partition_durable,
    partition_filter,
)


@dataclass(frozen=True, slots=True)
class IntakeSettings:
    batch_size: int = 500
    """Messages per pull request, decided and saved in one transaction."""
    linger_s: float = 0.02
    """How long to wait for a batch to fill once its first message arrived (latency bound)."""
    expires_s: float = 1.0
    """Lifetime of one pull request on the server."""
    retry_delays_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    """Backoff for events their case cannot take yet; when exhausted they are dead-lettered."""
    ack_wait_s: float = 30.0
    """How long JetStream waits for an ack before redelivering (e.g. after an intake crash)."""
    max_ack_pending: int = 20_000
    """Per durable."""
    durable: str = DURABLE
    """Name of the legacy durable, and the stem of the partitions' (``<durable>-p<k>``)."""
    worker: int = 0
    """This worker's number, 0 ≤ worker < workers: it pulls the partitions k ≡ worker (mod workers);
    worker 0 also pulls the legacy durable. ``hub up`` is worker 0 of 1 (every partition)."""
    workers: int = 1
    tune_gc: bool = True
    """Freeze the startup heap and make cyclic GC rarer in this process
    (:func:`hub.adapters.process.tune_gc`)."""
    direct_delivery: bool = True
    """Take the intake's messages straight from nats-py's parser
    (:func:`hub.adapters.nats.route_directly`)."""

    def __post_init__(self) -> None:
        # After a crash the dead intake's unacked events come back only after ack_wait, while later
        # events of the same cases arrive at once and wait for them: their retries must outlast it.
        budget = sum(self.retry_delays_s)
        if budget < 2 * self.ack_wait_s:
            raise ValueError(
                f"retry delays add up to {budget:g}s but must be at least twice the ack wait "
                f"({self.ack_wait_s:g}s), or events waiting for a redelivered predecessor after a "
                f"crash are dead-lettered too early; lengthen the delays or shorten the ack wait"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if not 1 <= self.workers <= PARTITIONS:
            raise ValueError(
                f"--workers must be between 1 and {PARTITIONS} (the stream's case partitions), "
                f"not {self.workers}: more workers than partitions would have nothing to do"
            )
        if not 0 <= self.worker < self.workers:
            raise ValueError(
                f"--worker must be between 0 and {self.workers - 1} for {self.workers} workers, "
                f"not {self.worker} (workers are numbered from 0)"
            )

    @property
    def partitions(self) -> tuple[int, ...]:
        """The partitions this worker pulls (see :func:`assigned_partitions`)."""
        return assigned_partitions(self.worker, self.workers)

    def consumers(self) -> list[tuple[str, tuple[str, ...]]]:
        """(durable, filter subjects) of every consumer this worker pulls from, legacy first."""
        plan = [(self.durable, LEGACY_FILTERS)] if self.worker == 0 else []
        for k in self.partitions:
            plan.append((partition_durable(self.durable, k), (partition_filter(k),)))
        return plan
