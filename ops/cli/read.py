"""`hub` commands of the read side (replay, export, sql); registered on the `hub` app (ops/cli/app.py).

The read models they work on are built by the composition root (ops/bootstrap.py): the projections
package never sees the ledger, only its recorder and the stored-state decoder.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hub.adapters.store.follower import LogFollower
from ops.bootstrap import build_ledger, export_access_log, rebuild_views, views_path
from ops.console import console, err
from ops.settings import Settings

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="State directory (event store, read models). Env HUB_DATA_DIR."),
]


def register(app: typer.Typer) -> None:
    """Add this room's commands to the `hub` app."""
    export_app = typer.Typer(help="Export read models for data teams.", no_args_is_help=True)
    app.add_typer(export_app, name="export")

    @app.command()
    def replay(
        data_dir: DataDir = None,
        store_url: Annotated[str | None, typer.Option("--store-url", help="Event store URL.")] = None,
        until: Annotated[
            str | None,
            typer.Option(
                help="Stop at this position (an integer) or recorded time (ISO 8601): an auditor's copy."
            ),
        ] = None,
        out: Annotated[
            Path | None, typer.Option(help="Write to this file instead of swapping in the live read models.")
        ] = None,
        batch_size: Annotated[
            int | None,
            typer.Option(help="Notifications in the first read (later reads double, up to 65,536)."),
        ] = None,
    ) -> None:
        """Rebuild every read model from the event store into a fresh file, then swap it in atomically."""
        settings = Settings.from_env(data_dir, store_url)
        ledger = build_ledger(settings.store_url)
        last = ledger.recorder.max_notification_id() or 0
        stop: int | None = None
        if until is not None:
            stop = int(until) if until.isdigit() else _position_at(ledger, datetime.fromisoformat(until))
        target = out or views_path(settings)
        total = min(last, stop) if stop is not None else last
        with Progress(
            TextColumn("[bold]replay[/bold]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=err,
        ) as progress:  # fmt: skip
            task = progress.add_task("events", total=total)
            try:
                applied = rebuild_views(
                    ledger, target, until=stop, batch_size=batch_size, swap=out is None,
                    progress=lambda n, pos: progress.update(task, completed=pos),
                )  # fmt: skip
            except RuntimeError as exc:
                err.print(f"[red]error:[/red] {exc}")
                raise typer.Exit(2) from None
        console.print(f"replayed {applied} events into {target}")

    @export_app.command("parquet")
    def export_parquet_cmd(
        out_dir: Annotated[Path, typer.Argument(help="Directory for events/ and cases/ (hive partitions).")],
        data_dir: DataDir = None,
    ) -> None:
        """Write events and cases as Parquet partitioned by date and department (only what is new)."""
        from projections import export_parquet

        settings = Settings.from_env(data_dir)
        try:
            written = export_parquet(views_path(settings), out_dir)
        except Exception as exc:  # a running hub holds the file
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        _record_export(settings, out_dir, written)
        console.print(f"exported {written['events']} events and {written['cases']} case rows to {out_dir}")

    @app.command()
    def sql(
        query: Annotated[str, typer.Argument(help="A read-only SQL query over events, cases, case_links.")],
        output: Annotated[
            str, typer.Option("--format", help="table, csv or json (one object per line).")
        ] = "table",
        data_dir: DataDir = None,
    ) -> None:
        """Run read-only SQL against a consistent snapshot of the read models."""
        from projections import query_arrow

        settings = Settings.from_env(data_dir)
        try:
            result = query_arrow(views_path(settings), query)
        except Exception as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        if output == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(result, sys.stdout.buffer)
        elif output == "json":
            for row in result.to_pylist():
                sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")
        else:
            table = Table(show_lines=False)
            for name in result.column_names:
                table.add_column(name, overflow="fold")
            for row in result.to_pylist():
                table.add_row(*("" if v is None else str(v) for v in row.values()))
            console.print(table)


def _position_at(ledger: Any, when: datetime) -> int:
    """The longest prefix of the log recorded at or before ``when`` (decodes events; auditors only)."""
    position = 0
    for section in LogFollower(ledger.recorder).batches():
        for n in section:
            if ledger.mapper.to_domain_event(n).timestamp > when:
                return position
            position = n.id
    return position


EXPORTED_PERSONAL = ("timeline.actor", "timeline.note")
"""Personal columns an export carries: the events' ``actor`` and ``note`` (reporters never)."""


def _record_export(settings: Settings, out_dir: Path, written: dict[str, int]) -> None:
    """Put the export on the access log (issue 15: exports are recorded), as the OS user running it."""
    import getpass

    try:
        log = export_access_log(settings.store_url)
        scope = f"{written['events']} events, {written['cases']} case rows → {out_dir.resolve()}"
        log.record_export("cli", f"os:{getpass.getuser()}", EXPORTED_PERSONAL, scope, "hub export parquet")
        log.close()
    except Exception as exc:  # the export is written; say plainly that its record is not
        err.print(f"[yellow]warning:[/yellow] the export was not recorded in the access log: {exc}")
