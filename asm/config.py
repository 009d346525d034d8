"""Settings: read once from the environment (and ./.env), validated, frozen."""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, get_args
from urllib.parse import unquote, unquote_plus, urlsplit

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BeforeValidator,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from redis.connection import parse_url

from asm.errors import ConfigError
from asm.spend.cost import Price, parse_prices, price_for

if TYPE_CHECKING:
    from asm.github_app import AppKey

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REPO_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")  # use with fullmatch
SECRET_VARIABLES = ("GITHUB_TOKEN", "ANTHROPIC_API_KEY", "ASM_FLOWER_AUTH", "ASM_WEBHOOK_SECRET",
                    "ASM_GITHUB_APP_PRIVATE_KEY")
Permission = Literal["read", "triage", "write", "maintain", "admin"]  # GitHub's repository roles, weakest first
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
# The team's roles as asm.agents.roles.TEAM names them: each may have a model of its own, ASM_MODEL_<ROLE>.
ROLES = ("architect", "security", "tester", "po")


class _Words(str):
    """What a user reads when a value breaks its type's rule: pydantic's own text names types, not settings."""


URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # use with match
# Split what follows scheme:// on it: the first part is the user, password, host and port, as written.
URL_AUTHORITY = re.compile(r"[/?#]")
HOST_PORT = re.compile(r"(\[[^\[\]@]*\]|[^\[\]:@]*)(?::([0-9]*))?")  # use with fullmatch


def _clean_host_port(text: str) -> bool:
    """Whether text is a host, an optional port from 0 to 65535 after it, and nothing else."""
    match = HOST_PORT.fullmatch(text)
    return match is not None and int(match.group(2) or 0) <= 65535


def _cut_short(url: str) -> bool:
    """Whether a / ? # [ or ] in the URL's user or password seems to have broken it, leaving its parts uncertain.

    An @ belongs after the user and password, and in a query parameter's value (`?password=p@ss`). One in the path
    after a user, host or port, in the fragment, in a parameter's name, or after a host and port that do not parse,
    is where a password holding a / ? or # really ended. A [ or ] before the @ is a password's too.
    """
    rest = url[match.end():] if (match := URL_SCHEME.match(url)) else url
    authority = URL_AUTHORITY.split(rest, maxsplit=1)[0]
    after = rest[len(authority):]
    user_password, _, host_port = authority.rpartition("@")
    if re.search(r"[\[\]]", user_password):
        return True
    if "@" not in after:
        return False
    path_and_query, _, fragment = after.partition("#")
    path, _, query = path_and_query.partition("?")
    return ("@" in fragment or (bool(authority) and "@" in path)
            or any("@" in segment.partition("=")[0] for segment in query.split("&"))
            or not _clean_host_port(host_port))


PASSWORD_CHARACTERS = "seems to have a / ? # [ or ] in its user or password; write them as %2F %3F %23 %5B %5D"


def _redis_url(url: str) -> str:
    if not re.match(r"^(redis|rediss|unix)://", url):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    if _cut_short(url):
        raise ValueError(PASSWORD_CHARACTERS)
    try:
        parts = urlsplit(url)
    except ValueError:  # a [ or ] out of place, or around what is not an IPv6 address
        raise ValueError("has a host that is not a name, an IPv4 address or an [IPv6] address") from None
    try:
        port = parts.port
    except ValueError:  # not a number from 0 to 65535
        port = 0
    if port == 0:  # redis-py would quietly use 6379 for a port of 0
        raise ValueError("has a port that is not a number from 1 to 65535")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("names no host")
    try:
        parse_url(url)  # what redis-py will make of it, query parameters included
    except (TypeError, ValueError):
        raise ValueError("has a query parameter whose value redis-py cannot read") from None
    return url


