"""`hub` commands of the connectors: ``hub import`` (files) and ``hub simulate`` (the demo city).

Registered on the main app by ops.cli. Both publish through the real connectors and the JetStream
publisher, so what they do is exactly what a department system pushing the same records would do.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ops.console import console, err
from ops.settings import Settings, SettingsError, time_window


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise typer.BadParameter(f"{text!r}: use e.g. 90s, 30m, 24h or 1d")
    value, unit = float(match[1]), match[2] or "s"
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


async def _jetstream(url: str, name: str) -> tuple[Any, Any]:
    from hub.intake import ensure_streams
    from ops.bootstrap import connect_nats

    nc = await connect_nats(url, name)
    js = nc.jetstream(timeout=10, publish_async_max_pending=4000)
    try:  # department credentials may not touch the JetStream API; the hub created the streams
        from ops.cluster import stream_settings_for

        await asyncio.wait_for(ensure_streams(js, stream_settings_for(nc)), 5)  # R3 stays R3
    except Exception as exc:
        err.print(
            f"[yellow]could not ensure the streams ({exc.__class__.__name__}); assuming they exist[/yellow]"
        )
    return nc, js


def register(app: typer.Typer) -> None:
    """Add this room's commands to the `hub` app."""

    @app.command("import")
    def import_(
        file: Annotated[Path, typer.Argument(help="CSV, JSONL (NDJSON) or Parquet export.")],
        connector: Annotated[
            str,
            typer.Option("--connector", "-c", help="police, citymgmt, health, courts, open311 or tabular."),
        ],
        mapping: Annotated[
            Path | None, typer.Option("--mapping", "-m", help="Mapping file (TOML) for --connector tabular.")
        ] = None,
        checkpoint: Annotated[
            Path | None,
            typer.Option(
                help="Progress file; default <data-dir>/imports/<file>.<connector>.checkpoint.json."
            ),
        ] = None,
        restart: Annotated[
            bool, typer.Option("--restart", help="Ignore the checkpoint, start over.")
        ] = False,
        chunk: Annotated[int, typer.Option(help="Rows per publish round and checkpoint.")] = 5000,
        nats_url: Annotated[
            str | None, typer.Option("--nats-url", help="NATS URL (default: the hub's).")
        ] = None,
        data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Import a department export through a connector: resumable, no duplicates, per-row report.

        Every row is accounted for: rows read = accepted + duplicate + rejected. Rejected rows,
        including those the reader cannot parse (bad bytes, broken quotes, wrong column count), are
        listed with their row and line number and reason (first 20 on screen, all in
        <checkpoint>.rejects.jsonl); the rest of the file is imported. Re-running after an
        interruption continues from the checkpoint; rows published twice are deduplicated by their
        stable event ids.
        """
        from connectors import registry
        from connectors.importer import (
            UnreadableFile,
            count_rows,
            default_checkpoint,
            detect_format,
            import_file,
            rejects_path_for,
        )
        from connectors.publisher import publish_events
        from connectors.tabular import MappingError

        settings = Settings.from_env(data_dir)
        if not file.exists():
            raise typer.BadParameter(f"{file}: no such file")
        try:
            conn = registry.build(connector, mapping, time_window())  # HUB_TIME_WINDOW
            fmt = detect_format(file)
        except (ValueError, MappingError, SettingsError) as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        cp_path = checkpoint or default_checkpoint(file, connector, settings.data_dir / "imports")
        cp_path.parent.mkdir(parents=True, exist_ok=True)
        if restart:
            cp_path.unlink(missing_ok=True)
        rejects_path = rejects_path_for(cp_path)
        total = count_rows(file, fmt)
        shown = 0

        async def main() -> Any:
            nonlocal shown
            nc, js = await _jetstream(settings.resolve_nats_url(nats_url), "hub-import")

            async def publish(events: Sequence[dict[str, Any]]) -> Sequence[Any]:
                return await publish_events(js, events)

            progress = Progress(
                TextColumn(f"importing {file.name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                disable=quiet,
            )
            try:
                with progress:
                    task = progress.add_task("rows", total=total)

                    def on_chunk(done: int, results: list[Any], lines: list[int | None]) -> None:
                        nonlocal shown
                        for r, line in zip(results, lines, strict=True):
                            if r.status == "rejected" and shown < 20:
                                where = f"row {r.index + 1}" + (f" (line {line})" if line else "")
                                field = f" [{r.field}]" if r.field else ""
                                err.print(f"{where}{field}: {r.error}", markup=False, highlight=False)
                                shown += 1
                        progress.update(task, completed=done)

                    return await import_file(conn, file, publish, cp_path, chunk=chunk, on_chunk=on_chunk)
            finally:
                await nc.close()

        try:
            cp = asyncio.run(main())
        except UnreadableFile as exc:  # a CSV header that cannot be read: nothing to import
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        summary = ", ".join(f"{n} {s}" for s, n in sorted(cp.counts.items())) or "nothing"
        # rows read = accepted + duplicate + rejected: every row of the file is in one of them.
        console.print(f"imported {file}: {cp.rows_done} rows ({summary})", markup=False, highlight=False)
        if not cp.accounted():
            err.print(f"[red]error:[/red] the counts do not add up to {cp.rows_done} rows: {cp.counts}")
            raise typer.Exit(1)
        if cp.counts.get("rejected"):
            console.print(f"rejected rows (row, line, field, error): {rejects_path}")

    @app.command()
    def simulate(
        rate: Annotated[
            float, typer.Option(help="Mean new cases per simulated hour (diurnal curve).")
        ] = 120.0,
        duration: Annotated[str, typer.Option(help="Simulated period: 90m, 24h, 1d …")] = "24h",
        speed: Annotated[
            float, typer.Option(help="Simulated seconds per wall second (1800: a day in 48 s; 0: flat out).")
        ] = 1800.0,
        seed: Annotated[int, typer.Option(help="Same seed and start → the same day.")] = 1,
        start: Annotated[
            str | None, typer.Option(help="Simulated start (ISO 8601); default today 00:00 Beijing time.")
        ] = None,
        nats_url: Annotated[
            str | None, typer.Option("--nats-url", help="NATS URL (default: the hub's).")
        ] = None,
        data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Write the native records as JSONL instead of publishing."),
        ] = None,
    ) -> None:
        """Run the demo city: a synthetic day of every department through the real connectors."""
        from connectors.base import CHINA_TZ
        from connectors.publisher import publish_events
        from connectors.simulator import Simulator, iter_records

        sim = Simulator(seed=seed, rate=rate, duration=_duration(duration))
        if start:
            begin = datetime.fromisoformat(start)
            sim.start = begin if begin.tzinfo else begin.replace(tzinfo=CHINA_TZ)
        if out is not None:
            with out.open("wb") as fh:
                for at, name, record in iter_records(sim):
                    fh.write(
                        orjson.dumps({"time": at.isoformat(), "connector": name, "record": record}) + b"\n"
                    )
            console.print(f"wrote {out}")
            return
        settings = Settings.from_env(data_dir)

        async def main() -> dict[str, int]:
            nc, js = await _jetstream(settings.resolve_nats_url(nats_url), "hub-simulate")

            async def publish(events: Sequence[dict[str, Any]]) -> Sequence[Any]:
                return await publish_events(js, events)

            def on_tick(at: datetime, counts: Any) -> None:
                if sys.stderr.isatty():
                    err.print(f"\r{at:%Y-%m-%d %H:%M} {counts['events']} events", end="")

            try:
                return await sim.run(publish, speed=speed or float("inf"), on_tick=on_tick)
            finally:
                await nc.close()

        counts = asyncio.run(main())
        console.print(
            f"simulated {duration} from {sim.start:%Y-%m-%d %H:%M} (seed {seed}): "
            f"{counts['records']} records, "
            f"{counts['events']} events ({counts['accepted']} accepted, {counts['duplicate']} duplicate, "
            f"{counts['rejected']} rejected)"
        )
