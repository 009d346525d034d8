"""The one place real clients are built: Redis, GitHub, the model. Once per process, then passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import github
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from asm.config import Settings
from asm.github import GitHub
from asm.guard.jail import Jail
from asm.guard.redaction import Secrets
from asm.observe.metrics import Recorder
from asm.spend.ledger import Ledger
from asm.workspace import Workspaces

if TYPE_CHECKING:
    from asm.agents.model import ModelClient

GITHUB_TIMEOUT_SECONDS = 30
GITHUB_RETRIES = 6
MODEL_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Deps:
    """Everything a worker process needs to work an issue."""

    settings: Settings
    redis: redis.Redis
    github: GitHub
    model: ModelClient
    workspaces: Workspaces
    jail: Jail
    ledger: Ledger
    metrics: Recorder


def redis_client(url: str, patient: bool = True) -> redis.Redis:
    """A Redis client; a patient one rides out a server restart of several seconds instead of failing.

    Commands a person waits for are impatient: they say at once that Redis cannot be reached.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=5 if patient else 2,
        socket_timeout=30,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 20 if patient else 1),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


class CountedRetry(github.GithubRetry):
    """PyGithub's retry policy, counting each retry in the fleet's metrics."""

    recorder: Recorder | None = None

    def increment(self, *args: Any, **kwargs: Any) -> CountedRetry:
        retry = super().increment(*args, **kwargs)
        if self.recorder is not None:
            self.recorder.count("asm_retries_total", kind="github")
        retry.recorder = self.recorder
        return retry

    def new(self, **kwargs: Any) -> CountedRetry:
        retry = super().new(**kwargs)
        retry.recorder = self.recorder
        return retry


def github_client(settings: Settings, recorder: Recorder | None = None) -> github.Github:
    """PyGithub, with retries that honour Retry-After on 403/429 rate limits and 5xx answers."""
    retry = CountedRetry(
        total=GITHUB_RETRIES,
        backoff_factor=0.5,
        status_forcelist=[429, *range(500, 600)],
        secondary_rate_wait=60,
    )
    retry.recorder = recorder
    return github.Github(
        auth=github.Auth.Token(settings.github_token),
        base_url=settings.github_url,
        per_page=100,
        timeout=GITHUB_TIMEOUT_SECONDS,
        retry=retry,
        seconds_between_requests=0,
        seconds_between_writes=settings.github_write_interval,
    )


def model_client(settings: Settings, recorder: Recorder | None = None) -> ModelClient:
    # Imported here: the SDK takes seconds to import, and `asm enqueue` or `asm status` never call it.
    import anthropic

    from asm.agents.model import ModelClient

    # The SDK's own retries are off: asm's policy (ASM_MAX_AGENT_RETRIES, doubling backoff) rules.
    client = anthropic.Anthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url or None,
        max_retries=0,
        timeout=MODEL_TIMEOUT_SECONDS,
    )
    on_retry = (lambda: recorder.count("asm_retries_total", kind="model")) if recorder else (lambda: None)
    return ModelClient(client, settings.model, settings.max_agent_retries, settings.retry_backoff_seconds,
                       on_retry=on_retry)


def jail(settings: Settings) -> Jail:
    """How this machine confines tool commands, hiding asm's own files even under system directories."""
    hidden = (settings.workspace_dir, Path.cwd(), Path.home(), Path(".env"))
    return Jail(settings.sandbox, settings.tool_network, settings.tool_user, hidden=hidden)


def build(settings: Settings) -> Deps:
    client = redis_client(settings.redis_url)
    recorder = Recorder(client)
    confinement = jail(settings)
    return Deps(
        settings=settings,
        redis=client,
        github=GitHub(github_client(settings, recorder), settings.ready_label),
        model=model_client(settings, recorder),
        workspaces=Workspaces(settings.workspace_dir, settings.github_token, confinement, Secrets(settings.secrets)),
        jail=confinement,
        ledger=Ledger(client, settings.price),
        metrics=recorder,
    )
