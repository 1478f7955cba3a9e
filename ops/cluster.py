"""A 3-node NATS JetStream cluster on loopback, and how the hub sizes its streams for it (design §9).

Why this exists: beyond one machine the hub runs on a NATS cluster with R3 streams, and nothing
home-made does the clustering — NATS's own RAFT groups do. To try and test that on one machine,
``hub cluster up`` starts three nats-server processes from the venv, each with its own storage
and ports, routed to each other, carrying the department accounts generated from the one list of
users (:mod:`ops.nats_auth`: ``HUB_CONFIG_DIR/nats_users.toml``, else the development defaults from
which ``ops/nats/cluster-accounts.conf``, included by the hand-written ``ops/nats/cluster-n*.conf``,
is generated). Production runs the same configuration on three hosts.

Port layout from ``base_port`` B (default 4222, the NATS conventions): clients B+i, routes
B+2000+i, monitoring B+4000+i, for node i = 0, 1, 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from hub.intake import StreamSettings
from ops.nats_auth import CLUSTER_HUB_PASSWORD, NatsAuth, department_users
from ops.nats_auth import HUB_USER as HUB_USER_NAME
from ops.natsd import NatsStartError, free_port, launch_server, port_is_free
from ops.settings import StreamRetention, stream_retention
from ops.settings import stream_replicas as configured_replicas

NATS_DIR = Path(__file__).resolve().parent / "nats"
ACCOUNTS_FILE = NATS_DIR / "cluster-accounts.conf"
CLUSTER_NAME = "city"
HUB_USER = (HUB_USER_NAME, CLUSTER_HUB_PASSWORD)
"""The hub's own user in ops/nats/cluster-accounts.conf and the configurations ``hub cluster up``
generates (a development default for a local cluster: a production cluster sets its own)."""
STATE_FILE = "cluster.json"


# --------------------------------------------------------------------------- stream replicas
def stream_replicas(nc: NATS) -> int:
    """How many replicas the hub's streams get on the server ``nc`` is connected to.

    ``HUB_STREAM_REPLICAS`` decides when set (e.g. 5 on a 5-node cluster, 1 to force single
    copies). Otherwise a server that reports a cluster in its INFO gets 3 (design §9: R3 streams
    survive one node), a lone server 1. Detection reads the INFO the server sent on connect,
    so it costs no request and needs no monitoring port.
    """
    configured = configured_replicas()  # HUB_STREAM_REPLICAS
    if configured is not None:
        return configured
    info: dict[str, Any] = getattr(nc, "_server_info", {}) or {}
    return 3 if info.get("cluster") else 1


def stream_settings_for(nc: NATS, retention: StreamRetention | None = None) -> StreamSettings:
    """The hub's stream settings for the server it is connected to: replicas as above, retention
    ``Settings.stream_retention`` (``HUB_STREAM_MAX_AGE`` / ``HUB_STREAM_MAX_BYTES``; unset: kept
    as the stream has it). Without ``retention`` (one-shot commands) it is read the same way."""
    retention = retention if retention is not None else stream_retention()
    return StreamSettings(
        replicas=stream_replicas(nc), max_age_s=retention.max_age_s, max_bytes=retention.max_bytes
    )


# --------------------------------------------------------------------------- one node
@dataclass
class ClusterNode:
    """One nats-server of the cluster; ``start()`` returns once it accepts connections."""

    name: str
    port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    routes: list[int] = field(default_factory=list)
    accounts: bool = True
    departments: dict[str, str] | None = None
    """Department → password (``HUB_CONFIG_DIR/nats_users.toml``); ``None``: the development ones."""
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None

    @property
    def url(self) -> str:
        user = f"{HUB_USER[0]}:{HUB_USER[1]}@" if self.accounts else ""
        return f"nats://{user}{self.host}:{self.port}"

    def config_text(self) -> str:
        routes = ", ".join(f"nats-route://{self.host}:{p}" for p in self.routes)
        lines = [
            f'server_name: "{self.name}"',
            f"listen: {self.host}:{self.port}",
            f"http: {self.host}:{self.monitor_port}",
            "max_payload: 4MB",
            "jetstream {",
            f'  store_dir: "{self.store_dir / "jetstream"}"',
            "  max_memory_store: 256MB",
            "  max_file_store: 10GB",
            "}",
            "cluster {",
            f"  name: {CLUSTER_NAME}",
            f"  listen: {self.host}:{self.cluster_port}",
            f"  routes: [{routes}]",
            "}",
        ]
        if self.accounts:  # the one list of users (ops/nats_auth.py), as in cluster-accounts.conf
            auth = NatsAuth(CLUSTER_HUB_PASSWORD, self.departments or department_users(None))
            lines.append(auth.accounts_config())
        return "\n".join(lines) + "\n"

    def start(self, *, detach: bool = False, timeout: float = 15.0) -> None:
        """Start the server; ``detach`` leaves it running after this process exits (``hub cluster up``)."""
        self.process = launch_server(
            self.store_dir, self.config_text(), self.host, self.port,
            name=self.name, timeout=timeout, die_with_parent=not detach,
        )  # fmt: skip
        self.pid = self.process.pid

    def kill(self) -> None:
        """SIGKILL, as a crashed host would look to the others (fault tests)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None
        self.pid = None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (the server flushes its storage); SIGKILL after ``timeout``."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        elif self.pid is not None:  # started by an earlier ``hub cluster up``
            _stop_pid(self.pid, timeout)
        self.process = None
        self.pid = None

    def monitor(self, path: str, timeout: float = 2.0) -> dict[str, Any]:
        """GET a monitoring endpoint (``/jsz``, ``/healthz``, ``/varz``) as JSON."""
        with urllib.request.urlopen(f"http://{self.host}:{self.monitor_port}{path}", timeout=timeout) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data

    def healthy(self) -> bool:
        with contextlib.suppress(Exception):
            return self.monitor("/healthz").get("status") == "ok"
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(Exception):  # a zombie of ours counts as gone
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _stop_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the cluster
@dataclass
class NatsCluster:
    """Three routed nats-servers with JetStream under ``data_dir`` (``n1``, ``n2``, ``n3``)."""

    data_dir: Path
    nodes: list[ClusterNode]

    @classmethod
    def plan(
        cls,
        data_dir: Path,
        base_port: int | None = None,
        *,
        size: int = 3,
        accounts: bool = True,
        config_dir: Path | None = None,
    ) -> NatsCluster:
        """Choose ports: from ``base_port`` (all must be free), or any free loopback ports; the
        department users from ``config_dir``'s ``nats_users.toml`` (else the development ones)."""
        departments = department_users(config_dir) if accounts else None
        if base_port is not None:
            clients = [base_port + i for i in range(size)]
            routes = [base_port + 2000 + i for i in range(size)]
            monitors = [base_port + 4000 + i for i in range(size)]
            taken = [p for p in (*clients, *routes, *monitors) if not port_is_free(p)]
            if taken:
                raise NatsStartError(
                    f"ports {', '.join(map(str, taken))} on 127.0.0.1 are in use; choose another "
                    f"--base-port, or stop what holds them (hub cluster down --data-dir {data_dir})"
                )
        else:
            clients = [free_port() for _ in range(size)]
            routes = [free_port() for _ in range(size)]
            monitors = [free_port() for _ in range(size)]
        nodes = [
            ClusterNode(
                name=f"n{i + 1}",
                port=clients[i],
                cluster_port=routes[i],
                monitor_port=monitors[i],
                store_dir=data_dir / f"n{i + 1}",
                routes=routes,
                accounts=accounts,
                departments=departments,
            )
            for i in range(size)
        ]
        return cls(data_dir, nodes)

    @property
    def urls(self) -> str:
        """The comma-separated URL list for ``HUB_NATS_URL`` (clients fail over between them)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(n for n in self.nodes if n.name == name)

    def start(self, *, detach: bool = False, timeout: float = 30.0) -> None:
        """Start every node, then wait until JetStream has a meta leader and every node is current."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for node in self.nodes:
                node.start(detach=detach)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.save()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(node.healthy() for node in self.nodes if node.process or node.pid) and self.meta_leader():
                return
            time.sleep(0.1)
        raise NatsStartError(
            f"the NATS cluster did not become ready within {timeout:.0f}s (no JetStream meta leader, "
            f"or a node not current); see {self.data_dir}/n*/nats-server.log"
        )

    def meta_leader(self) -> str | None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                leader = node.monitor("/jsz").get("meta_cluster", {}).get("leader")
                if leader:
                    return str(leader)
        return None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------------ hub cluster up / down
    def save(self) -> None:
        state = {
            "urls": self.urls,
            "nodes": [
                {
                    "name": n.name,
                    "pid": n.pid,
                    "port": n.port,
                    "cluster_port": n.cluster_port,
                    "monitor_port": n.monitor_port,
                    "store_dir": str(n.store_dir),
                    "accounts": n.accounts,
                }
                for n in self.nodes
            ],
        }
        (self.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, data_dir: Path) -> NatsCluster | None:
        """The cluster an earlier ``hub cluster up`` started in ``data_dir``, if its state is there."""
        path = data_dir / STATE_FILE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        routes = [n["cluster_port"] for n in state["nodes"]]
        nodes = [
            ClusterNode(
                name=n["name"],
                port=n["port"],
                cluster_port=n["cluster_port"],
                monitor_port=n["monitor_port"],
                store_dir=Path(n["store_dir"]),
                routes=routes,
                accounts=n["accounts"],
                pid=n["pid"] if n["pid"] and _pid_alive(n["pid"]) else None,
            )
            for n in state["nodes"]
        ]
        return cls(data_dir, nodes)
