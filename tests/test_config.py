"""Settings: the documented defaults, every variable parsed, every malformed value named in the error."""

from __future__ import annotations

import traceback
from pathlib import Path
from urllib.parse import unquote, unquote_plus

import pytest
from pydantic import ValidationError
from redis.connection import parse_url

from asm.agents.roles import TEAM
from asm.config import ROLES, SECRET_VARIABLES, Settings, load_settings, read_dotenv, require, without_password
from asm.errors import ConfigError
from asm.spend.cost import PRICES, Price


def load(environ: dict[str, str], dotenv: Path | None = None) -> Settings:
    return load_settings(environ, dotenv=dotenv)


# -- defaults ----------------------------------------------------------------------------------


def test_defaults_are_the_design_table() -> None:
    settings = load({})

    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.redis_url_given is False
    assert settings.github_token == ""
    assert settings.github_url == "https://api.github.com"
    assert settings.repos == ()
    assert settings.anthropic_api_key == ""
    assert settings.model in PRICES  # "a current Claude model", and one asm can price
    assert settings.workspace_dir == Path("./parallel_workspace")
    assert settings.ready_label == "ready-for-dev"
    assert settings.scan_interval == 60
    assert settings.max_revisions == 3
    assert settings.auto_merge is False
    assert settings.max_agent_retries == 2
    assert settings.retry_backoff_seconds == 5
    assert settings.max_cost_usd == 5.0
    assert settings.max_cost_per_repo_day_usd == 25.0
    assert settings.max_cost_per_day_usd == 100.0
    assert settings.max_turns == 50
    assert settings.claim_ttl == 120
    assert settings.task_time_limit == 3600
    assert (settings.high_priority_label, settings.low_priority_label) == ("priority:high", "priority:low")
    assert settings.repo_weights == {} and settings.max_running_per_repo == 0
    assert settings.log_level == "INFO"


def test_defaults_equal_the_dataclass_defaults() -> None:
    assert load({}) == Settings()


def test_blank_values_keep_the_default() -> None:
    settings = load({"ASM_MAX_TURNS": "", "ASM_READY_LABEL": "  ", "LOG_LEVEL": ""})

    assert (settings.max_turns, settings.ready_label, settings.log_level) == (50, "ready-for-dev", "INFO")


# -- every variable parsed -----------------------------------------------------------------------


EVERY_VARIABLE = {
    "ASM_REDIS_URL": "redis://redis.internal:6380/2",
    "GITHUB_TOKEN": " ghp_abc123 ",
    "ASM_GITHUB_URL": "https://ghe.example.com/api/v3/",
    "ASM_REPOS": "acme/shop, acme/web.site ,",
    "ANTHROPIC_API_KEY": "sk-ant-xyz",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:8765",
    "ASM_MODEL": "claude-house-1",
    "ASM_PRICES": "claude-house-1=2,10,2.5,0.2",
    "ASM_GITHUB_WRITE_INTERVAL": "0",
    "ASM_WORKSPACE_DIR": "/srv/asm/work",
    "ASM_READY_LABEL": "ai-ready",
    "ASM_SCAN_INTERVAL": "12.5",
    "ASM_MAX_REVISIONS": "0",
    "ASM_AUTO_MERGE": "yes",
    "ASM_MAX_AGENT_RETRIES": "4",
    "ASM_RETRY_BACKOFF_SECONDS": "0.5",
    "ASM_MAX_COST_USD": "1.25",
    "ASM_MAX_COST_PER_REPO_DAY_USD": "7",
    "ASM_MAX_COST_PER_DAY_USD": "70",
    "ASM_MAX_TURNS": "9",
    "ASM_CLAIM_TTL": "30",
    "ASM_TASK_TIME_LIMIT": "900",
    "ASM_HIGH_PRIORITY_LABEL": " urgent ",
    "ASM_LOW_PRIORITY_LABEL": "someday",
    "ASM_REPO_WEIGHTS": "acme/api=3, acme/web=1",
    "ASM_MAX_RUNNING_PER_REPO": "2",
    "ASM_WEBHOOK_SECRET": " whsec-abc ",
    "LOG_LEVEL": "debug",
}


