"""The one place clients are built: Redis, the GitHub gateway, the models, workspaces, the jail, the ledger,
the metrics, the transcripts. Each from settings loaded once by the process, then passed in; nothing else
constructs one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import github
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from asm.config import ROLES, Settings
from asm.github import GitHub
from asm.github_auth import Access, TokenAccess
from asm.guard.jail import Jail
from asm.guard.redaction import Secrets
from asm.observe.metrics import Recorder
from asm.observe.transcripts import Transcripts
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
    redis: redis.Redis[bytes]
    github: GitHub
    models: dict[str, ModelClient]  # each role's (asm.agents.roles names), one client per distinct model
    workspaces: Workspaces
    jail: Jail
    ledger: Ledger
    metrics: Recorder
    transcripts: Transcripts


def redis_client(url: str, patient: bool = True) -> redis.Redis[bytes]:
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
        # GithubRetry.increment is annotated `-> Retry`, but every path ends in urllib3's increment, which
        # builds the next policy with self.new(): a CountedRetry.
        retry = cast(CountedRetry, super().increment(*args, **kwargs))
        if self.recorder is not None:
            self.recorder.count("asm_retries_total", kind="github")
        retry.recorder = self.recorder
        return retry

    def new(self, **kwargs: Any) -> CountedRetry:
        retry = super().new(**kwargs)
        retry.recorder = self.recorder
        return retry


def _github_client(settings: Settings, recorder: Recorder | None, auth: github.Auth.Auth) -> github.Github:
    """PyGithub, with retries that honour Retry-After on 403/429 rate limits and 5xx answers."""
    retry = CountedRetry(
        total=GITHUB_RETRIES,
        backoff_factor=0.5,
        status_forcelist=[429, *range(500, 600)],
        secondary_rate_wait=60,
    )
    retry.recorder = recorder
    return github.Github(
        auth=auth,
        base_url=settings.github_url,
        per_page=100,
        timeout=GITHUB_TIMEOUT_SECONDS,
        retry=retry,
        seconds_between_requests=0,
        seconds_between_writes=settings.github_write_interval,
    )


def github_access(settings: Settings, recorder: Recorder | None = None,
                  fleet: redis.Redis[bytes] | None = None) -> Access:
    """How asm reaches GitHub: as the GitHub App when ASM_GITHUB_APP_ID is set, else with GITHUB_TOKEN. As the
    App, with the fleet's Redis (`fleet`) the processes share each installation's token; without, each mints its
    own."""
    def connect(auth: github.Auth.Auth) -> github.Github:
        return _github_client(settings, recorder, auth)

    if settings.app_key is not None:
        from asm.github_app import AppAccess

        return AppAccess(settings.github_app_id, settings.app_key, connect, fleet=fleet)
    return TokenAccess(settings.github_token, connect(github.Auth.Token(settings.github_token)))


def github_gateway(settings: Settings, recorder: Recorder | None = None, access: Access | None = None,
                   fleet: redis.Redis[bytes] | None = None) -> GitHub:
    """The GitHub gateway asm talks through (on `access` when given, else one sharing an App's tokens through
    `fleet`); its retries are counted when a recorder is given."""
    return GitHub(access or github_access(settings, recorder, fleet), settings.ready_label)


def import_model_sdk() -> None:
    """Import the model SDK now: in a worker's main process, so that every pool process forked from
    it has it already (it takes seconds to import, and Celery gives a pool process's start 4 s)."""
    import anthropic  # noqa: F401

    import asm.agents.model  # noqa: F401


def model_clients(settings: Settings, recorder: Recorder | None = None) -> dict[str, ModelClient]:
    """Each role's model client, by role name: one per distinct model, all on one SDK client (one pool of
    connections to the API)."""
    # Imported here, not at the top: `asm enqueue` or `asm status` never call the model.
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
    clients = {model: ModelClient(client, model, settings.max_agent_retries, settings.retry_backoff_seconds,
                                  on_retry=on_retry)
               for model in dict.fromkeys(settings.model_for(role) for role in ROLES)}
    return {role: clients[settings.model_for(role)] for role in ROLES}


def tool_jail(settings: Settings) -> Jail:
    """How this machine confines tool commands, hiding asm's own files even under system directories."""
    hidden = (settings.workspace_dir, Path.cwd(), Path.home(), Path(".env"),
              *([settings.github_app_private_key_path] if settings.github_app_private_key_path else []))
    return Jail(settings.sandbox, settings.tool_network, settings.tool_user, hidden=hidden)


def build(settings: Settings) -> Deps:
    """Every client a worker process works issues with."""
    client = redis_client(settings.redis_url)
    recorder = Recorder(client)
    confinement = tool_jail(settings)
    # One for the API and git: an App's tokens are minted once for both, and shared with the fleet through a client
    # that gives up at once when Redis is down (each process then mints its own, never waiting on Redis long).
    access = github_access(settings, recorder, fleet=redis_client(settings.redis_url, patient=False))
    return Deps(
        settings=settings,
        redis=client,
        github=github_gateway(settings, recorder, access),
        models=model_clients(settings, recorder),
        workspaces=Workspaces(settings.workspace_dir, access, confinement, Secrets(settings.secrets)),
        jail=confinement,
        ledger=Ledger(client, settings.model_prices),
        metrics=recorder,
        transcripts=Transcripts(client, settings.secrets),
    )
