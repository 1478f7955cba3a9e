"""``hub cluster up|down|status``: a 3-node NATS JetStream cluster on loopback (design §9); and
``hub nats users|url``: the NATS users of the embedded server (issue 15, docs/nats.md).

Why a command: trying the hub beyond one machine, or testing its fault tolerance, needs a real
cluster; this starts one from the venv's nats-server with the department accounts, and prints the
URL list that ``HUB_NATS_URL`` takes. ``up`` leaves the servers running in the background (their
pids in ``DATA_DIR/cluster.json``) unless ``--foreground``; ``down`` stops them cleanly.
"""

from __future__ import annotations

import functools
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from ops.cluster import NatsCluster
from ops.console import console, err
from ops.nats_auth import (
    NatsUsersError,
    department_users,
    nats_development_defaults,
    users_file,
    with_credentials,
)
from ops.natsd import NatsStartError
from ops.settings import Settings

ClusterDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the nodes keep their storage and logs; default HUB_DATA_DIR/nats-cluster.",
    ),
]


def _cluster_dir(data_dir: Path | None) -> Path:
    return data_dir.resolve() if data_dir else Settings.from_env().data_dir / "nats-cluster"


def register(app: typer.Typer) -> None:
    cluster_app = typer.Typer(
        help="A local 3-node NATS JetStream cluster (集群) on 127.0.0.1, for trying and testing.",
        no_args_is_help=True,
    )
    app.add_typer(cluster_app, name="cluster")

    @cluster_app.command("up")
    def up(
        data_dir: ClusterDir = None,
        base_port: Annotated[
            int | None,
            typer.Option(
                "--base-port",
                help="Client ports B..B+2, routes B+2000.., monitoring B+4000..; default 4222 when "
                "free, else any free ports.",
            ),
        ] = None,
        foreground: Annotated[
            bool, typer.Option("--foreground", help="Stay attached; Ctrl-C stops the cluster.")
        ] = False,
        no_accounts: Annotated[
            bool,
            typer.Option(
                "--no-accounts",
                help="Without users: anyone may do anything (insecure; for fault tests only).",
            ),
        ] = False,
    ) -> None:
        """Start three routed nats-servers with JetStream and print HUB_NATS_URL for them."""
        where = _cluster_dir(data_dir)
        running = NatsCluster.load(where)
        if running and any(n.pid for n in running.nodes):
            console.print(f"a cluster is already running in {where}:")
            console.print(f"export HUB_NATS_URL={running.urls}")
            return
        # department users: HUB_CONFIG_DIR/nats_users.toml, else the development ones
        plan = functools.partial(
            NatsCluster.plan, where, accounts=not no_accounts, config_dir=Settings.from_env().config_dir
        )
        try:
            if base_port is None:
                try:
                    cluster = plan(4222)
                except NatsStartError:
                    cluster = plan(None)
            else:
                cluster = plan(base_port)
            cluster.start(detach=not foreground)
        except (NatsStartError, NatsUsersError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        console.print(f"[bold green]NATS cluster up[/bold green] ({len(cluster.nodes)} nodes, data: {where})")
        for node in cluster.nodes:
            console.print(
                f"  {node.name}: client 127.0.0.1:{node.port}  route :{node.cluster_port}  "
                f"monitor http://127.0.0.1:{node.monitor_port}/jsz  pid {node.pid}"
            )
        console.print(f"  meta leader: {cluster.meta_leader()}")
        console.print("Point the hub at it (its streams are then created with 3 replicas):")
        console.print(f"export HUB_NATS_URL={cluster.urls}")
        if not foreground:
            console.print(f"stop with: hub cluster down --data-dir {where}")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        console.print("stopping the cluster…")
        cluster.stop()

    @cluster_app.command("down")
    def down(data_dir: ClusterDir = None) -> None:
        """Stop the nodes an earlier ``hub cluster up`` started (SIGTERM; their storage is kept)."""
        where = _cluster_dir(data_dir)
        cluster = NatsCluster.load(where)
        if cluster is None:
            console.print(f"no cluster state in {where}: nothing to stop")
            return
        cluster.stop()
        console.print(f"NATS cluster in {where} stopped (storage kept; remove the directory to start afresh)")

    @cluster_app.command("status")
    def status(data_dir: ClusterDir = None) -> None:
        """Each node's health and the JetStream meta leader."""
        where = _cluster_dir(data_dir)
        cluster = NatsCluster.load(where)
        if cluster is None:
            err.print(f"no cluster state in {where}")
            raise typer.Exit(1)
        for node in cluster.nodes:
            state = "ok" if node.healthy() else "DOWN"
            console.print(f"  {node.name}: {state}  127.0.0.1:{node.port}  pid {node.pid or '-'}")
        console.print(f"  meta leader: {cluster.meta_leader() or 'none'}")
        console.print(f"HUB_NATS_URL={cluster.urls}")

    nats_app = typer.Typer(
        help="The NATS users of the hub's embedded server (部门账号; docs/nats.md).", no_args_is_help=True
    )
    app.add_typer(nats_app, name="nats")

    @nats_app.command("users")
    def users() -> None:
        """Each department user, and whether it still has its development password (no secrets)."""
        settings = Settings.from_env()
        try:
            found = department_users(settings.config_dir)
            weak = " ".join(nats_development_defaults(settings.config_dir))
        except NatsUsersError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        console.print(f"department users from {users_file(settings.config_dir)}:")
        for name in found:
            state = "DEVELOPMENT PASSWORD" if f"NATS user {name} " in weak else "own password"
            console.print(f"  {name:<16} publishes city.{name}.>  ({state})")
        console.print("the hub's own user: generated into DATA_DIR/nats-hub-credentials.json (0600)")

    @nats_app.command("url")
    def url(
        department: Annotated[str, typer.Argument(help="The department whose system connects.")],
        data_dir: Annotated[Path | None, typer.Option("--data-dir", help="The hub's data dir.")] = None,
    ) -> None:
        """The URL a department's system connects with: the embedded server's address (DATA_DIR/
        nats.url, else nats.port) and that department's user and password. It holds the secret:
        hand it over as you would a password."""
        settings = Settings.from_env(data_dir)
        try:
            passwords = department_users(settings.config_dir)
        except NatsUsersError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        if department not in passwords:
            err.print(
                f"[red]error:[/red] no NATS user {department!r} in {users_file(settings.config_dir)} "
                f"(users: {', '.join(passwords)})"
            )
            raise typer.Exit(2)
        ports = sorted(settings.embedded_ports())
        if not ports:
            err.print(f"[red]error:[/red] no embedded NATS in {settings.data_dir}: start `hub up` once")
            raise typer.Exit(1)
        address = f"nats://127.0.0.1:{ports[0]}"
        if settings.nats_url_file.exists():
            address = settings.nats_url_file.read_text().strip()
        console.print(with_credentials(address, department, passwords[department]), markup=False)
