"""`hub audit …` and `hub privacy …`: the auditor's and the data-protection officer's commands.

Registered on the `hub` app (ops/cli/app.py, ``ops.cli.audit.register(app)``). What they read and
write is built by the composition root (ops/bootstrap.py: the ledger, the read models, the access
store); the chain head's NATS KV anchor is hub.adapters.audit.anchor.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import orjson
import typer
from rich.table import Table

from hub.adapters.audit import Head, case_history, read_access
from hub.adapters.audit.anchor import ANCHOR_BUCKET, anchor_head, anchor_key, anchored_head
from ops.bootstrap import (
    access_store,
    audit_chain,
    build_ledger,
    connect_nats,
    projection_service,
    stopped_hub_nats,
    views_path,
)
from ops.console import console, err
from ops.settings import Settings

log = logging.getLogger("hub.adapters.audit")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="State directory (event store, read models). Env HUB_DATA_DIR."),
]
StoreUrl = Annotated[str | None, typer.Option("--store-url", help="Event store URL; default HUB_STORE_URL.")]
NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS for the anchored head; default HUB_NATS_URL or the running hub's."),
]
Json = Annotated[bool, typer.Option("--json", help="One JSON document for machines.")]


# ------------------------------------------------------------------------------------ erasure
def erase_everywhere(
    ledger: Any,
    settings: Settings,
    person: str | None,
    case_id: UUID | None,
    reason: str,
    *,
    nats_url: str | None = None,
    mentions: bool = True,
) -> dict[str, Any]:
    """``hub privacy erase``: every place the hub holds the person, in one command.

    1. the keys (the store keeps only ciphertext, the audit chain is untouched) and the
       ``Erasure`` record in the log (hub.adapters.privacy.erasure.erase);
    2. the read models: a running hub's projector applies the record within its poll interval
       (it holds the DuckDB file); with the hub stopped the projector is run here, to the end of
       the log, so the file is masked (and compacted) before this command returns;
    3. the raw events in ``CITY`` and ``CITY_DLQ`` (hub.adapters.privacy), through the running
       hub's NATS, or a nats-server started here on the stopped hub's stream store.
    """
    from hub.adapters.privacy.erasure import plan_erasure

    plan = plan_erasure(ledger.mapper, ledger.recorder, person, case_id, mentions=mentions)
    return carry_out(ledger, settings, plan, reason, nats_url=nats_url)


def carry_out(
    ledger: Any, settings: Settings, plan: Any, reason: str, *, nats_url: str | None = None
) -> dict[str, Any]:
    """Erase what ``plan`` (an ErasurePlan) covers: keys and record, read models, streams."""
    from hub.adapters.privacy.erasure import erase

    # Asked BEFORE the record is written: the running hub's projector compacts its file right
    # after applying it, and a check made meanwhile would find the file free for an instant.
    running = _hub_running(settings)
    person_keys, case_keys = erase(ledger.events, ledger.mapper.sealer, plan, reason)
    report: dict[str, Any] = {
        "keys": person_keys,
        "case_keys": case_keys,
        "cases": len(plan.cases),
        "mentioned": len(plan.mentioned - plan.cases),
        "read_models": _erase_in_read_models(ledger, settings, running),
        "streams": {},
    }
    try:
        done = _erase_in_streams(settings, nats_url, plan.cases | plan.mentioned, plan.values, running)
        report["streams"] = {
            e.stream: f"deleted {len(e.deleted)} of {e.scanned} message(s)"
            + (
                f"; {len(e.pending)} not yet recorded by the intake were kept: run the command again "
                "once it has caught up"
                if e.pending
                else ""
            )
            for e in done
        }
    except Exception as exc:  # the keys are gone already: say what is left, never hide it
        log.exception("erasure: the NATS streams could not be reached")
        report["streams"] = {
            "CITY, CITY_DLQ": f"NOT erased ({exc.__class__.__name__}: {exc}); run the command "
            "again when NATS is reachable"
        }
    return report


def _hub_running(settings: Settings) -> bool:
    """A hub holds this data dir's read models (DuckDB's file lock: another process has it open)."""
    from projections.service import check_not_in_use

    path = views_path(settings)
    if not path.exists():
        return False
    try:
        check_not_in_use(path)
    except RuntimeError:
        return True
    return False


def _erase_in_read_models(ledger: Any, settings: Settings, running: bool) -> str:
    path = views_path(settings)
    if running:
        return "applied by the running hub's projector (it follows the erasure record in the log)"
    if not path.exists():
        return "none yet (built from the store, already erased)"
    service = projection_service(ledger, path)
    try:
        service.catch_up()
    finally:
        service.close()
    return f"masked and compacted ({path})"


def _erase_in_streams(
    settings: Settings, nats_url: str | None, cases: set[str], values: set[str], running: bool
) -> list[Any]:
    from hub.adapters.privacy import erase_from_streams

    url = settings.resolve_nats_url(nats_url)
    embedded = None
    store = settings.data_dir / "nats"
    if not running and not nats_url and not settings.nats_url and store.exists():
        # the hub is stopped: its embedded server's stream store is ours to open
        embedded = stopped_hub_nats(settings)
        url = embedded.url

    async def run() -> list[Any]:
        nc = await asyncio.wait_for(connect_nats(url, "hub-privacy", connect_timeout=2.0), 10)
        try:
            return await erase_from_streams(nc.jetstream(timeout=10), cases, values)
        finally:
            await nc.close()

    try:
        return asyncio.run(asyncio.wait_for(run(), 300))
    finally:
        if embedded is not None:
            embedded.stop()


# ------------------------------------------------------------------------------------ helpers
def _ledger(data_dir: Path | None, store_url: str | None) -> Any:
    return build_ledger(Settings.from_env(data_dir, store_url).store_url)


def _with_nats(data_dir: Path | None, nats_url: str | None, work: Callable[[Any], Any]) -> Any:
    url = Settings.from_env(data_dir).resolve_nats_url(nats_url)

    async def run() -> Any:
        nc = await connect_nats(url, "hub-audit", connect_timeout=2.0)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(asyncio.wait_for(run(), 10))


def parse_case(value: str) -> UUID:
    """A hub case id, or SOURCE/CASEREF (the department's own case number)."""
    from hub.messages import case_id_for

    try:
        return UUID(value)
    except ValueError:
        pass
    source, sep, caseref = value.partition("/")
    if not sep or not source or not caseref:
        raise typer.BadParameter(f"{value!r}: give a case id (UUID) or SOURCE/CASEREF, e.g. citymgmt-dcm/A1")
    return case_id_for(source, caseref)


def _anchor_from(value: str) -> Head:
    text = Path(value).read_text() if Path(value).exists() else value
    try:
        return Head.from_dict(orjson.loads(text))
    except Exception as exc:
        raise typer.BadParameter(
            f"--anchor: expected the JSON printed by `hub audit head --json` ({exc})"
        ) from None


def _dump(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


# ------------------------------------------------------------------------------------ commands
def register(app: typer.Typer) -> None:
    """Add `hub audit` and `hub privacy` to the `hub` app."""
    audit_app = typer.Typer(
        help="Audit (审计): chain verification, case histories, read access log.", no_args_is_help=True
    )
    privacy_app = typer.Typer(
        help="Personal data (个人信息): erasure by key, retention, store key.", no_args_is_help=True
    )
    app.add_typer(audit_app, name="audit")
    app.add_typer(privacy_app, name="privacy")

    @audit_app.command("verify")
    def verify(
        data_dir: DataDir = None,
        store_url: StoreUrl = None,
        nats_url: NatsUrl = None,
        anchor: Annotated[
            str | None,
            typer.Option(help="An external anchor: the JSON of `hub audit head --json`, or a file."),
        ] = None,
        no_nats: Annotated[
            bool, typer.Option("--no-nats", help="Do not fetch the anchored head from NATS.")
        ] = False,
        allow_tail: Annotated[
            bool,
            typer.Option("--allow-tail", help="Events recorded after the last chain block are not an error."),
        ] = False,
        as_json: Json = False,
    ) -> None:
        """Recompute the audit chain from the store; name the first changed row (any kind)."""
        ledger = _ledger(data_dir, store_url)
        chain = audit_chain(ledger)
        head: Head | None = _anchor_from(anchor) if anchor else None
        source = "--anchor" if anchor else ""
        if head is None and not no_nats:
            try:
                head = _with_nats(data_dir, nats_url, lambda js: anchored_head(js, ledger.name))
                source = f"NATS KV {ANCHOR_BUCKET}" if head else ""
            except Exception as exc:
                err.print(
                    f"[yellow]warning:[/yellow] no anchored head from NATS ({exc.__class__.__name__}); "
                    "checking the store against its own chain only"
                )
        report = chain.verify(anchor=head)
        failed = report.finding is not None and not (allow_tail and report.finding.kind == "unchained")
        if as_json:
            _dump({**report.to_dict(), "anchor_source": source, "verified": not failed})
        else:
            console.print(
                f"checked {report.checked} chained events; head at position {report.head.position}: "
                f"{report.head.head}"
            )
            if head is not None:
                state = "matches" if report.anchor_checked and not failed else "NOT confirmed"
                console.print(f"anchored head ({source}) at position {head.position}: {state}")
            if report.finding is not None:
                style = "yellow" if not failed else "red"
                console.print(
                    f"[{style}]{report.finding.kind} at position {report.finding.position}:[/{style}] "
                    f"{report.finding.detail}"
                )
            if not failed:
                console.print("[green]verified: the history is complete and unaltered[/green]")
        raise typer.Exit(1 if failed else 0)

    @audit_app.command("chain")
    def chain_cmd(data_dir: DataDir = None, store_url: StoreUrl = None) -> None:
        """Chain every event recorded since the last block (a running hub's chain follower does this
        every 0.2 s)."""
        ledger = _ledger(data_dir, store_url)
        added = audit_chain(ledger).extend()
        console.print(f"chained {added} events")

    @audit_app.command("head")
    def head_cmd(
        data_dir: DataDir = None,
        store_url: StoreUrl = None,
        nats_url: NatsUrl = None,
        anchor: Annotated[
            bool, typer.Option("--anchor", help="Also put this head into the NATS KV bucket.")
        ] = False,
        as_json: Json = False,
    ) -> None:
        """Print the chain head (position, count, sha256) for a notary; --anchor puts it in NATS KV."""
        ledger = _ledger(data_dir, store_url)
        head = audit_chain(ledger).head()
        revision = None
        if anchor:
            revision = _with_nats(data_dir, nats_url, lambda js: anchor_head(js, head, ledger.name))
        if as_json:
            _dump({**head.to_dict(), **({"kv_revision": revision} if revision else {})})
            return
        console.print(
            f"position {head.position}  events {head.count}  block {head.block}\nsha256 {head.head}"
        )
        if revision:
            console.print(
                f"anchored in NATS KV {ANCHOR_BUCKET}/{anchor_key(ledger.name)} revision {revision}"
            )

    @audit_app.command("history")
    def history_cmd(
        case: Annotated[str, typer.Argument(help="Case id (UUID) or SOURCE/CASEREF.")],
        data_dir: DataDir = None,
        store_url: StoreUrl = None,
        as_json: Json = False,
    ) -> None:
        """A case's complete history from the event store itself: event, actor, role, department, times."""
        case_id = parse_case(case)
        ledger = _ledger(data_dir, store_url)
        entries = case_history(ledger.recorder, ledger.mapper, case_id)
        if not entries:
            err.print(f"[red]error:[/red] no case {case_id} in the event store")
            raise typer.Exit(2)
        if as_json:
            _dump({"case_id": str(case_id), "events": [e.to_dict() for e in entries]})
            return
        table = Table(title=f"case {case_id}")
        for col in ("pos", "v", "event", "actor", "role", "department", "event time", "recorded", "personal"):
            table.add_column(col, overflow="fold")
        for e in entries:
            table.add_row(
                str(e.position or ""),
                str(e.version),
                e.type,
                e.actor,
                e.role,
                e.department,
                e.at.isoformat() if e.at else "",
                e.recorded_at.isoformat() if e.recorded_at else "",
                ", ".join(e.personal_fields),
            )
        console.print(table)

    @audit_app.command("access")
    def access_cmd(
        case: Annotated[str | None, typer.Argument(help="Only this case (UUID or SOURCE/CASEREF).")] = None,
        data_dir: DataDir = None,
        store_url: StoreUrl = None,
        limit: Annotated[int | None, typer.Option(help="At most this many records.")] = None,
        old_records: Annotated[
            bool,
            typer.Option(
                "--old/--no-old",
                help="Also list records written into the event store before issue 15 (a scan of the log).",
            ),
        ] = True,
        as_json: Json = False,
    ) -> None:
        """The read access log: who (role, principal) saw which personal fields of which cases, when,
        and every export; from the access store (``access.sqlite`` / ``hub_access_*`` tables)."""
        case_id = parse_case(case) if case else None
        ledger = _ledger(data_dir, store_url)
        records = read_access(ledger.recorder, ledger.mapper, case_id, limit) if old_records else []
        left = None if limit is None else limit - len(records)
        if left is None or left > 0:
            store = access_store(ledger)
            records += store.read(case_id, left)
            store.close()
        if as_json:
            _dump([r.to_dict() for r in records])
            return
        table = Table()
        for col in ("no", "at", "role", "principal", "cases", "fields", "operation"):
            table.add_column(col, overflow="fold")
        for r in records:
            more = f" (+{len(r.cases) - 3})" if len(r.cases) > 3 else ""
            cases = ", ".join(str(c) for c in r.cases[:3]) + more
            table.add_row(
                f"{r.position}" + (" (event store)" if r.store != "access" else ""),
                r.at.isoformat(),
                r.role,
                r.principal,
                cases or r.scope,
                ", ".join(r.fields),
                r.operation,
            )
        console.print(table)

    @privacy_app.command("erase")
    def erase_cmd(
        person: Annotated[str | None, typer.Argument(help="The person's id number, phone or name.")] = None,
        case: Annotated[
            str | None, typer.Option(help="Erase the reporter of this case (UUID or SOURCE/CASEREF).")
        ] = None,
        reason: Annotated[
            str, typer.Option(help="Recorded with the erasure (no personal data).")
        ] = "right to erasure",
        mentions: Annotated[
            bool,
            typer.Option(
                "--mentions/--no-mentions",
                help="Also shred other cases whose sealed free text names the person's values.",
            ),
        ] = True,
        data_dir: DataDir = None,
        store_url: StoreUrl = None,
        nats_url: NatsUrl = None,
        as_json: Json = False,
    ) -> None:
        """Crypto-shred a person everywhere at once: keys, read models (running hub or not), NATS streams."""
        if not person and not case:
            raise typer.BadParameter("give PERSON or --case")
        settings = Settings.from_env(data_dir, store_url)
        ledger = _ledger(data_dir, store_url)
        report = erase_everywhere(
            ledger, settings, person, parse_case(case) if case else None, reason,
            nats_url=nats_url, mentions=mentions,
        )  # fmt: skip
        if as_json:
            _dump(report)
            return
        console.print(
            f"erased {report['keys']} key(s) of the person and {report['case_keys']} of cases: "
            f"{report['cases']} case(s) they reported, {report['mentioned']} other case(s) naming them"
        )
        console.print(f"read models: {report['read_models']}")
        for name, done in report["streams"].items():
            console.print(f"stream {name}: {done}")

    @privacy_app.command("expire")
    def expire_cmd(
        data_dir: DataDir = None,
        store_url: StoreUrl = None,
        now: Annotated[str | None, typer.Option(help="Pretend it is this ISO time (default: now).")] = None,
        days: Annotated[
            int | None, typer.Option(help="Retention in days (default: privacy.toml [retention]).")
        ] = None,
    ) -> None:
        """Retention by policy: erase the keys of persons whose last report is past the retention period."""
        from hub.adapters.privacy.erasure import ErasurePlan

        settings = Settings.from_env(data_dir, store_url)
        ledger = _ledger(data_dir, store_url)
        sealer = ledger.mapper.sealer
        retention = days if days is not None else sealer.policy.retention_days
        moment = datetime.fromisoformat(now) if now else datetime.now(UTC)
        kids = set(sealer.keyring.expired(retention, moment))
        if not retention or not kids:
            console.print(
                "no retention period configured (privacy.toml [retention] days = 0)"
                if not retention
                else f"no key past {retention} days of retention"
            )
            return
        plan = ErasurePlan(kids, set(sealer.keyring.cases_of(kids)), set(), set())
        report = carry_out(ledger, settings, plan, f"retention {retention} days")
        console.print(
            f"erased {report['keys'] + report['case_keys']} key(s) past {retention} days of retention "
            f"({report['cases']} case(s))"
        )

    @privacy_app.command("erasures")
    def erasures_cmd(data_dir: DataDir = None, store_url: StoreUrl = None, as_json: Json = False) -> None:
        """The record of erasures (key id, when, why): proof for the data-protection officer."""
        ledger = _ledger(data_dir, store_url)
        rows = ledger.mapper.sealer.keyring.erasures()
        if as_json:
            _dump([{"kid": k, "erased_at": t, "reason": r} for k, t, r in rows])
            return
        for kid, at, why in rows:
            console.print(f"{at}  {kid}  {why}")

    @privacy_app.command("new-store-key")
    def new_store_key() -> None:
        """Print a fresh HUB_STORE_KEY (whole-store encryption at rest); keep it out of the data directory."""
        console.print(base64.b64encode(os.urandom(32)).decode())