def _redis_url_shown(url: str) -> str | None:
    """At most scheme://host:port of a Redis URL, never its user, password, path or query; None when even that
    may hold part of a password."""
    if not URL_SCHEME.match(url) or _cut_short(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # not shown: with no @, the "host:port" may be a user:password with the @host forgotten
        port = None
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{'' if port is None else f':{port}'}"


def _redis_passwords(url: str) -> tuple[str, ...]:
    """The password redis-py will send for a Redis URL, decoded, then each password in the URL as written."""
    sent = parse_url(url).get("password")
    parts = urlsplit(url)
    written = [parts.password or "", unquote(parts.password or "")]
    for segment in parts.query.split("&"):
        key, _, value = segment.partition("=")
        if "password" in unquote_plus(key).lower():
            written += [value, unquote_plus(value)]
    return tuple(s for s in (sent if isinstance(sent, str) else "", *written) if s)


def _owner_name(repo: str) -> str:
    if not REPO_PATTERN.fullmatch(repo):
        raise ValueError(f"{repo!r} is not in owner/name form")
    return repo


WEIGHT_MAX = 1000


def _repo_weights(text: str) -> dict[str, int]:
    """`owner/name=weight[,owner/name=weight...]`, each weight a whole number from 1 to WEIGHT_MAX."""
    weights: dict[str, int] = {}
    for part in (part.strip() for part in text.split(",") if part.strip()):
        repo, sep, weight = (piece.strip() for piece in part.partition("="))
        if not (sep and REPO_PATTERN.fullmatch(repo) and re.fullmatch(r"[0-9]{1,4}", weight)
                and 1 <= int(weight) <= WEIGHT_MAX):
            raise ValueError(f"{part!r} is not owner/name=weight, a whole number from 1 to {WEIGHT_MAX}")
        if repo.lower() in {known.lower() for known in weights}:
            raise ValueError(f"{repo} is weighted twice")
        weights[repo] = int(weight)
    return weights


def _tool_user(user: str) -> str:
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise ValueError("is not a user on this machine") from None
    if os.geteuid() != 0:
        raise ValueError("needs the worker to run as root, to start tool commands as another user")
    return user


# The types settings are made of. Each value reaches them as a string, stripped and never empty (see
# _Variables); _Words are what a user reads when it breaks the type's rule.
RedisUrl = Annotated[str, AfterValidator(_redis_url)]
Secret = Annotated[str, Field(repr=False)]
AppId = Annotated[str, Field(pattern=r"^[0-9]+$"), _Words("must be the App's id, a number (its settings page says it)")]
Url = Annotated[str, Field(pattern=r"^https?://[^/\s]"), AfterValidator(lambda url: url.rstrip("/")),
                _Words("must be an http(s) URL")]
Repos = Annotated[tuple[Annotated[str, AfterValidator(_owner_name)], ...],
                  BeforeValidator(lambda text: tuple(part.strip() for part in text.split(",") if part.strip()))]
Label = Annotated[str, Field(pattern=r"^[^,]+$"), _Words("must be one non-empty label name")]
ToolUser = Annotated[str, AfterValidator(_tool_user)]
Mention = Annotated[str, Field(pattern=r"^@[A-Za-z0-9][A-Za-z0-9-]*(/[A-Za-z0-9][A-Za-z0-9-]*)?$"),
                    _Words("must be an @mention, such as @asm")]
TrustedPermission = Annotated[Permission, BeforeValidator(str.lower),
                              _Words(f"must be one of {', '.join(PERMISSIONS)}")]
SandboxMode = Annotated[Literal["bwrap", "off"], BeforeValidator(str.lower), _Words("must be bwrap or off")]
UserPassword = Annotated[Secret, Field(pattern=r"^[^:]+:."), _Words("must be user:password")]
Switch = Annotated[bool, _Words("must be true or false")]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False), _Words("must be a positive number")]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False), _Words("must be a number, 0 or more")]
Count = Annotated[int, Field(ge=0), _Words("must be a whole number, 0 or more")]
Turns = Annotated[int, Field(ge=1), _Words("must be a whole number, 1 or more")]
# A claim is renewed every third of its TTL: under 3 s that is more than once a second, and the lease
# (asm.fleet.claim) would quietly make it 3 s anyway.
ClaimTtl = Annotated[float, Field(ge=3, allow_inf_nan=False),
                     _Words("must be at least 3 seconds (it is renewed every third of it)")]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(str.upper),
                     _Words("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")]


