"""asm as a GitHub App, against the sandbox GitHub, with a real RS256 key: the JWT, installation tokens and their
refresh, a token per installation for every request, the repositories from the installations, the bot as asm's
login, the settings and their one-line errors, the key never shown."""

from __future__ import annotations

import base64
import logging
import subprocess
import time
from pathlib import Path

import github
import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from asm.config import Settings, load_settings
from asm.deps import github_access, github_gateway
from asm.errors import BadInput, ConfigError, WorkspaceError
from asm.fleet.claim import Claim
from asm.fleet.queue import enqueue
from asm.fleet.scan import scan
from asm.github import GitHub
from asm.github_app import (
    JWT_SECONDS,
    REFRESH_MARGIN_SECONDS,
    RELIST_SECONDS,
    AppAccess,
    AppKey,
)
from asm.guard.jail import Jail
from asm.guard.redaction import RedactingFilter, Secrets, redact
from asm.keys import IssueRef
from asm.sandbox.fleet import Sandbox, point_process_at
from asm.webhook.events import read
from asm.webhook.intake import take
from asm.workspace import Workspaces

APP_ID = 4711
SLUG = "asm-helper"
BOT = f"{SLUG}[bot]"


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None) -> str:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(key: rsa.RSAPrivateKey, tmp_path: Path) -> Path:
    path = tmp_path / "app.pem"
    path.write_text(private_pem(key))
    return path


def app_env(key_file: Path) -> dict[str, str]:
    return {"GITHUB_TOKEN": "", "ASM_GITHUB_APP_ID": str(APP_ID), "ASM_GITHUB_APP_PRIVATE_KEY_PATH": str(key_file)}


@pytest.fixture
def installed(sandbox: Sandbox, key: rsa.RSAPrivateKey) -> dict[str, int]:
    """The App, installed twice: on acme's two repositories and on globex's one; a fourth repository without it."""
    apps = sandbox.github.apps
    apps.create_app(SLUG, key.public_key(), app_id=APP_ID)
    for name in ("acme/one", "acme/two", "globex/three", "initech/four"):
        sandbox.create_repo(name)
    return {"acme": apps.install(APP_ID, "acme", ["acme/one", "acme/two"]),
            "globex": apps.install(APP_ID, "globex", ["globex/three"])}


@pytest.fixture
def app_settings(sandbox: Sandbox, installed: dict[str, int], key_file: Path) -> Settings:
    return point_process_at(sandbox, ASM_REPOS="", **app_env(key_file))


@pytest.fixture
def gateway(app_settings: Settings) -> GitHub:
    return github_gateway(app_settings)


# -- the key and the JWT -------------------------------------------------------------------------------


def test_the_jwt_is_rs256_issued_a_minute_ago_ends_within_ten_minutes_and_names_the_app(
        key: rsa.RSAPrivateKey) -> None:
    now = time.time()
    token = AppKey(private_pem(key)).jwt(str(APP_ID), now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, key.public_key(), algorithms=["RS256"], options={"verify_iat": False})
    assert claims["iss"] == str(APP_ID)
    assert int(now) - 90 <= claims["iat"] <= int(now) - 30  # in the past, for a clock behind GitHub's
    assert claims["exp"] - int(now) == JWT_SECONDS <= 600


def test_a_key_on_one_line_with_escaped_line_breaks_is_read_as_a_env_file_holds_it(key: rsa.RSAPrivateKey) -> None:
    one_line = private_pem(key).strip().replace("\n", "\\n")
    token = AppKey(one_line).jwt("1", time.time())
    assert jwt.decode(token, key.public_key(), algorithms=["RS256"], options={"verify_iat": False})["iss"] == "1"


