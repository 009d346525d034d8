"""Settings: read once from the environment (and ./.env), validated, frozen."""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from asm.errors import ConfigError
from asm.spend.cost import Price, parse_prices, price_for

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REPO_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")  # use with fullmatch
SECRET_VARIABLES = ("GITHUB_TOKEN", "ANTHROPIC_API_KEY", "ASM_FLOWER_AUTH")


@dataclass(frozen=True)
class Settings:
    """Everything asm can be told, with DESIGN.md's names and defaults."""

    redis_url: str = DEFAULT_REDIS_URL
    """Broker, results, locks and status (ASM_REDIS_URL)."""
    redis_url_given: bool = False
    """Whether ASM_REDIS_URL was set: `asm up` and `asm demo` start an embedded server when not."""
    github_token: str = ""
    """Token for the GitHub API and git over https (GITHUB_TOKEN)."""
    github_url: str = "https://api.github.com"
    """API base: GitHub, GitHub Enterprise's /api/v3, or the sandbox (ASM_GITHUB_URL)."""
    repos: tuple[str, ...] = ()
    """Repositories to scan, owner/name (ASM_REPOS)."""
    anthropic_api_key: str = ""
    """Model access (ANTHROPIC_API_KEY); the SDK reads it and ANTHROPIC_BASE_URL itself."""
    anthropic_base_url: str = ""
    """Messages API base when not Anthropic's own (ANTHROPIC_BASE_URL)."""
    model: str = "claude-sonnet-5-5"
    """Model for every role (ASM_MODEL)."""
    prices: Mapping[str, Price] = field(default_factory=dict)
    """Price overrides, USD per MTok: `model=input,output,cache_write,cache_read;...` (ASM_PRICES)."""
    github_write_interval: float = 1.0
    """Seconds between two writes to GitHub from one process, as GitHub asks (ASM_GITHUB_WRITE_INTERVAL)."""
    tool_user: str = ""
    """The OS user tool commands run as when the worker runs as root (ASM_TOOL_USER; default `nobody`)."""
    trusted_permission: str = "write"
    """Least repository permission of whoever labels, reviews or answers, for asm to act (ASM_TRUSTED_PERMISSION)."""
    sandbox: str = "bwrap"
    """How tool commands are confined: `bwrap`, or `off` by explicit choice (ASM_SANDBOX)."""
    tool_network: bool = False
    """Outbound network for tool commands, never the host's loopback (ASM_TOOL_NETWORK)."""
    flower_auth: str = ""
    """`user:password` for Flower's basic auth (ASM_FLOWER_AUTH; `asm up` generates one)."""
    workspace_dir: Path = Path("./parallel_workspace")
    """Where workspaces live, per worker and issue (ASM_WORKSPACE_DIR)."""
    ready_label: str = "ready-for-dev"
    """The label the scan picks up (ASM_READY_LABEL)."""
    scan_interval: float = 60.0
    """Seconds between scans (ASM_SCAN_INTERVAL)."""
    max_revisions: int = 3
    """Product Owner REVISE rounds before giving up (ASM_MAX_REVISIONS)."""
    auto_merge: bool = False
    """Merge the PR when the Product Owner approves (ASM_AUTO_MERGE)."""
    max_agent_retries: int = 2
    """Retries of one model call on transient errors (ASM_MAX_AGENT_RETRIES)."""
    retry_backoff_seconds: float = 5.0
    """First backoff between retries; doubles each retry (ASM_RETRY_BACKOFF_SECONDS)."""
    max_cost_usd: float = 5.0
    """Per-issue spend cap (ASM_MAX_COST_USD)."""
    max_cost_per_repo_day_usd: float = 25.0
    """Spend cap per repository per UTC day (ASM_MAX_COST_PER_REPO_DAY_USD)."""
    max_cost_per_day_usd: float = 100.0
    """Spend cap for the whole fleet per UTC day (ASM_MAX_COST_PER_DAY_USD)."""
    max_turns: int = 50
    """Model calls per role, at most (ASM_MAX_TURNS)."""
    claim_ttl: float = 120.0
    """Seconds a claim lives unless renewed; renewed every third of it (ASM_CLAIM_TTL)."""
    task_time_limit: float = 3600.0
    """Seconds one issue's workflow may run (ASM_TASK_TIME_LIMIT)."""
    log_level: str = "INFO"
    """Logging level (LOG_LEVEL)."""

    @property
    def price(self) -> Price:
        """What ASM_MODEL costs."""
        return price_for(self.model, self.prices)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values in play, for redaction (passwords in ASM_REDIS_URL and ASM_FLOWER_AUTH included)."""
        redis_password = urlsplit(self.redis_url).password or ""
        flower_password = self.flower_auth.partition(":")[2]
        values = (self.github_token, self.anthropic_api_key, redis_password, flower_password)
        return tuple(dict.fromkeys(s for s in values if s))


def _text(value: str) -> str:
    return value.strip()


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise ValueError("must be a positive number")
    return number


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number < float("inf"):
        raise ValueError("must be a number, 0 or more")
    return number


def _whole_number(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise ValueError(f"must be a whole number, {minimum} or more")
        return number

    return parse


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _repos(value: str) -> tuple[str, ...]:
    repos = tuple(part.strip() for part in value.split(",") if part.strip())
    for repo in repos:
        if not REPO_PATTERN.fullmatch(repo):
            raise ValueError(f"{repo!r} is not in owner/name form")
    return repos


def _url(value: str) -> str:
    url = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError("must be an http(s) URL")
    return url


def _redis_url(value: str) -> str:
    url = value.strip()
    if not re.match(r"^(redis|rediss|unix)://", url):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port that is not a number from 0 to 65535)
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("names no host")
    return url


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _tool_user(value: str) -> str:
    user = value.strip()
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise ValueError("is not a user on this machine") from None
    if os.geteuid() != 0:
        raise ValueError("needs the worker to run as root, to start tool commands as another user")
    return user


PERMISSIONS = ("read", "triage", "write", "maintain", "admin")  # GitHub's repository roles, weakest first


def _permission(value: str) -> str:
    permission = value.strip().lower()
    if permission not in PERMISSIONS:
        raise ValueError(f"must be one of {', '.join(PERMISSIONS)}")
    return permission


def _sandbox(value: str) -> str:
    mode = value.strip().lower()
    if mode not in ("bwrap", "off"):
        raise ValueError("must be bwrap or off")
    return mode


def _user_password(value: str) -> str:
    user, sep, password = value.strip().partition(":")
    if not sep or not user or not password:
        raise ValueError("must be user:password")
    return value.strip()


def _label(value: str) -> str:
    label = value.strip()
    if not label or "," in label:
        raise ValueError("must be one non-empty label name")
    return label


# variable -> (field, parser); the order is the order of DESIGN.md's table.
_VARIABLES: dict[str, tuple[str, Callable[[str], object]]] = {
    "ASM_REDIS_URL": ("redis_url", _redis_url),
    "GITHUB_TOKEN": ("github_token", _text),
    "ASM_GITHUB_URL": ("github_url", _url),
    "ASM_REPOS": ("repos", _repos),
    "ANTHROPIC_API_KEY": ("anthropic_api_key", _text),
    "ANTHROPIC_BASE_URL": ("anthropic_base_url", _url),
    "ASM_MODEL": ("model", _label),
    "ASM_PRICES": ("prices", parse_prices),
    "ASM_GITHUB_WRITE_INTERVAL": ("github_write_interval", _non_negative_float),
    "ASM_TOOL_USER": ("tool_user", _tool_user),
    "ASM_TRUSTED_PERMISSION": ("trusted_permission", _permission),
    "ASM_SANDBOX": ("sandbox", _sandbox),
    "ASM_TOOL_NETWORK": ("tool_network", _boolean),
    "ASM_FLOWER_AUTH": ("flower_auth", _user_password),
    "ASM_WORKSPACE_DIR": ("workspace_dir", lambda v: Path(v.strip())),
    "ASM_READY_LABEL": ("ready_label", _label),
    "ASM_SCAN_INTERVAL": ("scan_interval", _positive_float),
    "ASM_MAX_REVISIONS": ("max_revisions", _whole_number(0)),
    "ASM_AUTO_MERGE": ("auto_merge", _boolean),
    "ASM_MAX_AGENT_RETRIES": ("max_agent_retries", _whole_number(0)),
    "ASM_RETRY_BACKOFF_SECONDS": ("retry_backoff_seconds", _positive_float),
    "ASM_MAX_COST_USD": ("max_cost_usd", _positive_float),
    "ASM_MAX_COST_PER_REPO_DAY_USD": ("max_cost_per_repo_day_usd", _positive_float),
    "ASM_MAX_COST_PER_DAY_USD": ("max_cost_per_day_usd", _positive_float),
    "ASM_MAX_TURNS": ("max_turns", _whole_number(1)),
    "ASM_CLAIM_TTL": ("claim_ttl", _positive_float),
    "ASM_TASK_TIME_LIMIT": ("task_time_limit", _positive_float),
    "LOG_LEVEL": ("log_level", _log_level),
}
assert {f for f, _ in _VARIABLES.values()} | {"redis_url_given"} == {f.name for f in fields(Settings)}


def without_password(url: str) -> str:
    """A URL fit for a message: user and password replaced by ***."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments, blanks and `export ` prefixes allowed."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as problem:
        raise ConfigError(f"{path}: cannot be read ({problem.__class__.__name__})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Settings from the environment over ./.env; a bad value raises ConfigError naming the variable."""
    source = dict(read_dotenv(dotenv)) if dotenv is not None else {}
    source.update(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    for variable, (field_name, parse) in _VARIABLES.items():
        raw = source.get(variable)
        if raw is None or (raw.strip() == "" and field_name != "github_token"):
            continue
        try:
            values[field_name] = parse(raw)
        except ValueError as error:
            shown = "(not shown)" if variable in SECRET_VARIABLES else repr(without_password(raw))
            raise ConfigError(f"{variable}={shown}: {error}") from None
        except ConfigError:
            raise
    values["redis_url_given"] = "redis_url" in values
    settings = Settings(**values)  # type: ignore[arg-type]
    price_for(settings.model, settings.prices)  # an unpriced model could never respect a cap
    if settings.claim_ttl < 3:
        raise ConfigError("ASM_CLAIM_TTL: must be at least 3 seconds (it is renewed every third of it)")
    return settings


def require(settings: Settings, *what: str) -> None:
    """Refuse to go on without the settings a command needs, naming the first one missing."""
    needs = {
        "github": ("GITHUB_TOKEN", settings.github_token),
        "repos": ("ASM_REPOS", settings.repos),
        "model": ("ANTHROPIC_API_KEY", settings.anthropic_api_key),
    }
    for name in what:
        variable, value = needs[name]
        if not value:
            raise ConfigError(f"{variable} is not set")