def test_every_variable_is_parsed() -> None:
    settings = load(EVERY_VARIABLE)

    assert settings.redis_url == "redis://redis.internal:6380/2"
    assert settings.redis_url_given is True
    assert settings.github_token == "ghp_abc123"
    assert settings.github_url == "https://ghe.example.com/api/v3"
    assert settings.repos == ("acme/shop", "acme/web.site")
    assert settings.anthropic_api_key == "sk-ant-xyz"
    assert settings.anthropic_base_url == "http://127.0.0.1:8765"
    assert settings.model == "claude-house-1"
    assert settings.prices == {"claude-house-1": Price(2, 10, 2.5, 0.2)}
    assert settings.price == Price(2, 10, 2.5, 0.2)
    assert settings.github_write_interval == 0
    assert settings.workspace_dir == Path("/srv/asm/work")
    assert settings.ready_label == "ai-ready"
    assert settings.scan_interval == 12.5
    assert settings.max_revisions == 0
    assert settings.auto_merge is True
    assert settings.max_agent_retries == 4
    assert settings.retry_backoff_seconds == 0.5
    assert settings.max_cost_usd == 1.25
    assert settings.max_cost_per_repo_day_usd == 7
    assert settings.max_cost_per_day_usd == 70
    assert settings.max_turns == 9
    assert settings.claim_ttl == 30
    assert settings.task_time_limit == 900
    assert (settings.high_priority_label, settings.low_priority_label) == ("urgent", "someday")
    assert settings.repo_weights == {"acme/api": 3, "acme/web": 1}
    assert settings.max_running_per_repo == 2
    assert settings.webhook_secret == "whsec-abc"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(("text", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False),
                                                ("False", False), ("no", False), ("off", False)])
def test_auto_merge_spellings(text: str, expected: bool) -> None:
    assert load({"ASM_AUTO_MERGE": text}).auto_merge is expected


def test_settings_are_frozen() -> None:
    settings = load({})

    with pytest.raises(ValidationError):  # pydantic's frozen models refuse assignment so
        settings.max_turns = 1  # type: ignore[misc]
    assert settings.max_turns == 50


# -- malformed values name their variable ----------------------------------------------------------


MALFORMED = [
        ("ASM_REPOS", "bad"),
        ("ASM_REPOS", "acme/shop,nope"),
        ("ASM_REPOS", "acme/shop/extra"),
        ("ASM_MAX_TURNS", "x"),
        ("ASM_MAX_TURNS", "0"),
        ("ASM_MAX_TURNS", "2.5"),
        ("ASM_MAX_REVISIONS", "-1"),
        ("ASM_MAX_AGENT_RETRIES", "many"),
        ("ASM_SCAN_INTERVAL", "-1"),
        ("ASM_SCAN_INTERVAL", "0"),
        ("ASM_SCAN_INTERVAL", "nan"),
        ("ASM_SCAN_INTERVAL", "inf"),
        ("ASM_RETRY_BACKOFF_SECONDS", "soon"),
        ("ASM_MAX_COST_USD", "0"),
        ("ASM_MAX_COST_PER_REPO_DAY_USD", "-5"),
        ("ASM_MAX_COST_PER_DAY_USD", "lots"),
        ("ASM_TASK_TIME_LIMIT", "-1"),
        ("ASM_GITHUB_WRITE_INTERVAL", "-0.5"),
        ("ASM_AUTO_MERGE", "maybe"),
        ("ASM_REDIS_URL", "http://x"),
        ("ASM_REDIS_URL", "redis://localhost:0/0"),
        ("ASM_REDIS_URL", "redis://localhost:70000/0"),
        ("ASM_REDIS_URL", "redis://localhost:63a9/0"),
        ("ASM_REDIS_URL", "redis://:pa/ss@localhost:6379/0"),
        ("ASM_REDIS_URL", "redis://localhost/0?db=first"),
        ("ASM_GITHUB_URL", "ftp://x"),
        ("ANTHROPIC_BASE_URL", "localhost:8765"),
        ("LOG_LEVEL", "LOUD"),
        ("ASM_READY_LABEL", "a,b"),
        ("ASM_CLAIM_TTL", "1"),
        ("ASM_CLAIM_TTL", "never"),
        ("ASM_MODEL", "claude-unpriced-9"),
        ("ASM_PRICES", "claude-x=1,2,3"),
        ("ASM_PRICES", "=1,2,3,4"),
        ("ASM_PRICES", "claude-x=1,2,3,cheap"),
        ("ASM_PRICES", "claude-x=-1,2,3,4"),
        ("ASM_PRICES", "claude-x"),
        ("ASM_TRUSTED_PERMISSION", "owner"),
        ("ASM_SANDBOX", "docker"),
        ("ASM_TOOL_NETWORK", "perhaps"),
        ("ASM_FLOWER_AUTH", "nocolon"),
        ("ASM_MODEL", "a,b"),
        ("ASM_MODEL_ARCHITECT", "claude-unpriced-9"),
        ("ASM_MODEL_SECURITY", "claude-unpriced-9"),
        ("ASM_MODEL_TESTER", "claude-unpriced-9"),
        ("ASM_MODEL_PO", "claude-unpriced-9"),
        ("ASM_MODEL_PO", "a,b"),
        ("ASM_MENTION", "asm"),
        ("ASM_MENTION", "@a b"),
        ("ASM_MAX_CI_FIXES", "-1"),
        ("ASM_MAX_CI_FIXES", "two"),
        ("ASM_HIGH_PRIORITY_LABEL", "urgent,now"),
        ("ASM_REPO_WEIGHTS", "acme/api=0"),
        ("ASM_REPO_WEIGHTS", "acme/api"),
        ("ASM_MAX_RUNNING_PER_REPO", "-1"),
        ("ASM_MAX_RUNNING_PER_REPO", "many"),
]


