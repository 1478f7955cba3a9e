"""The embedded NATS port: kept across starts, explicit flag wins, a taken kept port is a clear error,
and the free-port check is not fooled by TIME_WAIT after a crash."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ops.natsd import EmbeddedNats, NatsStartError, free_port, port_is_free


def test_the_kept_port_is_reused(tmp_path: Path) -> None:
    kept = tmp_path / "nats.port"
    port = free_port()
    kept.write_text(f"{port}\n")
    assert EmbeddedNats.choose_port(None, 4222, kept) == (port, False)


def test_an_explicit_port_wins_over_the_kept_one(tmp_path: Path) -> None:
    kept = tmp_path / "nats.port"
    kept.write_text(f"{free_port()}\n")
    explicit = free_port()
    assert EmbeddedNats.choose_port(explicit, 4222, kept) == (explicit, False)


def test_a_kept_port_taken_by_another_program_names_the_file_and_the_flag(tmp_path: Path) -> None:
    kept = tmp_path / "nats.port"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        kept.write_text(f"{held.getsockname()[1]}\n")
        with pytest.raises(NatsStartError) as caught:
            EmbeddedNats.choose_port(None, 4222, kept)
    assert str(kept) in str(caught.value) and "--nats-port" in str(caught.value)


def test_a_kept_file_that_is_not_a_port_is_a_clear_error(tmp_path: Path) -> None:
    kept = tmp_path / "nats.port"
    kept.write_text("four\n")
    with pytest.raises(NatsStartError, match="not a port number"):
        EmbeddedNats.choose_port(None, 4222, kept)


def test_a_port_in_time_wait_reads_as_free() -> None:
    """A server that crashed leaves its accepted connections in TIME_WAIT on its port."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: it holds TIME_WAIT
        client.close()
    assert port_is_free(port)
