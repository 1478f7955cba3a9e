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

Why every row is accounted for: a file is read row by row with its line numbers, and a row the
reader cannot make sense of (bytes that are not UTF-8, a quote that never closes, the wrong number
of columns, a JSONL line that is not JSON) becomes a *rejected row* naming its line, never a
crash and never a row silently merged into its neighbour. So ``rows read = accepted + duplicate +
rejected`` always holds (:meth:`Checkpoint.accounted`), and the rest of the file is imported.
"""

from __future__ import annotations

import csv
import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.base import Connector, PublishFn, RecordResult, submit
from hub import messages as m

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


class UnreadableFile(ValueError):
    """A file with no readable rows at all (a CSV header that cannot be parsed): nothing imported."""


class _BadLine:
    """A row the reader could not read (bad bytes, broken quoting, wrong column count, not JSON):
    it is answered as a rejected row with this detail and ``field``, not a crash."""

    def __init__(self, detail: str, field: str = "") -> None:
        self.detail = detail
        self.field = field


MAX_VALUE_LINES = 100
"""How many physical lines one quoted CSV value may span (multi-line descriptions are common in
ticket exports). A quote still open after that, or at the end of the file, or one that closes
into a row with the wrong number of columns, is an unterminated quote: that one line is rejected
and reading goes on with the next line, so a stray quote never swallows the rows after it."""


def read_rows(path: Path, fmt: str, skip: int = 0) -> Iterator[Any]:
    """Rows (dicts) after the first ``skip``; unreadable rows come through as :class:`_BadLine`."""
    for _, row in read_numbered(path, fmt, skip):
        yield row


def read_numbered(path: Path, fmt: str, skip: int = 0) -> Iterator[tuple[int | None, Any]]:
    """(line number, row) after the first ``skip`` rows. The line is the 1-based physical line the
    row starts on (a CSV header is line 1); None for Parquet, which has no lines."""
    if fmt == "csv":
        yield from _skip(_csv_rows(path), skip)
    elif fmt == "jsonl":
        yield from _skip(_jsonl_rows(path), skip)
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
            for row in rows[start:]:
                yield None, row


def _skip(rows: Iterable[tuple[int | None, Any]], skip: int) -> Iterator[tuple[int | None, Any]]:
    for n, item in enumerate(rows):
        if n >= skip:
            yield item


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                field = m.undecodable_path(line)
                yield number, _BadLine(_not_utf8(number, line[exc.start : exc.end], field), field)
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, _BadLine(f"line {number}: not JSON: {exc}", m.undecodable_path(line))


def _not_utf8(line: int, bad: bytes, column: str = "") -> str:
    where = f"line {line}" + (f", column {column!r}" if column else "")
    return (
        f"{where}: bytes that are not UTF-8 ({bad!r}); convert the file to UTF-8 "
        "(e.g. iconv -f GB18030 -t UTF-8) and import it again"
    )


class _Lines:
    """Physical lines of a file with their numbers, and a push-back for re-reading after a
    quote turned out to be unterminated. Decoded with surrogateescape so a bad byte survives
    parsing and can be pinned on its column."""

    def __init__(self, fh: io.BufferedReader) -> None:
        self._fh = fh
        self._number = 0
        self._back: deque[tuple[int, str, bool]] = deque()

    def next(self) -> tuple[int, str, bool] | None:
        """(line number, text, the bytes were valid UTF-8) or None at the end of the file."""
        if self._back:
            return self._back.popleft()
        raw = self._fh.readline()
        if not raw:
            return None
        self._number += 1
        if self._number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # the UTF-8 byte-order mark Excel writes
        try:
            return self._number, raw.decode("utf-8"), True
        except UnicodeDecodeError:
            return self._number, raw.decode("utf-8", "surrogateescape"), False

    def push_back(self, lines: Iterable[tuple[int, str, bool]]) -> None:
        self._back.extendleft(reversed(list(lines)))


def _parse_record(lines: _Lines) -> tuple[list[tuple[int, str, bool]], list[str] | str] | None:
    """The next CSV record: (its physical lines, its values or why it cannot be parsed), or None
    at the end. A record spans several lines only while a quoted value is open."""
    first = lines.next()
    while first is not None and not first[1].strip():
        first = lines.next()  # blank lines are not rows (as csv.DictReader skips them)
    if first is None:
        return None
    taken = [first]
    while True:
        text = "".join(t for _, t, _ in taken)
        try:
            values = next(csv.reader(io.StringIO(text), strict=True))
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                lines.push_back(taken[1:])
                return taken[:1], "unterminated quote" if len(taken) > 1 else f"malformed quoting ({exc})"
            while True:  # still inside the quoted value: a line without a quote cannot close it
                more = lines.next() if len(taken) < MAX_VALUE_LINES else None
                if more is None:
                    lines.push_back(taken[1:])
                    return taken[:1], "unterminated quote"
                taken.append(more)
                if '"' in more[1]:
                    break
            continue
        return taken, values


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as fh:
        lines = _Lines(fh)
        head = _parse_record(lines)
        if head is None:
            return
        header_lines, header = head
        if isinstance(header, str) or not all(ok for _, _, ok in header_lines):
            problem = header if isinstance(header, str) else "bytes that are not UTF-8"
            raise UnreadableFile(f"{path}: the header (line {header_lines[0][0]}) cannot be read: {problem}")
        width = len(header)
        while (record := _parse_record(lines)) is not None:
            taken, values = record
            number = taken[0][0]
            if isinstance(values, str):
                yield number, _BadLine(f"line {number}: {values}; fix the quoting of this row")
                continue
            if len(values) != width:
                if len(taken) > 1:  # a quote that closed lines later, in the wrong place
                    lines.push_back(taken[1:])
                    yield (
                        number,
                        _BadLine(
                            f"line {number}: unterminated quote (the quoted value opened on this line "
                            f"does not close into a row of {width} columns); fix the quoting of this row"
                        ),
                    )
                else:
                    yield (
                        number,
                        _BadLine(
                            f"line {number}: {len(values)} columns, the header has {width}; "
                            "check the delimiters and quoting of this row"
                        ),
                    )
                continue
            if not all(ok for _, _, ok in taken):
                column, bad = _bad_column(header, values)
                yield number, _BadLine(_not_utf8(number, bad, column), column)
                continue
            yield number, dict(zip(header, values, strict=True))


def _bad_column(header: list[str], values: list[str]) -> tuple[str, bytes]:
    """The first column whose value holds bytes that are not UTF-8 (surrogate-escaped), and them."""
    for name, value in zip(header, values, strict=True):
        escaped = [c for c in value if "\udc80" <= c <= "\udcff"]
        if escaped:
            return name, "".join(escaped[:4]).encode("utf-8", "surrogateescape")
    return "", b""


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

    def accounted(self) -> bool:
        """The import invariant: every row read is accepted, duplicate or rejected, once."""
        return sum(self.counts.values()) == self.rows_done

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
    on_chunk: Callable[[int, list[RecordResult], list[int | None]], None] | None = None,
) -> Checkpoint:
    """Import ``data`` from its checkpoint on; ``on_chunk(rows_done, results, lines)`` after each
    chunk (``lines``: each result's physical line number, None for Parquet).

    Result indexes are 0-based data-row numbers (row 1 of a CSV is its first row after the header;
    a row unreadable as CSV counts as a row too). Rejections are appended to
    :func:`rejects_path_for` ``(checkpoint_path)`` as JSON lines ``{"row", "line", "field",
    "error"}``: the 1-based row number and the physical line it starts on (a CSV header is line 1;
    no ``line`` for Parquet). On return ``rows_done = accepted + duplicate + rejected``.
    """
    fmt = detect_format(data)
    cp = Checkpoint.open(checkpoint_path, data, connector.name)
    report = rejects_path_for(checkpoint_path)
    with report.open("ab") as fh:
        # Lines past the checkpoint belong to a chunk that was never confirmed: it is re-sent.
        fh.truncate(cp.rejects_bytes)
    rows: list[Any] = []
    lines: list[int | None] = []

    async def flush() -> None:
        results = await submit(connector, [_unwrap(r) for r in rows], publish, start=cp.rows_done)
        if len(results) != len(rows):  # submit answers every record; anything else is a bug
            raise RuntimeError(f"{len(rows)} rows but {len(results)} answers; the import stops here")
        for bad_line, result in zip(rows, results, strict=True):
            if isinstance(bad_line, _BadLine):
                results[result.index - cp.rows_done] = RecordResult(
                    result.index, "rejected", error=bad_line.detail, field=bad_line.field
                )
        for result in results:
            cp.counts[result.status] = cp.counts.get(result.status, 0) + 1
        cp.rejects_bytes = _append_rejects(report, results, lines)
        cp.rows_done += len(rows)
        cp.save(checkpoint_path)
        if on_chunk:
            on_chunk(cp.rows_done, results, list(lines))
        rows.clear()
        lines.clear()

    for line, row in read_numbered(data, fmt, cp.rows_done):
        rows.append(row)
        lines.append(line)
        if len(rows) >= chunk:
            await flush()
    if rows:
        await flush()
    cp.save(checkpoint_path)
    return cp


def _append_rejects(report: Path, results: list[RecordResult], numbers: list[int | None]) -> int:
    """Append a chunk's rejections durably; the report's new length goes into the checkpoint.
    ``numbers`` are the rows' physical line numbers (None for Parquet): ``line`` in the report."""
    lines = b"".join(
        orjson.dumps(
            {"row": r.index + 1, "field": r.field, "error": r.error}
            | ({"line": line} if line is not None else {})
        )
        + b"\n"
        for r, line in zip(results, numbers, strict=True)
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