@pytest.mark.parametrize(("variable", "value"), MALFORMED)
def test_a_malformed_value_raises_config_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({variable: value})

    assert variable in str(caught.value)


@pytest.mark.parametrize(("variable", "value"), MALFORMED)
def test_the_error_is_one_line_of_asm_s_never_pydantic_s(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({variable: value})

    message = str(caught.value)
    assert "\n" not in message
    assert "validation error" not in message and "Input should" not in message and "pydantic" not in message
    printed = "".join(traceback.format_exception(caught.value))
    assert "ValidationError" not in printed  # nor chained below it, where a traceback would show it


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ASM_MAX_TURNS": "x"}, "ASM_MAX_TURNS='x': must be a whole number, 1 or more"),
        ({"ASM_MAX_REVISIONS": " -1 "}, "ASM_MAX_REVISIONS='-1': must be a whole number, 0 or more"),
        ({"ASM_SCAN_INTERVAL": "nan"}, "ASM_SCAN_INTERVAL='nan': must be a positive number"),
        ({"ASM_GITHUB_WRITE_INTERVAL": "-1"}, "ASM_GITHUB_WRITE_INTERVAL='-1': must be a number, 0 or more"),
        ({"ASM_AUTO_MERGE": "maybe"}, "ASM_AUTO_MERGE='maybe': must be true or false"),
        ({"ASM_REPOS": "acme/shop, nope"}, "ASM_REPOS='acme/shop, nope': 'nope' is not in owner/name form"),
        ({"ASM_GITHUB_URL": "ftp://x"}, "ASM_GITHUB_URL='ftp://x': must be an http(s) URL"),
        ({"ASM_REDIS_URL": "redis:///0"}, "ASM_REDIS_URL='redis://': names no host"),
        ({"ASM_READY_LABEL": "a,b"}, "ASM_READY_LABEL='a,b': must be one non-empty label name"),
        ({"ASM_SANDBOX": "docker"}, "ASM_SANDBOX='docker': must be bwrap or off"),
        ({"ASM_TRUSTED_PERMISSION": "owner"},
         "ASM_TRUSTED_PERMISSION='owner': must be one of read, triage, write, maintain, admin"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud': must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        ({"ASM_CLAIM_TTL": "2.5"}, "ASM_CLAIM_TTL='2.5': must be at least 3 seconds (it is renewed every third of it)"),
        ({"ASM_MODEL": "claude-unpriced-9"}, "ASM_MODEL='claude-unpriced-9' has no known price; add it to ASM_PRICES"),
        ({"ASM_MODEL_TESTER": "claude-unpriced-9"},
         "ASM_MODEL_TESTER='claude-unpriced-9' has no known price; add it to ASM_PRICES"),
        ({"ASM_PRICES": "claude-x=1,2,3"},
         "ASM_PRICES: 'claude-x=1,2,3' is not model=input,output,cache_write,cache_read (USD per MTok)"),
        ({"ASM_PRICES": "claude-x=1,2,3,4; claude-y=1,2,3,free"},
         "ASM_PRICES: 'claude-y=1,2,3,free' is not model=input,output,cache_write,cache_read (USD per MTok)"),
    ],
)
def test_the_error_says_what_is_wrong_in_asm_s_words(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ)

    assert str(caught.value) == message


