"""The whole system on one machine, offline: Redis, the sandbox GitHub and model, real Celery workers.

`asm demo`, `asm bench` and the end-to-end tests all stand on this: it starts the servers,
creates the sample repository and its issues, points this process at them (settings loaded once,
clients built by `asm.deps`), starts `celery -A asm worker` processes with an environment pointing
at the sandbox, and watches GitHub until every issue has settled.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import kombu.exceptions
import redis

import asm
from asm.config import Settings, load_settings
from asm.deps import github_gateway, redis_client
from asm.github import AI_FAILED, IN_REVIEW, NEEDS_CLARIFICATION, GitHub
from asm.sandbox.github_hooks import Hooks
from asm.sandbox.github_server import GitHubServer
from asm.sandbox.github_state import HUMAN_LOGIN, GitHubState
from asm.sandbox.model_server import ScriptedModelServer
from asm.sandbox.redis_server import RedisServer, find_binary
from asm.sandbox.sample_repo import FILES, sample_issues

if TYPE_CHECKING:
    from celery import Celery

SAMPLE_REPO = "acme/textkit"
SETTLED_LABELS = (IN_REVIEW, NEEDS_CLARIFICATION, AI_FAILED)
PROJECT_ROOT = Path(asm.__file__).resolve().parent.parent


@dataclass
class CeleryProcess:
    """One `celery -A asm worker` (or beat) process and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """SIGTERM: Celery's warm shutdown (the main process waits for its pool). SIGKILL: the whole group."""
        if self.process.poll() is None:
            try:
                if sig == signal.SIGKILL:
                    os.killpg(self.process.pid, sig)
                else:
                    os.kill(self.process.pid, sig)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Sandbox:
    """The servers, the sample repository, and the workers started on them."""

    root: Path
    model_latency: float = 1.0
    model_style: str = "default"  # how the scripted model answers (model_server.STYLES)
    redis_url: str | None = None
    prefer_system_redis: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    github_token: str = field(default_factory=lambda: "ghp_sandbox" + secrets.token_hex(12))
    api_key: str = field(default_factory=lambda: "sk-ant-sandbox-" + secrets.token_hex(12))

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.redis: RedisServer | None = None
        self.github: GitHubState | None = None
        self.github_server: GitHubServer | None = None
        self.model: ScriptedModelServer | None = None
        self.hooks: Hooks | None = None
        self.workers: list[CeleryProcess] = []
        self.repos: list[str] = []

    # -- servers -------------------------------------------------------------------------------

    def start(self) -> Sandbox:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.redis_url is None:  # locked like `asm up`'s: nothing else on the machine may use it
            self.redis = RedisServer(find_binary(self.prefer_system_redis), data_dir=self.root / "redis",
                                     password=secrets.token_urlsafe(18)).start()
            self.redis_url = self.redis.url
        self.github = GitHubState(self.root / "github", self.github_token)
        self.github_server = GitHubServer(self.github)
        self.github_server.start()
        self.model = ScriptedModelServer(self.api_key, self.model_latency, style=self.model_style).start()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(signal.SIGKILL, timeout=5)
        self.workers.clear()
        if self.hooks is not None:
            self.hooks.close()
        if self.model is not None:
            self.model.stop()
        if self.github_server is not None:
            self.github_server.stop()
        if self.redis is not None:
            self.redis.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what workers and commands see ---------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        """Settings pointing every part of asm at the sandbox."""
        assert self.github_server and self.model and self.redis_url
        env = {
            "ASM_REDIS_URL": self.redis_url,
            "GITHUB_TOKEN": self.github_token,
            "ASM_GITHUB_URL": self.github_server.url,
            "ASM_REPOS": ",".join(self.repos),
            "ANTHROPIC_API_KEY": self.api_key,
            "ANTHROPIC_BASE_URL": self.model.url,
            "ASM_WORKSPACE_DIR": str(self.root / "workspaces"),
            "ASM_GITHUB_WRITE_INTERVAL": "0",  # the sandbox has no secondary rate limit to respect
            "ASM_RETRY_BACKOFF_SECONDS": "0.2",
            "ASM_SCAN_INTERVAL": "2",
            "LOG_LEVEL": "INFO",
        }
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def settings(self, **overrides: str) -> Settings:
        """The settings a process of asm loads from `env`: every part of it pointed at the sandbox."""
        return load_settings(self.env(**overrides), dotenv=None)

    def process_env(self, **overrides: str) -> dict[str, str]:
        """os.environ plus the sandbox settings, for a child process that imports asm from here."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASM_")}
        env.update(self.env(**overrides))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        return env

    # -- GitHub content ------------------------------------------------------------------------

    def create_repo(self, name: str = SAMPLE_REPO, default_branch: str = "main",
                    files: dict[str, str] | None = None) -> str:
        assert self.github
        self.github.create_repo(name, dict(files or FILES), default_branch=default_branch)
        self.repos.append(name)
        return name

    def add_issue(self, repo: str, title: str, body: str = "", labels: Iterable[str] = ("ready-for-dev",),
                  author: str = HUMAN_LOGIN) -> int:
        """An issue filed (and labelled) by `author`, the repository's owner unless said otherwise."""
        assert self.github
        return self.github.create_issue(repo, title, body, list(labels), author=author)

    def add_sample_issues(self, count: int, repo: str = SAMPLE_REPO) -> list[int]:
        return [self.add_issue(repo, s.title, s.body) for s in sample_issues(count)]

    # -- workers -------------------------------------------------------------------------------

    def start_worker(self, concurrency: int, name: str | None = None, **env: str) -> CeleryProcess:
        """`celery -A asm worker -c N` in its own process group, logging to a file."""
        name = name or f"w{len(self.workers) + 1}"
        return self._spawn(name, ["worker", "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip",
                                  "--without-mingle", "-E"], env)

    def start_ready_worker(self, slots: int, name: str, timeout: float = 60.0, **env: str) -> CeleryProcess:
        """`start_worker`, then wait until every slot has announced itself and the node takes tasks;
        RuntimeError with the worker's log when it does not within `timeout`."""
        from asm.celery_app import app
        from asm.observe.status import read_workers

        assert self.redis_url
        worker = self.start_worker(slots, name, **env)
        client = redis_client(self.redis_url, patient=False)
        # Slots are named `<node>-<n>`, the node being the worker's Celery node name (name@host).
        def nodes() -> set[str]:
            return {w.worker.rsplit("-", 1)[0] for w in read_workers(client) if w.worker.startswith(f"{name}@")}

        announced = lambda: sum(1 for w in read_workers(client) if w.worker.startswith(f"{name}@")) >= slots  # noqa: E731
        if not (wait_for(announced, timeout) and consuming(app, min(nodes()), timeout)):
            raise RuntimeError(f"the worker did not start; its log:\n{worker.log()[-3000:]}")
        return worker

    def webhooks(self) -> Hooks:
        """The sandbox GitHub's webhooks, delivering from the first call on: `.add(url, secret)` adds one."""
        assert self.github and self.github_server
        if self.hooks is None:
            self.hooks = Hooks(self.github, self.github_server.url).attach()
        return self.hooks

    def start_webhook(self, secret: str, name: str = "webhook", timeout: float = 30.0,
                      **env: str) -> tuple[CeleryProcess, str]:
        """`asm webhook --port 0` on the sandbox's settings and `secret`; the process, and its URL once it listens
        (RuntimeError with its log when it does not within `timeout`)."""
        log_path = self.root / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "asm", "webhook", "--port", "0"]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                       env=self.process_env(ASM_WEBHOOK_SECRET=secret, **env), start_new_session=True)
        child = CeleryProcess(name, process, log_path)
        self.workers.append(child)
        listening = re.compile(r"listening on (http://\S+)/webhook")
        if not wait_for(lambda: bool(listening.search(child.log())) or process.poll() is not None, timeout):
            raise RuntimeError(f"`asm webhook` did not start; its log:\n{child.log()[-3000:]}")
        found = listening.search(child.log())
        if found is None:
            raise RuntimeError(f"`asm webhook` stopped; its log:\n{child.log()[-3000:]}")
        return child, found.group(1)

    def start_beat(self, name: str = "beat", **env: str) -> CeleryProcess:
        """`celery -A asm beat`, scanning every ASM_SCAN_INTERVAL seconds."""
        return self._spawn(name, ["beat", "-s", str(self.root / f"{name}-schedule")], env)

    def _spawn(self, name: str, arguments: list[str], env: dict[str, str]) -> CeleryProcess:
        log_path = self.root / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "celery", "-A", "asm", *arguments, "--loglevel", "INFO"]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(command, cwd=self.root, env=self.process_env(**env), stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        child = CeleryProcess(name, process, log_path)
        self.workers.append(child)
        return child

    # -- watching ------------------------------------------------------------------------------

    def labels(self, repo: str, number: int) -> frozenset[str]:
        assert self.github
        return frozenset(self.github.issue(repo, number).labels)

    def settled(self, repo: str, numbers: Iterable[int]) -> bool:
        """Every issue has an end label (in-review, needs-clarification or ai-failed) and no other."""
        return all(self.settled_label(repo, n) for n in numbers)

    def settled_label(self, repo: str, number: int) -> str | None:
        """The end label the issue carries, once it carries nothing else of asm's."""
        labels = self.labels(repo, number)
        ended = labels & set(SETTLED_LABELS)
        return next(iter(ended)) if len(ended) == 1 and not labels & {"in-progress", "ready-for-dev"} else None


@dataclass(frozen=True)
class Fleet:
    """A sandbox with a worker consuming, and what this process drives it with."""

    box: Sandbox
    worker: CeleryProcess
    settings: Settings  # this process's, pointed at the sandbox
    redis: redis.Redis[bytes]
    github: GitHub


def point_process_at(box: Sandbox, **env: str) -> Settings:
    """Load the sandbox's settings, once, as this process's: its Celery app sends to the sandbox's Redis."""
    from asm.celery_app import use_settings

    settings = box.settings(**env)
    use_settings(settings)
    return settings


def start_fleet(box: Sandbox, slots: int, name: str, timeout: float = 60.0, **env: str) -> Fleet:
    """Point this process at the sandbox, build its clients through `asm.deps`, and start a worker of
    `slots` slots that takes tasks; RuntimeError with the worker's log when it does not start."""
    settings = point_process_at(box, **env)
    worker = box.start_ready_worker(slots, name, timeout, **env)
    return Fleet(box, worker, settings, redis_client(settings.redis_url), github_gateway(settings))


@contextmanager
def running_fleet(root: Path, redis_url: str, slots: int, name: str, model_latency: float = 0.0,
                  repos: Iterable[str] = (), model_style: str = "default", **env: str) -> Iterator[Sandbox]:
    """A sandbox on an emptied Redis, and a fleet started on it (`start_fleet`): what a test works issues
    on. Everything it started is gone when it ends.

    `repos` are the repositories the fleet is set up for (ASM_REPOS): it refuses tasks for any other,
    so a test names up front every repository it will create.
    """
    redis_client(redis_url, patient=False).flushall()
    env = {"ASM_REPOS": ",".join(repos), **env}
    box = Sandbox(root, model_latency=model_latency, model_style=model_style, redis_url=redis_url,
                  extra_env=env).start()
    try:
        start_fleet(box, slots, name)
        yield box
    finally:
        box.stop()  # the workers are killed: a graceful stop is tested where it is the point


def consuming(app: Celery, node: str, timeout: float = 60.0) -> bool:
    """Wait until the worker node `node` (name@host) answers a ping: its consumer is up and taking tasks.

    Its slots announce themselves in Redis as soon as the pool starts, a second or more before that.
    """
    def answered() -> bool:
        # A connection of its own, not the pool's: a pooled one may be to a Redis that restarted since.
        try:
            with app.connection_for_write() as connection:
                # Its one reply ends the wait (a ping otherwise waits out its whole timeout for more).
                replies = app.control.ping(destination=[node], timeout=0.5, limit=1, connection=connection)
        except (OSError, redis.RedisError, kombu.exceptions.KombuError):
            return False
        return any(node in reply for reply in replies)

    return wait_for(answered, timeout, interval=0.1)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.2,
             on_tick: Callable[[], None] | None = None) -> bool:
    """Poll `condition` until true or timeout; True when it came true."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        if on_tick is not None:
            on_tick()
        time.sleep(interval)
