"""asm installed as a GitHub App, end to end: a real worker authenticates with a real RS256 key, the scan finds the
installations' repositories, and the issue becomes a pull request whose comments, labels and commit are the App's
bot's; the key and the installation tokens reach no log, comment, pull request, file or git config."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from asm.deps import github_gateway
from asm.fleet.scan import scan
from asm.keys import IssueRef
from asm.observe.transcripts import Transcripts
from asm.sandbox.fleet import Sandbox, running_fleet, wait_for
from asm.sandbox.redis_server import RedisServer
from asm.sandbox.sample_repo import SOLUTIONS

APP_ID = 31337
SLUG = "asm-fleet"
BOT = f"{SLUG}[bot]"
SETTLE_TIMEOUT = 120


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory,
          key: rsa.RSAPrivateKey) -> Iterator[Sandbox]:
    """A worker set up as the App (no GITHUB_TOKEN, no ASM_REPOS): the App is registered once the sandbox runs."""
    root = tmp_path_factory.mktemp("app-fleet")
    key_path = root / "app.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    with running_fleet(root / "box", redis_server.url, slots=2, name="app", GITHUB_TOKEN="",
                       ASM_GITHUB_APP_ID=str(APP_ID), ASM_GITHUB_APP_PRIVATE_KEY_PATH=str(key_path)) as box:
        assert box.github is not None
        box.github.apps.create_app(SLUG, key.public_key(), app_id=APP_ID)
        yield box


def key_lines(key: rsa.RSAPrivateKey) -> list[str]:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    return pem.splitlines()[1:-1]


def test_as_a_github_app_an_issue_becomes_a_pull_request_by_the_app_s_bot(fleet: Sandbox,
                                                                           key: rsa.RSAPrivateKey) -> None:
    from asm.celery_app import app

    state = fleet.github
    assert state is not None
    repo, elsewhere = fleet.create_repo("acme/app-made"), fleet.create_repo("initech/not-installed")
    installation = state.apps.install(APP_ID, "acme", [repo])
    solution = SOLUTIONS[3]
    probe = f"env > probe-env.txt; git config --list > probe-git.txt; cat {fleet.root.parent / 'app.pem'} " \
            "> probe-key.txt 2>&1"
    number = fleet.add_issue(repo, solution.title, f"asm-sandbox: run={probe}")
    fleet.add_issue(elsewhere, "not the App's", "")
    client = redis.Redis.from_url(fleet.redis_url)
    settings = fleet.settings()
    assert settings.repos == () and settings.app_key is not None
    result = scan(github_gateway(settings), client, app, settings.repos, settings.ready_label, 600)
    assert [(item.issue, item.why) for item in result.found] == [(IssueRef(repo, number), "ready")]
    assert wait_for(lambda: fleet.settled(repo, [number]), SETTLE_TIMEOUT), fleet.workers[0].log()[-4000:]

    [pull] = [p for p in state.pulls(repo) if p.head == f"ai-feature/issue-{number}"]
    assert state.issue(repo, number).labels == ("in-review",)
    assert state.pull_record(repo, pull.number).author == BOT
    record = state.issue_record(repo, number)
    assert record.comments and {comment.author for comment in record.comments} == {BOT}
    assert {event.actor for event in record.events if event.label and event.label.name != "ready-for-dev"} == {BOT}
    bot_id = sum(BOT.encode()) + 1  # the sandbox's id of the bot user, as GET /users/{login} gives it
    author = subprocess.run(["git", "log", "-1", "--format=%an <%ae>|%cn <%ce>", pull.head],
                            cwd=state.repo(repo).path, capture_output=True, text=True, check=True).stdout.strip()
    assert author == f"{BOT} <{bot_id}+{BOT}@users.noreply.github.com>|{BOT} <{bot_id}+{BOT}@users.noreply.github.com>"
    assert state.file_at(repo, pull.head, solution.module_path) == solution.code
    assert [t.installation for t in state.apps.minted] and {t.installation for t in state.apps.minted} == {installation}

    # Neither the key nor a token reached the agents, a comment, the pull request, the logs or a git config.
    secrets = [*key_lines(key), *(t.value for t in state.apps.minted)]
    tool_env = state.file_at(repo, pull.head, "probe-env.txt") or ""
    assert "PATH=" in tool_env and "ASM_GITHUB_APP" not in tool_env
    seen = [tool_env, state.file_at(repo, pull.head, "probe-git.txt") or "",
            state.file_at(repo, pull.head, "probe-key.txt") or "", pull.body, *state.issue(repo, number).comments,
            *(worker.log() for worker in fleet.workers)]
    configs = [path for path in (fleet.root / "workspaces").rglob("config") if path.parent.name.endswith(".git")]
    seen += [path.read_text() for path in configs]
    book, issue = Transcripts(client, ()), IssueRef(repo, number)
    seen += [json.dumps(vars(step)) for run in book.runs(issue) for step in book.conversations(issue, run.run)]
    for text in seen:
        for secret in secrets:
            assert secret not in text


def test_a_task_for_a_repository_the_app_is_not_installed_on_is_refused(fleet: Sandbox) -> None:
    from asm.celery_app import app
    from asm.fleet.queue import enqueue

    state = fleet.github
    assert state is not None
    repo = fleet.create_repo("umbrella/outside")
    number = fleet.add_issue(repo, SOLUTIONS[0].title, SOLUTIONS[0].body)
    client = redis.Redis.from_url(fleet.redis_url)
    assert enqueue(client, app, IssueRef(repo, number), by="a forged task", stale_after=600)
    assert wait_for(lambda: "is not one the GitHub App is installed on" in fleet.workers[0].log(), 60), \
        fleet.workers[0].log()[-3000:]
    assert state.issue(repo, number).comments == () and state.pulls(repo) == []