def test_the_first_bad_variable_in_the_table_is_the_one_named() -> None:
    with pytest.raises(ConfigError, match="^ASM_REPOS="):
        load({"LOG_LEVEL": "loud", "ASM_MAX_TURNS": "0", "ASM_REPOS": "nope"})


def test_an_unpriced_model_is_accepted_once_asm_prices_prices_it() -> None:
    settings = load({"ASM_MODEL": "claude-unpriced-9", "ASM_PRICES": "claude-unpriced-9=1,2,3,4"})

    assert settings.price == Price(1, 2, 3, 4)


def test_every_role_s_model_is_asm_model_unless_its_own_is_set() -> None:
    assert ROLES == tuple(role.name for role in TEAM)
    assert {role: load({}).model_for(role) for role in ROLES} == dict.fromkeys(ROLES, "claude-sonnet-5-5")
    settings = load({"ASM_MODEL": "claude-haiku-4-5", "ASM_MODEL_ARCHITECT": "claude-opus-4-1",
                     "ASM_MODEL_PO": "claude-house-1", "ASM_PRICES": "claude-house-1=2,10,2.5,0.2"})

    assert [settings.model_for(role) for role in ROLES] == [
        "claude-opus-4-1", "claude-haiku-4-5", "claude-haiku-4-5", "claude-house-1"]
    assert settings.model_prices == {"claude-haiku-4-5": PRICES["claude-haiku-4-5"],
                                     "claude-opus-4-1": PRICES["claude-opus-4-1"],
                                     "claude-house-1": Price(2, 10, 2.5, 0.2)}


def test_an_unpriced_asm_model_is_named_though_every_role_has_a_priced_model_of_its_own() -> None:
    roles = {f"ASM_MODEL_{role.upper()}": "claude-haiku-4-5" for role in ROLES}
    with pytest.raises(ConfigError, match="^ASM_MODEL='claude-unpriced-9' has no known price"):
        load({"ASM_MODEL": "claude-unpriced-9", **roles})


def test_a_dated_model_id_is_priced_by_its_family() -> None:
    assert load({"ASM_MODEL": "claude-sonnet-4-5-20250929"}).price == PRICES["claude-sonnet-4-5"]


def test_the_smallest_claim_ttl_is_three_seconds() -> None:
    assert load({"ASM_CLAIM_TTL": "3"}).claim_ttl == 3


def test_every_variable_of_the_design_is_read_and_named_in_its_field_s_docstring() -> None:
    variables = {name: field.validation_alias for name, field in Settings.model_fields.items()}

    assert set(variables.values()) == {
        "ASM_REDIS_URL", "GITHUB_TOKEN", "ASM_GITHUB_URL", "ASM_REPOS", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
        "ASM_MODEL", "ASM_PRICES", "ASM_MODEL_ARCHITECT", "ASM_MODEL_SECURITY", "ASM_MODEL_TESTER", "ASM_MODEL_PO",
        "ASM_GITHUB_WRITE_INTERVAL", "ASM_TOOL_USER", "ASM_TRUSTED_PERMISSION", "ASM_MENTION", "ASM_MAX_CI_FIXES",
        "ASM_SANDBOX", "ASM_TOOL_NETWORK", "ASM_FLOWER_AUTH", "ASM_WORKSPACE_DIR", "ASM_READY_LABEL",
        "ASM_SCAN_INTERVAL", "ASM_MAX_REVISIONS", "ASM_AUTO_MERGE", "ASM_MAX_AGENT_RETRIES",
        "ASM_RETRY_BACKOFF_SECONDS", "ASM_MAX_COST_USD", "ASM_MAX_COST_PER_REPO_DAY_USD", "ASM_MAX_COST_PER_DAY_USD",
        "ASM_MAX_TURNS", "ASM_CLAIM_TTL", "ASM_TASK_TIME_LIMIT", "LOG_LEVEL",
        "ASM_HIGH_PRIORITY_LABEL", "ASM_LOW_PRIORITY_LABEL", "ASM_REPO_WEIGHTS", "ASM_MAX_RUNNING_PER_REPO",
        "ASM_GITHUB_APP_ID", "ASM_GITHUB_APP_PRIVATE_KEY", "ASM_GITHUB_APP_PRIVATE_KEY_PATH",
        "ASM_WEBHOOK_SECRET",
    }
    for name, field in Settings.model_fields.items():
        assert f"({variables[name]}" in (field.description or ""), name


