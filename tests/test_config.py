"""Settings: DESIGN.md's defaults, every variable parsed, every malformed value named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from asm.config import Settings, load_settings, read_dotenv, require
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
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(("text", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False),
                                                ("False", False), ("no", False), ("off", False)])
def test_auto_merge_spellings(text: str, expected: bool) -> None:
    assert load({"ASM_AUTO_MERGE": text}).auto_merge is expected


def test_settings_are_frozen() -> None:
    settings = load({})

    with pytest.raises(AttributeError):
        settings.max_turns = 1  # type: ignore[misc]


# -- malformed values name their variable ----------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
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
    ],
)
def test_a_malformed_value_raises_config_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({variable: value})

    assert variable in str(caught.value)


def test_an_unpriced_model_is_accepted_once_asm_prices_prices_it() -> None:
    settings = load({"ASM_MODEL": "claude-unpriced-9", "ASM_PRICES": "claude-unpriced-9=1,2,3,4"})

    assert settings.price == Price(1, 2, 3, 4)


def test_a_dated_model_id_is_priced_by_its_family() -> None:
    assert load({"ASM_MODEL": "claude-sonnet-4-5-20250929"}).price == PRICES["claude-sonnet-4-5"]


def test_the_smallest_claim_ttl_is_three_seconds() -> None:
    assert load({"ASM_CLAIM_TTL": "3"}).claim_ttl == 3


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
