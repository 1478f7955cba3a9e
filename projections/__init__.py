"""Read side (投影): event store notification log → Arrow → DuckDB read models; implements hub.views.

Public entry points (see docs/projections.md):

* :class:`ProjectionService` — the live store + projector + ``hub.views.ReadModels`` for one process;
* :func:`rebuild` — replay into a fresh file and swap it in atomically (``hub replay``);
* :func:`export_parquet` — incremental Parquet partitioned by date and department;
* :func:`query_arrow` — read-only SQL on a consistent snapshot, returning Arrow;
* ``ReadModels.as_of(position=… | time=…)`` — the same read models at a past moment.
"""

from projections.projector import Projector, reader_for, to_arrow
from projections.queries import DuckDBReadModels, Snapshot
from projections.service import (
    ProjectionService,
    as_of_file,
    export_parquet,
    open_read_only,
    query_arrow,
    rebuild,
)
from projections.store import DuckDBTrackingRecorder, ReadModelStore

__all__ = [
    "DuckDBReadModels",
    "DuckDBTrackingRecorder",
    "ProjectionService",
    "Projector",
    "ReadModelStore",
    "Snapshot",
    "as_of_file",
    "export_parquet",
    "open_read_only",
    "query_arrow",
    "reader_for",
    "rebuild",
    "to_arrow",
]