def test_variable_names_are_case_sensitive() -> None:
    assert load({"asm_max_turns": "7", "Log_Level": "DEBUG"}) == Settings()


def test_redis_url_given_is_whether_the_variable_was_set_even_to_the_default() -> None:
    assert load({"ASM_REDIS_URL": "redis://localhost:6379/0"}).redis_url_given is True
    assert load({"ASM_REDIS_URL": " "}).redis_url_given is False


def test_settings_are_the_defaults_and_only_load_settings_reads_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASM_MAX_TURNS", "7")
    monkeypatch.chdir(tmp_path)

    assert Settings().max_turns == 50
    assert load_settings().max_turns == 7


# -- .env ------------------------------------------------------------------------------------------


def test_dotenv_is_read(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# settings for this machine\n"
        "\n"
        "export ASM_MAX_TURNS=7\n"
        'ASM_REPOS="acme/a, acme/b"\n'
        "ASM_READY_LABEL='go'\n"
        "GITHUB_TOKEN = ghp_fromfile\n"
    )

    settings = load({}, dotenv)

    assert settings.max_turns == 7
    assert settings.repos == ("acme/a", "acme/b")
    assert settings.ready_label == "go"
    assert settings.github_token == "ghp_fromfile"


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ASM_SCAN_INTERVAL=30\nASM_MAX_TURNS=7\n")

    settings = load({"ASM_SCAN_INTERVAL": "45"}, dotenv)

    assert settings.scan_interval == 45
    assert settings.max_turns == 7