@pytest.mark.parametrize("what", ["garbage", "truncated", "ec", "passphrase", "public"])
def test_anything_but_a_pem_rsa_private_key_is_refused_without_being_shown(key: rsa.RSAPrivateKey, what: str) -> None:
    pem = private_pem(key)
    given = {
        "garbage": "-----BEGIN PRIVATE KEY-----\nnot-base64-at-all\n-----END PRIVATE KEY-----",
        "truncated": pem[: len(pem) // 2],
        "ec": private_pem(ec.generate_private_key(ec.SECP256R1())),
        "passphrase": private_pem(key, b"secret"),
        "public": key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    }[what]
    with pytest.raises(ValueError) as refused:
        AppKey(given)
    assert "PEM RSA private key" in str(refused.value)
    for line in given.splitlines()[1:-1]:
        assert line not in str(refused.value)
    assert "<not shown>" in repr(AppKey(pem)) and pem.splitlines()[1] not in repr(AppKey(pem))


# -- settings -------------------------------------------------------------------------------------------


def test_the_app_settings_are_read_and_the_key_is_in_the_secrets_asm_redacts(key: rsa.RSAPrivateKey,
                                                                          key_file: Path) -> None:
    pem = private_pem(key)
    for given in ({"ASM_GITHUB_APP_PRIVATE_KEY": pem}, {"ASM_GITHUB_APP_PRIVATE_KEY_PATH": str(key_file)}):
        settings = load_settings({"ASM_GITHUB_APP_ID": "4711", **given}, dotenv=None)
        assert settings.github_app_id == "4711" and settings.app_key is not None
        lines = pem.splitlines()[1:-1]
        assert set(lines) <= set(settings.secrets)  # what the key written out in any form holds
        assert not any(line in repr(settings) for line in lines)


def test_github_token_keeps_working_without_the_app_settings(sandbox: Sandbox, settings: Settings) -> None:
    gateway = github_gateway(settings)
    assert settings.app_key is None and not gateway.access.app
    assert gateway.whoami() == "asm-sandbox-bot"


BAD = [
    ({"ASM_GITHUB_APP_ID": "4711"},
     "ASM_GITHUB_APP_ID is set but neither ASM_GITHUB_APP_PRIVATE_KEY nor ASM_GITHUB_APP_PRIVATE_KEY_PATH is"),
    ({"ASM_GITHUB_APP_PRIVATE_KEY": "{pem}"}, "ASM_GITHUB_APP_PRIVATE_KEY is set but ASM_GITHUB_APP_ID is not"),
    ({"ASM_GITHUB_APP_ID": "4711", "ASM_GITHUB_APP_PRIVATE_KEY": "{pem}", "ASM_GITHUB_APP_PRIVATE_KEY_PATH": "{path}"},
     "ASM_GITHUB_APP_PRIVATE_KEY and ASM_GITHUB_APP_PRIVATE_KEY_PATH are both set; give the App's key one way"),
    ({"ASM_GITHUB_APP_ID": "4711", "ASM_GITHUB_APP_PRIVATE_KEY": "{pem}", "GITHUB_TOKEN": "ghp_x"},
     "GITHUB_TOKEN and ASM_GITHUB_APP_ID are both set; asm authenticates with a token or as a GitHub App: unset one"),
    ({"ASM_GITHUB_APP_ID": "4711", "ASM_GITHUB_APP_PRIVATE_KEY": "{broken}"},
     "ASM_GITHUB_APP_PRIVATE_KEY=(not shown): is not a PEM RSA private key (the .pem file GitHub generates for the "
     "App)"),
    ({"ASM_GITHUB_APP_ID": "4711", "ASM_GITHUB_APP_PRIVATE_KEY_PATH": "{missing}"},
     "ASM_GITHUB_APP_PRIVATE_KEY_PATH='{missing}': cannot be read (FileNotFoundError)"),
    ({"ASM_GITHUB_APP_ID": "my-app", "ASM_GITHUB_APP_PRIVATE_KEY": "{pem}"},
     "ASM_GITHUB_APP_ID='my-app': must be the App's id, a number (its settings page says it)"),
]


@pytest.mark.parametrize(("given", "said"), BAD)
def test_bad_app_settings_are_one_line_naming_the_variable_never_the_key(
        key: rsa.RSAPrivateKey, key_file: Path, given: dict[str, str], said: str) -> None:
    pem = private_pem(key)
    # A key cut in half: its lines are real key material, which the message must not quote.
    values = {"pem": pem, "broken": pem[: len(pem) // 2], "path": str(key_file),
              "missing": str(key_file.parent / "missing.pem")}
    with pytest.raises(ConfigError) as refused:
        load_settings({name: value.format(**values) for name, value in given.items()}, dotenv=None)
    message = str(refused.value)
    assert message == said.format(**values) and "\n" not in message
    assert not any(line in message for line in pem.splitlines()[1:-1])


def test_a_bad_key_stops_an_asm_command_with_one_line_and_exit_status_2(
        sandbox: Sandbox, asm_command, key: rsa.RSAPrivateKey) -> None:
    broken = private_pem(key)[:300]
    done = asm_command(sandbox, "scan", GITHUB_TOKEN="", ASM_GITHUB_APP_ID="4711", ASM_GITHUB_APP_PRIVATE_KEY=broken)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "ASM_GITHUB_APP_PRIVATE_KEY=(not shown)" in done.stderr
    assert not any(line in done.stderr for line in broken.splitlines()[1:])


def test_the_private_key_never_reaches_a_log_line_or_a_comment_in_any_form(key: rsa.RSAPrivateKey,
                                                                        key_file: Path) -> None:
    settings = load_settings({"ASM_GITHUB_APP_ID": "4711", "ASM_GITHUB_APP_PRIVATE_KEY_PATH": str(key_file)},
                             dotenv=None)
    pem = private_pem(key)
    lines = pem.splitlines()[1:-1]
    body = "".join(lines)
    pasted = [pem, lines[4], body, base64.b64encode(pem.encode()).decode(), pem.replace("\n", "\\n"),
              lines[7].encode().hex()]
    for text in pasted:
        cleaned = redact(f"the agent printed: {text}", settings.secrets)
        assert not any(line in cleaned for line in lines), text[:20]
    record = logging.LogRecord("asm", logging.ERROR, __file__, 1, "key was %s", (pem,), None)
    RedactingFilter(settings.secrets).filter(record)
    assert not any(line in record.getMessage() for line in lines)


# -- tokens ---------------------------------------------------------------------------------------------


def connect(settings: Settings):  # noqa: ANN201
    """Plain PyGithub clients on the sandbox, for an AppAccess on the sandbox's clock."""
    return lambda auth: github.Github(auth=auth, base_url=settings.github_url, seconds_between_writes=0)


def test_an_installation_token_is_kept_then_replaced_well_before_it_expires(
        sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, app_settings: Settings) -> None:
    state = sandbox.github
    clock = lambda: state.clock.now().timestamp()  # noqa: E731  asm's clock is the sandbox's: tests move both
    access = AppAccess(str(APP_ID), AppKey(private_pem(key)), connect(app_settings), clock=clock)
    first = access.token(installed["acme"])
    assert access.token(installed["acme"]) == first  # kept, not minted per request
    state.advance(3600 - REFRESH_MARGIN_SECONDS - 60)  # 11 minutes left: still kept
    assert access.token(installed["acme"]) == first
    state.advance(120)  # 9 minutes left: replaced, though GitHub would still take it
    second = access.token(installed["acme"])
    assert second != first
    assert state.apps.by_token(first) is not None, "the old token had not expired: it was replaced before"
    ending = state.apps.token_of(second)
    assert ending is not None and ending.expires_at.timestamp() - clock() >= 3600 - 1
    assert [t.installation for t in state.apps.minted] == [installed["acme"]] * 2


def test_short_lived_tokens_are_replaced_at_half_their_life(
        sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, app_settings: Settings) -> None:
    state = sandbox.github
    state.apps.set_token_seconds(APP_ID, 120)
    clock = lambda: state.clock.now().timestamp()  # noqa: E731
    access = AppAccess(str(APP_ID), AppKey(private_pem(key)), connect(app_settings), clock=clock)
    first = access.token(installed["globex"])
    state.advance(50)
    assert access.token(installed["globex"]) == first
    state.advance(15)  # 55 s left of 120: replaced, never handed out near its end
    assert access.token(installed["globex"]) != first


def test_every_request_carries_the_token_of_the_installation_holding_its_repository(
        sandbox: Sandbox, installed: dict[str, int], gateway: GitHub) -> None:
    state = sandbox.github
    numbers = {repo: state.create_issue(repo, f"issue of {repo}", "", ["ready-for-dev"])
               for repo in ("acme/one", "globex/three")}
    for repo, number in numbers.items():
        ref = IssueRef(repo, number)
        gateway.ensure_labels(repo)
        gateway.comment(ref, "on it")
        gateway.move_labels(ref, "in-progress", ["ready-for-dev"], frozenset({"ready-for-dev"}))
        assert gateway.history(ref).labels[0].by == "sandbox-user"  # GraphQL, with the same token
        assert [glance.number for glance in gateway.overview(repo, "needs-clarification")] == []
        assert gateway.permission(repo, "sandbox-user") == "admin"
        assert state.issue_record(repo, number).comments[-1].author == BOT
    # Each installation's token reaches only its repositories (the sandbox answers 404 elsewhere, as GitHub
    # does), so the work above used each repository's own: one token per installation, minted once.
    assert sorted(t.installation for t in state.apps.minted) == sorted(installed.values())
    with pytest.raises(BadInput, match="not one the GitHub App is installed on"):
        gateway.issue(IssueRef("initech/four", 1))


def test_asm_is_the_app_s_bot_and_knows_its_own_comments_and_pull_requests_in_graphql(
        sandbox: Sandbox, installed: dict[str, int], gateway: GitHub) -> None:
    state, repo = sandbox.github, "acme/two"
    assert gateway.whoami() == BOT
    number = state.create_issue(repo, "ask", "", ["needs-clarification"])
    state.add_comment(repo, number, "🤖 **asm**: a question", author=BOT)
    # GraphQL names a bot without REST's [bot]; asm reads it as REST names it, as whoami does.
    raw = gateway.access.client(repo).requester.graphql_query(
        'query($n: Int!) { repository(owner: "acme", name: "two") { issue(number: $n) { comments(first: 5) { '
        'nodes { author { login __typename } } } } } }', {"n": number})[1]
    assert raw["data"]["repository"]["issue"]["comments"]["nodes"][0]["author"] == {"login": SLUG,
                                                                                   "__typename": "Bot"}
    assert [remark.author for remark in gateway.comments(IssueRef(repo, number))] == [BOT]
    clone = sandbox.root / "clone"
    subprocess.run(["git", "clone", "-q", state.repo(repo).clone_url, str(clone)], check=True)
    identity = ["-c", "user.name=x", "-c", "user.email=x@x", "-c", "commit.gpgsign=false"]
    for args in (["checkout", "-qb", f"ai-feature/issue-{number}"], ["commit", "-q", "--allow-empty", "-m", "x"],
                 ["push", "-q", "origin", f"ai-feature/issue-{number}"]):
        subprocess.run(["git", *identity, *args], cwd=clone, check=True)
    pull = state.create_pull(repo, "[AI] ask", f"Closes #{number}", f"ai-feature/issue-{number}", "main", author=BOT)
    [glance] = [g for g in gateway.overview(repo, "needs-clarification") if g.is_pull]
    assert glance.author == BOT and glance.is_asms(BOT)
    thread = gateway.pull_thread(repo, pull.number)
    assert thread is not None and thread.is_asms(BOT)


# -- repositories ---------------------------------------------------------------------------------------


def test_the_repositories_are_the_installations_narrowed_by_asm_repos(
        sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, app_settings: Settings) -> None:
    state = sandbox.github
    access = AppAccess(str(APP_ID), AppKey(private_pem(key)), connect(app_settings),
                       clock=lambda: state.clock.now().timestamp())
    gateway = GitHub(access, "ready-for-dev")
    assert gateway.repositories(()) == ("acme/one", "acme/two", "globex/three")
    assert gateway.repositories(("GLOBEX/three", "initech/four")) == ("globex/three",)
    assert gateway.refuses("initech/four", ()) == "is not one the GitHub App is installed on"
    assert gateway.refuses("acme/one", ("globex/three",)) == "is not in ASM_REPOS"
    assert gateway.refuses("acme/one", ()) == ""
    # A repository added to an installation is found (the list is read again for one not in it).
    sandbox.create_repo("acme/new")
    state.apps.add_repository(installed["acme"], "acme/new")
    assert gateway.refuses("acme/new", ()) != "", "the list was read for initech/four a moment ago"
    state.advance(RELIST_SECONDS)
    assert gateway.refuses("acme/new", ()) == "" and gateway.repo("acme/new").full_name == "acme/new"
    assert "acme/new" in gateway.repositories(())


def test_the_scan_works_the_installations_repositories_narrowed_by_asm_repos(
        sandbox: Sandbox, installed: dict[str, int], key_file: Path, redis_client: redis.Redis) -> None:
    from asm.celery_app import app

    for repo in ("acme/one", "acme/two", "globex/three", "initech/four"):
        sandbox.add_issue(repo, f"ready in {repo}")
    every = github_gateway(point_process_at(sandbox, ASM_REPOS="", **app_env(key_file)))
    found = scan(every, redis_client, app, (), "ready-for-dev", 600)
    assert sorted(item.issue.repo for item in found.found) == ["acme/one", "acme/two", "globex/three"]
    assert not found.failed
    redis_client.flushall()
    narrowed = point_process_at(sandbox, ASM_REPOS="acme/two,initech/four", **app_env(key_file))
    result = scan(github_gateway(narrowed), redis_client, app, narrowed.repos, "ready-for-dev", 600)
    assert [item.issue.repo for item in result.found] == ["acme/two"]
    assert result.failed == {"initech/four": "the GitHub App is not installed on it"}


def test_git_gets_the_token_of_the_installation_holding_the_remote_and_commits_are_by_the_bot(
        sandbox: Sandbox, installed: dict[str, int], app_settings: Settings) -> None:
    access = github_access(app_settings)
    state = sandbox.github
    token = access.git_token(state.repo("globex/three").clone_url)
    held = state.apps.token_of(token)
    assert held is not None and held.installation == installed["globex"]
    with pytest.raises(BadInput, match="no installation of the GitHub App holds"):
        access.git_token(state.repo("initech/four").clone_url)
    name, email = access.git_identity()
    assert name == BOT and email == f"{sum(BOT.encode()) + 1}+{BOT}@users.noreply.github.com"



class NewTokenEachTime:
    """Git credentials that would hand out a different token at every ask: how often git asks is what is seen."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def git_token(self, remote: str) -> str:
        self.asked.append(remote)
        return f"ghs_{len(self.asked)}"

    def git_identity(self) -> tuple[str, str]:
        return BOT, "1+asm-helper[bot]@users.noreply.github.com"


def test_a_git_command_asks_for_its_token_once_and_keeps_it_through_every_retry(tmp_path: Path) -> None:
    credentials = NewTokenEachTime()
    workspaces = Workspaces(tmp_path / "work", credentials, Jail(), Secrets([]), remote_backoff_seconds=0)
    nowhere = f"file://{tmp_path / 'nowhere.git'}"
    with pytest.raises(WorkspaceError):
        workspaces.remote_branch_sha(nowhere, "main")  # three attempts, all failing
    assert credentials.asked == [nowhere]


class Sent:
    """A Celery app's `send_task`, kept: what would have gone to the queue."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, list[object]]] = []

    def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None,
                  priority: int | None = None) -> None:
        self.tasks.append((name, args))


def test_every_spelling_of_a_repository_is_one_issue_to_the_queue_and_the_claim(
        sandbox: Sandbox, installed: dict[str, int], key_file: Path) -> None:
    """ASM_REPOS spelled otherwise than GitHub: the scan (the App's spelling), a webhook (ASM_REPOS') and `asm enqueue`
    (the operator's) must all name one issue, or two deliveries would both win a claim on it."""
    number = sandbox.add_issue("acme/one", "Do it", "Please.")
    settings = point_process_at(sandbox, ASM_REPOS="ACME/One", **app_env(key_file))
    client, sent = redis.Redis.from_url(sandbox.redis_url), Sent()

    scan(github_gateway(settings), client, sent, settings.repos, settings.ready_label, 3600)
    payload = {"action": "labeled", "label": {"name": settings.ready_label}, "repository": {"full_name": "acme/one"},
               "issue": {"number": number, "state": "open", "labels": [{"name": settings.ready_label}]}}
    take(read("issues", payload, settings.repos, settings.ready_label), client, sent, settings)
    assert enqueue(client, sent, IssueRef.parse("Acme/ONE", number), by="operator", stale_after=3600) is None

    assert client.hkeys("asm:queued") == [f"acme/one#{number}".encode()]
    assert len([task for task in sent.tasks if task[0] == "asm.process_issue"]) == 1
    with Claim(client, IssueRef("acme/one", number), 60, "w1"):
        assert not Claim(client, IssueRef("Acme/One", number), 60, "w2").acquire()