class Settings(BaseSettings):
    """Everything asm can be told: each setting, the variable it is read from, and its default."""

    model_config = SettingsConfigDict(
        frozen=True,
        # Each field is read from ASM_<FIELD>, unless it names its own variable; exactly that spelling.
        alias_generator=AliasGenerator(validation_alias=lambda field: f"ASM_{field.upper()}"),
        case_sensitive=True,
        enable_decoding=False,  # ASM_REPOS and ASM_PRICES have their own syntax, not JSON
        validate_default=False,  # the defaults below are valid as written; "" for a URL means the SDK's own
        use_attribute_docstrings=True,
    )

    redis_url: RedisUrl = DEFAULT_REDIS_URL
    """Broker, results, locks and status (ASM_REDIS_URL)."""
    github_token: Secret = Field("", validation_alias="GITHUB_TOKEN")
    """Token for the GitHub API and git over https (GITHUB_TOKEN)."""
    github_url: Url = "https://api.github.com"
    """API base: GitHub, GitHub Enterprise's /api/v3, or the sandbox (ASM_GITHUB_URL)."""
    github_app_id: AppId = ""
    """The GitHub App to authenticate as, instead of with GITHUB_TOKEN (ASM_GITHUB_APP_ID)."""
    github_app_private_key: Secret = ""
    """The App's private key, PEM; on one line, `\\n` for its line breaks (ASM_GITHUB_APP_PRIVATE_KEY)."""
    github_app_private_key_path: Path | None = None
    """A file holding the App's private key, instead (ASM_GITHUB_APP_PRIVATE_KEY_PATH)."""
    repos: Repos = ()
    """Repositories to scan, owner/name (ASM_REPOS)."""
    anthropic_api_key: Secret = Field("", validation_alias="ANTHROPIC_API_KEY")
    """Model access (ANTHROPIC_API_KEY); the SDK reads it and ANTHROPIC_BASE_URL itself."""
    anthropic_base_url: Url = Field("", validation_alias="ANTHROPIC_BASE_URL")
    """Messages API base when not Anthropic's own (ANTHROPIC_BASE_URL)."""
    model: Label = "claude-sonnet-5-5"
    """Model for every role (ASM_MODEL)."""
    # parse_prices raises a ConfigError naming ASM_PRICES, which pydantic lets through untouched.
    prices: Annotated[Mapping[str, Price], BeforeValidator(parse_prices)] = Field(default_factory=dict)
    """Price overrides, USD per MTok: `model=input,output,cache_write,cache_read;...` (ASM_PRICES)."""
    model_architect: Label = ""
    """Model for the Architect (ASM_MODEL_ARCHITECT; unset: ASM_MODEL)."""
    model_security: Label = ""
    """Model for the Security reviewer (ASM_MODEL_SECURITY; unset: ASM_MODEL)."""
    model_tester: Label = ""
    """Model for the Tester (ASM_MODEL_TESTER; unset: ASM_MODEL)."""
    model_po: Label = ""
    """Model for the Product Owner (ASM_MODEL_PO; unset: ASM_MODEL)."""
    github_write_interval: NonNegative = 1.0
    """Seconds between two writes to GitHub from one process, as GitHub asks (ASM_GITHUB_WRITE_INTERVAL)."""
    tool_user: ToolUser = ""
    """The OS user tool commands run as when the worker runs as root (ASM_TOOL_USER; default `nobody`)."""
    trusted_permission: TrustedPermission = "write"
    """Least repository permission of whoever labels, reviews or answers, for asm to act (ASM_TRUSTED_PERMISSION)."""
    mention: Mention = "@asm"
    """The mention that makes a comment on asm's pull request a request to asm (ASM_MENTION)."""
    max_ci_fixes: Count = 2
    """Runs per pull request that fix its failing checks, at most (ASM_MAX_CI_FIXES)."""
    sandbox: SandboxMode = "bwrap"
    """How tool commands are confined: `bwrap`, or `off` by explicit choice (ASM_SANDBOX)."""
    tool_network: Switch = False
    """Outbound network for tool commands, never the host's loopback (ASM_TOOL_NETWORK)."""
    flower_auth: UserPassword = ""
    """`user:password` for Flower's basic auth (ASM_FLOWER_AUTH; `asm up` generates one)."""
    workspace_dir: Path = Path("./parallel_workspace")
    """Where workspaces live, per worker and issue (ASM_WORKSPACE_DIR)."""
    ready_label: Label = "ready-for-dev"
    """The label the scan picks up (ASM_READY_LABEL)."""
    high_priority_label: Label = "priority:high"
    """An issue labelled so goes before every other waiting (ASM_HIGH_PRIORITY_LABEL)."""
    low_priority_label: Label = "priority:low"
    """An issue labelled so goes after every other waiting (ASM_LOW_PRIORITY_LABEL)."""
    repo_weights: Annotated[Mapping[str, int], BeforeValidator(_repo_weights)] = Field(default_factory=dict)
    """Turns per round, `owner/name=3,owner/name=1`; a repository not named has 1 (ASM_REPO_WEIGHTS)."""
    max_running_per_repo: Count = 0
    """Runs of one repository at a time across the fleet, at most; 0: no limit (ASM_MAX_RUNNING_PER_REPO)."""
    scan_interval: Positive = 60.0
    """Seconds between scans (ASM_SCAN_INTERVAL)."""
    max_revisions: Count = 3
    """Product Owner REVISE rounds before giving up (ASM_MAX_REVISIONS)."""
    auto_merge: Switch = False
    """Merge the PR when the Product Owner approves (ASM_AUTO_MERGE)."""
    max_agent_retries: Count = 2
    """Retries of one model call on transient errors (ASM_MAX_AGENT_RETRIES)."""
    retry_backoff_seconds: Positive = 5.0
    """First backoff between retries; doubles each retry (ASM_RETRY_BACKOFF_SECONDS)."""
    max_cost_usd: Positive = 5.0
    """Per-issue spend cap (ASM_MAX_COST_USD)."""
    max_cost_per_repo_day_usd: Positive = 25.0
    """Spend cap per repository per UTC day (ASM_MAX_COST_PER_REPO_DAY_USD)."""
    max_cost_per_day_usd: Positive = 100.0
    """Spend cap for the whole fleet per UTC day (ASM_MAX_COST_PER_DAY_USD)."""
    max_turns: Turns = 50
    """Model calls per role, at most (ASM_MAX_TURNS)."""
    claim_ttl: ClaimTtl = 120.0
    """Seconds a claim lives unless renewed; renewed every third of it (ASM_CLAIM_TTL)."""
    task_time_limit: Positive = 3600.0
    """Seconds one issue's workflow may run (ASM_TASK_TIME_LIMIT)."""
    webhook_secret: Secret = ""
    """The secret GitHub signs webhook deliveries with; `asm webhook` will not start without it (ASM_WEBHOOK_SECRET)."""
    log_level: LogLevel = Field("INFO", validation_alias="LOG_LEVEL")
    """Logging level (LOG_LEVEL)."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what it is given: load_settings reads the variables, so Settings() is the defaults."""
        return (init_settings,)

    @model_validator(mode="after")
    def _priced(self) -> Settings:
        # An unpriced model could never respect a cap: price_for raises ConfigError naming the variable.
        price_for(self.model, self.prices)
        for role in ROLES:
            price_for(self.model_for(role), self.prices, f"ASM_MODEL_{role.upper()}")
        return self

    @model_validator(mode="after")
    def _one_way_in(self) -> Settings:
        # GitHub as a token's user or as an App, never a guess between them; the App's key read and checked now.
        key, path, app_id = self.github_app_private_key, self.github_app_private_key_path, self.github_app_id
        if not (key or path or app_id):
            return self
        if key and path:
            raise ConfigError("ASM_GITHUB_APP_PRIVATE_KEY and ASM_GITHUB_APP_PRIVATE_KEY_PATH are both set; "
                              "give the App's key one way")
        given = "ASM_GITHUB_APP_PRIVATE_KEY" if key else "ASM_GITHUB_APP_PRIVATE_KEY_PATH"
        if not app_id:
            raise ConfigError(f"{given} is set but ASM_GITHUB_APP_ID is not")
        if not (key or path):
            raise ConfigError("ASM_GITHUB_APP_ID is set but neither ASM_GITHUB_APP_PRIVATE_KEY nor "
                              "ASM_GITHUB_APP_PRIVATE_KEY_PATH is")
        if self.github_token:
            raise ConfigError("GITHUB_TOKEN and ASM_GITHUB_APP_ID are both set; asm authenticates with a token or "
                              "as a GitHub App: unset one")
        try:
            _ = self.app_key
        except ValueError as problem:
            shown = "(not shown)" if key else repr(str(path))
            raise ConfigError(f"{given}={shown}: {problem}") from None
        return self

    @cached_property
    def app_key(self) -> AppKey | None:
        """The GitHub App's private key (ASM_GITHUB_APP_PRIVATE_KEY, or the file _PATH names), read once; None
        when asm uses GITHUB_TOKEN."""
        from asm.github_app import AppKey  # here: cryptography is for the App's users only

        if self.github_app_private_key:
            return AppKey(self.github_app_private_key)
        if self.github_app_private_key_path is not None:
            return AppKey.read(self.github_app_private_key_path)
        return None

    @property
    def redis_url_given(self) -> bool:
        """Whether ASM_REDIS_URL was set: `asm up` and `asm demo` start an embedded server when not."""
        return "redis_url" in self.model_fields_set

    @property
    def price(self) -> Price:
        """What ASM_MODEL costs."""
        return price_for(self.model, self.prices)

    def model_for(self, role: str) -> str:
        """The model a role's calls go to (`role` as asm.agents.roles names it): ASM_MODEL_<ROLE>, else ASM_MODEL."""
        chosen = {"architect": self.model_architect, "security": self.model_security, "tester": self.model_tester,
                  "po": self.model_po}[role]
        return chosen or self.model

    @property
    def model_prices(self) -> dict[str, Price]:
        """What each model in use costs: ASM_MODEL's and every role's."""
        models = (self.model, *(self.model_for(role) for role in ROLES))
        return {model: price_for(model, self.prices) for model in models}

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values in play, for redaction (passwords in ASM_REDIS_URL and ASM_FLOWER_AUTH included, and
        each line of the GitHub App's private key).

        ASM_REDIS_URL's is the password redis-py will send (the user part's, else `?password=`'s, percent-decoded),
        with every password in the URL as written besides.
        """
        flower_password = self.flower_auth.partition(":")[2]
        values = (self.github_token, self.anthropic_api_key, *_redis_passwords(self.redis_url), flower_password,
                  self.webhook_secret, *(self.app_key.secrets if self.app_key else ()))
        return tuple(dict.fromkeys(s for s in values if s))


class _Variables(EnvSettingsSource):
    """Settings' variables from a given mapping, each value stripped; an empty one is unset."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        super().__init__(Settings)
        self.env_vars = {name: value.strip() for name, value in variables.items() if value.strip()}


def without_password(url: str) -> str:
    """A URL fit for a message: user and password replaced by ***, and so is each `?password=` value; no fragment.

    When a / ? # [ or ] in a password leaves its end uncertain, all up to the URL's last @ is replaced; all after
    scheme:// when even that could cut a query's password in two, or when there is no @ at all (`user:password`).
    """
    scheme = URL_SCHEME.match(url)
    if not scheme:  # not a URL; a user:password@ in it all the same
        return f"***@{url.rpartition('@')[2]}" if "@" in url else url
    rest = url[scheme.end():]
    authority = URL_AUTHORITY.split(rest, maxsplit=1)[0]
    cut_short = _cut_short(url)
    if "@" in authority and not cut_short:
        rest = "***@" + rest[authority.rindex("@") + 1:]
    elif cut_short or not _clean_host_port(authority):
        before, at, after = rest.rpartition("@")
        if not at or "=" in before:
            return f"{url[:scheme.end()]}***"
        rest = f"***@{after}"
    address, _, query = rest.partition("#")[0].partition("?")
    segments = [f"{key}=***" if sep and "password" in unquote_plus(key).lower() else f"{key}{sep}{value}"
                for key, sep, value in (segment.partition("=") for segment in query.split("&"))]
    return f"{url[:scheme.end()]}{address}{'?' + '&'.join(segments) if query else ''}"


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
        key, sep, value = line.removeprefix("export ").strip().partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _one_line(error: ErrorDetails, variables: Mapping[str, str]) -> str:
    """pydantic's first complaint in asm's words: the variable, its value unless secret, what is wrong."""
    variable = str(error["loc"][0])  # only given values are validated, and each under its variable's name
    field = next(f for f in Settings.model_fields.values() if f.validation_alias == variable)
    rule = next((m for m in field.metadata if isinstance(m, _Words)), error["msg"])
    words = str(error["ctx"]["error"]) if error["type"] == "value_error" else rule
    value = variables[variable].strip()
    shown = (None if variable in SECRET_VARIABLES else _redis_url_shown(value) if variable == "ASM_REDIS_URL"
             else without_password(value))
    return f"{variable}={'(not shown)' if shown is None else repr(shown)}: {words}"


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Settings from the environment over ./.env; a bad value raises ConfigError naming the variable."""
    variables = {**(read_dotenv(dotenv) if dotenv is not None else {}), **(os.environ if environ is None else environ)}
    try:
        return Settings(**_Variables(variables)())
    except ValidationError as invalid:  # from None: its text, value included, must reach no one
        raise ConfigError(_one_line(invalid.errors()[0], variables)) from None


def require(settings: Settings, *what: str) -> None:
    """Refuse to go on without the settings a command needs, naming the first one missing."""
    needs = {
        # As a GitHub App, asm reaches GitHub with no token, and works the repositories the App is installed on.
        "github": ("GITHUB_TOKEN", settings.github_token or settings.github_app_id),
        "repos": ("ASM_REPOS", settings.repos or settings.github_app_id),
        "model": ("ANTHROPIC_API_KEY", settings.anthropic_api_key),
    }
    for name in what:
        variable, value = needs[name]
        if not value:
            raise ConfigError(f"{variable} is not set")