def test_an_empty_value_in_the_environment_hides_dotenv_s_and_means_the_default(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ASM_MAX_TURNS=7\nASM_READY_LABEL=go\nGITHUB_TOKEN=ghp_fromfile\nASM_SCAN_INTERVAL=\n")

    settings = load({"ASM_MAX_TURNS": "", "ASM_READY_LABEL": "  ", "GITHUB_TOKEN": ""}, dotenv)

    assert (settings.max_turns, settings.ready_label, settings.github_token) == (50, "ready-for-dev", "")
    assert settings.scan_interval == 60


def test_dotenv_in_the_working_directory_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("ASM_MAX_REVISIONS=1\n")
    monkeypatch.chdir(tmp_path)

    assert load_settings({}).max_revisions == 1


def test_a_missing_dotenv_is_no_error(tmp_path: Path) -> None:
    assert read_dotenv(tmp_path / ".env") == {}
    assert load({}, tmp_path / ".env") == Settings()


def test_a_malformed_value_in_dotenv_names_the_variable(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ASM_MAX_TURNS=lots\n")

    with pytest.raises(ConfigError, match="ASM_MAX_TURNS"):
        load({}, dotenv)


def test_a_malformed_dotenv_line_names_the_file_and_line(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ASM_MAX_TURNS=5\njust some words\n")

    with pytest.raises(ConfigError, match=r"\.env:2"):
        load({}, dotenv)


def test_a_malformed_dotenv_line_is_not_echoed(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ghp_pasted_without_a_name\n")

    with pytest.raises(ConfigError) as caught:
        load({}, dotenv)

    assert str(caught.value) == f"{dotenv}:1: expected KEY=VALUE"


# -- require and secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize(("need", "variable"), [("github", "GITHUB_TOKEN"), ("repos", "ASM_REPOS"),
                                                ("model", "ANTHROPIC_API_KEY")])
def test_require_names_the_missing_variable(need: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        require(load({}), need)


def test_require_names_the_first_missing_of_several() -> None:
    settings = load({"GITHUB_TOKEN": "ghp_x"})

    with pytest.raises(ConfigError, match="ASM_REPOS"):
        require(settings, "github", "repos", "model")


def test_require_passes_when_everything_is_set() -> None:
    settings = load({"GITHUB_TOKEN": "ghp_x", "ASM_REPOS": "acme/shop", "ANTHROPIC_API_KEY": "sk-ant-y"})

    require(settings, "github", "repos", "model")  # no error


def test_secrets_lists_the_values_that_are_set() -> None:
    assert load({}).secrets == ()
    assert load({"GITHUB_TOKEN": "ghp_x"}).secrets == ("ghp_x",)
    assert load({"GITHUB_TOKEN": "ghp_x", "ANTHROPIC_API_KEY": "sk-ant-y"}).secrets == ("ghp_x", "sk-ant-y")
    assert load({"ASM_WEBHOOK_SECRET": "whsec-z"}).secrets == ("whsec-z",)
    assert "whsec-z" not in repr(load({"ASM_WEBHOOK_SECRET": "whsec-z"}))
    assert "ASM_WEBHOOK_SECRET" in SECRET_VARIABLES


FLOWER_PASSWORD = "hunter2-flower"
REDIS_PASSWORD = "hunter2-redis"


@pytest.mark.parametrize(
    ("environ", "secret"),
    [
        ({"ASM_FLOWER_AUTH": FLOWER_PASSWORD}, FLOWER_PASSWORD),
        ({"ASM_FLOWER_AUTH": f":{FLOWER_PASSWORD}"}, FLOWER_PASSWORD),
        ({"ASM_REDIS_URL": f"http://asm:{REDIS_PASSWORD}@redis.internal"}, REDIS_PASSWORD),
        ({"ASM_REDIS_URL": f"redis://asm:{REDIS_PASSWORD}@redis.internal:99999/0"}, REDIS_PASSWORD),
        ({"GITHUB_TOKEN": "ghp_hunter2", "ANTHROPIC_API_KEY": "sk-ant-hunter2", "ASM_MAX_TURNS": "x"}, "hunter2"),
        ({"GITHUB_TOKEN": "ghp_hunter2", "ASM_PRICES": "claude-x"}, "hunter2"),
    ],
)
def test_no_error_echoes_a_secret(environ: dict[str, str], secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(environ)

    assert secret not in "".join(traceback.format_exception(caught.value))


def test_a_bad_secret_is_named_but_not_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"ASM_FLOWER_AUTH": FLOWER_PASSWORD})

    assert str(caught.value) == "ASM_FLOWER_AUTH=(not shown): must be user:password"
    assert "ASM_FLOWER_AUTH" in SECRET_VARIABLES


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = load({"GITHUB_TOKEN": "ghp_x1", "ANTHROPIC_API_KEY": "sk-ant-y1", "ASM_FLOWER_AUTH": "u:pw1"})

    assert all(secret not in repr(settings) for secret in ("ghp_x1", "sk-ant-y1", "u:pw1"))


# -- ASM_REDIS_URL's password: never shown, always redacted --------------------------------------------

# Passwords no message word, host or port contains three characters of; each is attacked as written in the URL.
BAD_REDIS_URLS = [
    ("redis://:Kq7/Zw9xV@redis.internal:6379/0", "Kq7/Zw9xV"),
    ("redis://asm:Kq7/Zw@9xV@redis.internal:6379/0", "Kq7/Zw@9xV"),
    ("redis://asm:Kq7@Zw/9xV@redis.internal:6379/0", "Kq7@Zw/9xV"),
    ("redis://:Kq7?Zw9xV@redis.internal/0", "Kq7?Zw9xV"),
    ("redis://:Kq7#Zw9xV@redis.internal/0", "Kq7#Zw9xV"),
    ("redis://:Kq7[Zw]9xV@redis.internal/0", "Kq7[Zw]9xV"),
    ("redis://asm:Kq7@Zw9xV@redis.internal:0/0", "Kq7@Zw9xV"),
    ("redis://asm:Kq7%40Zw9xV@redis.internal:70000/0", "Kq7%40Zw9xV"),
    ("redis://asm:Kq7Zw9xV@redis.internal:63a9/0", "Kq7Zw9xV"),
    ("redis://asm:Kq7Zw9xV", "Kq7Zw9xV"),  # @host forgotten: the "port" is the password
    ("redis://asm:123456789", "123456789"),
    ("redis://:Kq7Zw9xV@redis.internal:70000/0?password=Qm4Tn8Rw", "Kq7Zw9xV Qm4Tn8Rw"),
    ("redis://redis.internal:0/0?password=Kq7%40Zw9xV", "Kq7%40Zw9xV"),
    ("redis://redis.internal:63a9/0?password=Kq7@Zw9xV", "Kq7@Zw9xV"),
    ("redis://redis.internal/0?password=Kq7#Zw@9xV", "Kq7#Zw@9xV"),
    ("redis://:Kq7/Zw9xV@redis.internal/0?password=Qm4@Tn8Rw", "Kq7/Zw9xV Qm4@Tn8Rw"),
    ("http://asm:Kq7/Zw9xV@redis.internal/0", "Kq7/Zw9xV"),
    ("asm:Kq7Zw9xV@redis.internal:6379", "Kq7Zw9xV"),
]
GOOD_REDIS_URLS = [
    ("redis://asm:Kq7Zw9xV@redis.internal:6379/0", "Kq7Zw9xV"),
    ("redis://asm:Kq7@Zw9xV@redis.internal:6379/0", "Kq7@Zw9xV"),
    ("redis://:Kq7:Zw9xV@redis.internal/0", "Kq7:Zw9xV"),
    ("redis://asm:Kq7%40Zw9xV@redis.internal/0", "Kq7%40Zw9xV"),
    ("redis://asm:Kq7%2FZw%3F9xV@redis.internal/0", "Kq7%2FZw%3F9xV"),
    ("redis://redis.internal:6379/0?password=Kq7Zw9xV", "Kq7Zw9xV"),
    ("redis://redis.internal/0?db=1&password=Kq7%40Zw9xV", "Kq7%40Zw9xV"),
    ("redis://redis.internal/0?password=Kq7@Zw+9xV", "Kq7@Zw+9xV"),
    ("redis://:Kq7Zw9xV@redis.internal/0?password=Qm4Tn8Rw", "Kq7Zw9xV Qm4Tn8Rw"),
    ("rediss://asm:Kq7%23Zw9xV@redis.internal:6380/1", "Kq7%23Zw9xV"),
    ("unix://:Kq7%40Zw9xV@/run/redis.sock?db=1", "Kq7%40Zw9xV"),
]


def fragments(passwords: str) -> set[str]:
    """Every 3 characters of each password, as written and percent-decoded (+ too, as a query's value)."""
    forms = {form for written in passwords.split() for form in (written, unquote(written), unquote_plus(written))}
    return {form[i:i + 3] for form in forms for i in range(len(form) - 2)}


@pytest.mark.parametrize(("url", "passwords"), BAD_REDIS_URLS)
def test_a_bad_redis_url_is_one_line_naming_the_variable_and_no_part_of_its_password(url: str, passwords: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({"ASM_REDIS_URL": url})

    message = str(caught.value)
    assert "\n" not in message and message.startswith("ASM_REDIS_URL=")
    printed = "".join(traceback.format_exception(caught.value))
    assert not {fragment for fragment in fragments(passwords) if fragment in printed}, message


CHARACTERS = "seems to have a / ? # [ or ] in its user or password; write them as %2F %3F %23 %5B %5D"
PORT = "has a port that is not a number from 1 to 65535"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:pa/ss@host:6379/0",
         f"ASM_REDIS_URL=(not shown): {CHARACTERS}"),
        ("redis://:pa?ss@host:6379/0",
         f"ASM_REDIS_URL=(not shown): {CHARACTERS}"),
        ("redis://:pa@ss/x@host:6379/0",
         f"ASM_REDIS_URL=(not shown): {CHARACTERS}"),
        ("redis://:pa@ss@host:0/0", f"ASM_REDIS_URL='redis://host:0': {PORT}"),
        ("redis://:pa@ss@host:70000/0", f"ASM_REDIS_URL='redis://host': {PORT}"),
        ("redis://:pass@host:63a9/0", f"ASM_REDIS_URL='redis://host': {PORT}"),
        ("redis://asm:secret", f"ASM_REDIS_URL='redis://asm': {PORT}"),
        ("redis://:pass@[::1]:6379/0?password=x&db=zero",
         "ASM_REDIS_URL='redis://[::1]:6379': has a query parameter whose value redis-py cannot read"),
        ("redis://[not-v6]:6379/0",
         "ASM_REDIS_URL=(not shown): has a host that is not a name, an IPv4 address or an [IPv6] address"),
        ("http://:pass@host:6379/0?password=x",
         "ASM_REDIS_URL='http://host:6379': must be a redis://, rediss:// or unix:// URL"),
        ("host:6379", "ASM_REDIS_URL=(not shown): must be a redis://, rediss:// or unix:// URL"),
    ],
)
def test_a_bad_redis_url_shows_at_most_scheme_host_and_port_and_the_right_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({"ASM_REDIS_URL": url})

    assert str(caught.value) == message


