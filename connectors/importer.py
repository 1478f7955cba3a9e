"""File import (文件导入): CSV, JSONL or Parquet exports through a connector, resumable.

Why resumable without duplicates: an import of a year of 12345 tickets runs for minutes and may be
killed. Two things make a restart safe: every event id is stable (derived from the row, see each
connector), so anything published twice is dropped by JetStream's dedup window and by the case's
idempotent receiver; and a **checkpoint file** records how many rows were fully acknowledged, so
a restart skips them instead of re-sending the whole file. The checkpoint is written (atomically,
via rename) only after every event of a chunk is acknowledged, so it never runs ahead of the stream.

Rejected rows go to ``<checkpoint>.rejects.jsonl``, written (and fsynced) *before* the checkpoint
that covers them; the checkpoint records the report's length, and a resume cuts the report back to
that length. So a kill at any instant leaves each rejected row listed exactly once.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.base import Connector, PublishFn, RecordResult, submit

FORMATS = ("csv", "jsonl", "parquet")


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("ndjson", "json"):
        return "jsonl"
    if suffix in ("parq", "pq"):
        return "parquet"
    if suffix not in FORMATS:
        raise ValueError(f"{path}: cannot tell the format from {path.suffix!r}; use .csv, .jsonl or .parquet")
    return suffix


def count_rows(path: Path, fmt: str) -> int:
    """Row count for the progress bar (cheap: a line count, or Parquet metadata)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    return max(lines - 1, 0) if fmt == "csv" else lines


class _BadLine:
    """A JSONL line that is not a JSON object: mapped to a rejection, not a crash."""

    def __init__(self, detail: str) -> None:
        self.detail = detail


def read_rows(path: Path, fmt: str, skip: int = 0) -> Iterator[Any]:
    """Rows (dicts) after the first ``skip``; unreadable JSONL lines come through as their error."""
    if fmt == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh)):
                if n >= skip:
                    yield row
    elif fmt == "jsonl":
        with path.open("rb") as fh:
            n = 0
            for line in fh:
                if not line.strip():
                    continue
                if n >= skip:
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield _BadLine(f"not JSON: {exc}")
                n += 1
    else:
        import pyarrow.parquet as pq

        seen = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            if seen + batch.num_rows <= skip:
                seen += batch.num_rows
                continue
            rows = batch.to_pylist()
            start = max(skip - seen, 0)
            seen += batch.num_rows
            yield from rows[start:]


@dataclass
class Checkpoint:
    """Import progress of one file through one connector (JSON next to the data dir)."""

    file: str
    size: int
    mtime_ns: int
    connector: str
    rows_done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    rejects_bytes: int = 0

    @classmethod
    def open(cls, path: Path, data: Path, connector: str) -> Checkpoint:
        """The saved checkpoint when it is for this very file; a fresh one otherwise."""
        stat = data.stat()
        fresh = cls(str(data.resolve()), stat.st_size, stat.st_mtime_ns, connector)
        if path.exists():
            try:
                saved = cls(**orjson.loads(path.read_bytes()))
            except (orjson.JSONDecodeError, TypeError):
                return fresh
            if (saved.file, saved.size, saved.mtime_ns, saved.connector) == (
                fresh.file,
                fresh.size,
                fresh.mtime_ns,
                fresh.connector,
            ):
                return saved
        return fresh

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(orjson.dumps(asdict(self)))
        os.replace(tmp, path)


def default_checkpoint(data: Path, connector: str, state_dir: Path) -> Path:
    return state_dir / f"{data.name}.{connector}.checkpoint.json"


def rejects_path_for(checkpoint_path: Path) -> Path:
    """Where the per-row rejection report of an import lives (next to its checkpoint)."""
    return checkpoint_path.with_suffix(".rejects.jsonl")


async def import_file(
    connector: Connector,
    data: Path,
    publish: PublishFn,
    checkpoint_path: Path,
    *,
    chunk: int = 5000,
    on_chunk: Callable[[int, list[RecordResult]], None] | None = None,
) -> Checkpoint:
    """Import ``data`` from its checkpoint on; ``on_chunk(rows_done, results)`` after each chunk.

    Result indexes are 0-based data-row numbers (row 1 of a CSV is its first line after the header).
    Rejections are appended to :func:`rejects_path_for` ``(checkpoint_path)`` as JSON lines
    ``{"row", "field", "error"}`` with 1-based row numbers.
    """
    fmt = detect_format(data)
    cp = Checkpoint.open(checkpoint_path, data, connector.name)
    report = rejects_path_for(checkpoint_path)
    with report.open("ab") as fh:
        # Lines past the checkpoint belong to a chunk that was never confirmed: it is re-sent.
        fh.truncate(cp.rejects_bytes)
    rows: list[Any] = []

    async def flush() -> None:
        results = await submit(connector, [_unwrap(r) for r in rows], publish, start=cp.rows_done)
        for bad_line, result in zip(rows, results, strict=True):
            if isinstance(bad_line, _BadLine):
                results[result.index - cp.rows_done] = RecordResult(
                    result.index, "rejected", error=bad_line.detail, field=""
                )
        for result in results:
            cp.counts[result.status] = cp.counts.get(result.status, 0) + 1
        cp.rejects_bytes = _append_rejects(report, results)
        cp.rows_done += len(rows)
        cp.save(checkpoint_path)
        rows.clear()
        if on_chunk:
            on_chunk(cp.rows_done, results)

    for row in read_rows(data, fmt, cp.rows_done):
        rows.append(row)
        if len(rows) >= chunk:
            await flush()
    if rows:
        await flush()
    cp.save(checkpoint_path)
    return cp


def _append_rejects(report: Path, results: list[RecordResult]) -> int:
    """Append a chunk's rejections durably; the report's new length goes into the checkpoint."""
    lines = b"".join(
        orjson.dumps({"row": r.index + 1, "field": r.field, "error": r.error}) + b"\n"
        for r in results
        if r.status == "rejected"
    )
    with report.open("ab") as fh:
        if lines:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())
        return fh.tell()


def _unwrap(row: Any) -> Any:
    return None if isinstance(row, _BadLine) else row