@pytest.mark.parametrize(("url", "passwords"), GOOD_REDIS_URLS)
def test_secrets_hold_the_redis_password_redis_py_sends_and_each_as_written(url: str, passwords: str) -> None:
    secrets = load({"ASM_REDIS_URL": url}).secrets

    assert parse_url(url)["password"] in secrets
    for written in passwords.split():
        assert written in secrets
        assert unquote_plus(written) in secrets if "?" in url else unquote(written) in secrets


def test_secrets_hold_the_decoded_redis_password_not_only_the_encoded_one() -> None:
    assert load({"ASM_REDIS_URL": "redis://asm:p%40ss-word@host/0"}).secrets == ("p@ss-word", "p%40ss-word")
    assert load({"ASM_REDIS_URL": "redis://host/0?password=p%40ss-word"}).secrets == ("p@ss-word", "p%40ss-word")
    assert load({"ASM_REDIS_URL": "redis://asm:pass-word@host/0"}).secrets == ("pass-word",)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user:pass@host:6379/0", "redis://***@host:6379/0"),
        ("redis://:pass@host:6379/0", "redis://***@host:6379/0"),
        ("redis://:pa@ss@host:6379/0", "redis://***@host:6379/0"),
        ("redis://:pa/ss@host:6379/0", "redis://***@host:6379/0"),
        ("redis://:pa?ss@host:6379/0", "redis://***@host:6379/0"),
        ("redis://:pa#ss@host:6379/0", "redis://***@host:6379/0"),
        ("redis://:pa@ss/x@host:6379/0", "redis://***@host:6379/0"),
        ("redis://u:p%40ss@host:6379/0", "redis://***@host:6379/0"),
        ("redis://host:6379/0?password=secret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("redis://host:6379/0?db=1&pass%77ord=secret", "redis://host:6379/0?db=1&pass%77ord=***"),
        ("redis://host/0?password=p@ss", "redis://host/0?password=***"),
        ("redis://:pa/ss@host/0?password=p@ss", "redis://***"),
        ("redis://user:secret", "redis://***"),
        ("unix://:pass@/run/redis.sock?db=1", "unix://***@/run/redis.sock?db=1"),
        ("unix:///run/redis@1.sock", "unix:///run/redis@1.sock"),
        ("https://user:token@ghe.example.com/api/v3", "https://***@ghe.example.com/api/v3"),
    ],
)
def test_without_password_masks_every_shape_of_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


@pytest.mark.parametrize(("url", "passwords"), BAD_REDIS_URLS + GOOD_REDIS_URLS)
def test_without_password_shows_no_part_of_a_password(url: str, passwords: str) -> None:
    shown = without_password(url)

    assert not {fragment for fragment in fragments(passwords) if fragment in shown}, shown
