"""The fleet end to end: a real `celery -A asm worker -c 3` on a real Redis, the sandbox GitHub and model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asm.fleet.queue import PROCESS_ISSUE, enqueue
from asm.keys import RUNNING, IssueRef
from asm.observe.status import read_history
from asm.observe.transcripts import Transcripts
from asm.sandbox.fleet import Sandbox, running_fleet, wait_for
from asm.sandbox.redis_server import RedisServer
from asm.sandbox.sample_repo import SOLUTIONS

SETTLE_TIMEOUT = 90
REPOS = ("acme/many", "acme/dupes", "acme/redelivered", "acme/resting", "acme/revise", "acme/reject",
         "acme/exhausted", "acme/clarify", "acme/develop-first", "acme/secrets")


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox and one worker process with three slots, shared by the tests of this module."""
    # A short retry backoff: a model outage rests the fleet for 1 s, not 2.
    with running_fleet(tmp_path_factory.mktemp("fleet"), redis_server.url, slots=3, name="e2e", repos=REPOS,
                       ASM_RETRY_BACKOFF_SECONDS="0.1") as box:
        yield box


@pytest.fixture
def client(fleet: Sandbox) -> redis.Redis:
    return redis.Redis.from_url(fleet.redis_url)


def queue(client: redis.Redis, repo: str, numbers: list[int]) -> None:
    from asm.celery_app import app

    for number in numbers:
        assert enqueue(client, app, IssueRef(repo, number), by="test", stale_after=600)


def settle(fleet: Sandbox, repo: str, numbers: list[int]) -> None:
    assert wait_for(lambda: fleet.settled(repo, numbers), SETTLE_TIMEOUT), fleet.workers[0].log()[-4000:]


def pulls_for(fleet: Sandbox, repo: str, number: int) -> list:
    return [pull for pull in fleet.github.pulls(repo) if pull.head == f"ai-feature/issue-{number}"]


def test_each_ready_issue_becomes_one_pull_request_with_its_change(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/many")
    numbers = fleet.add_sample_issues(5, repo)
    queue(client, repo, numbers)
    settle(fleet, repo, numbers)
    for number, solution in zip(numbers, SOLUTIONS, strict=False):
        [pull] = pulls_for(fleet, repo, number)
        assert (pull.base, pull.state, pull.title) == ("main", "open", f"[AI] {solution.title}")
        assert f"Closes #{number}" in pull.body and "$" in pull.body and "turns" in pull.body
        assert f"`asm transcript {repo}#{number}`" in pull.body
        assert fleet.github.file_at(repo, pull.head, solution.module_path) == solution.code
        assert fleet.github.file_at(repo, pull.head, solution.test_path) == solution.test
        issue = fleet.github.issue(repo, number)
        assert issue.labels == ("in-review",)
        assert "picked up" in issue.comments[0] and pull.html_url in issue.comments[-1]
    wanted = {IssueRef(repo, number).key for number in numbers}
    # The end label is set before the run's record is written: wait for the records too.
    assert wait_for(lambda: wanted <= {r["issue"] for r in read_history(client)}, SETTLE_TIMEOUT)
    runs = [r for r in read_history(client) if r["issue"] in wanted]
    assert len({r["worker"] for r in runs}) >= 2, "three slots should have shared five issues"


def test_the_same_issue_queued_many_times_and_enqueued_during_its_run_gives_one_pull_request(
        fleet: Sandbox, client: redis.Redis, asm_command) -> None:
    from asm.celery_app import app

    repo = fleet.create_repo("acme/dupes")
    [number] = fleet.add_sample_issues(1, repo)
    fleet.model.latency = 0.1  # long enough for `asm enqueue` to arrive mid-run
    try:
        results = [app.send_task(PROCESS_ISSUE, args=[repo, number]) for _ in range(4)]
        assert wait_for(lambda: client.exists(IssueRef(repo, number).claim_key), 30)
        done = asm_command(fleet, "enqueue", str(number), "--repo", repo)
        assert done.returncode == 0, done.stderr
        assert "already queued or being worked on" in done.stdout
        settle(fleet, repo, [number])
    finally:
        fleet.model.latency = 0.0
    summaries = [result.get(timeout=60) for result in results]
    assert sum("skipped" in s for s in summaries) == 3, summaries
    assert len(pulls_for(fleet, repo, number)) == 1
    comments = fleet.github.issue(repo, number).comments
    assert sum("picked up" in c for c in comments) == 1


def test_a_redelivered_message_during_a_live_run_finds_the_claim_and_leaves(fleet: Sandbox,
                                                                            client: redis.Redis) -> None:
    from asm.celery_app import app

    repo = fleet.create_repo("acme/redelivered")
    [number] = fleet.add_sample_issues(1, repo)
    fleet.model.latency = 0.1  # long enough for the second delivery to arrive mid-run
    try:
        first = app.send_task(PROCESS_ISSUE, args=[repo, number])
        stage = lambda: json.loads(client.hget(RUNNING, f"{repo}#{number}") or "{}").get("stage")  # noqa: E731
        assert wait_for(lambda: stage() == "architect", 60)
        second = app.send_task(PROCESS_ISSUE, args=[repo, number])
        assert "skipped" in second.get(timeout=60) and "claimed by" in second.get()
        assert "pull" in first.get(timeout=120)
    finally:
        fleet.model.latency = 0.0
    assert len(pulls_for(fleet, repo, number)) == 1


def test_an_issue_given_back_after_a_model_outage_is_queued_again_by_its_task(fleet: Sandbox,
                                                                               client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/resting")
    [number] = fleet.add_sample_issues(1, repo)
    fleet.model.fail_next(529, count=3)  # more than ASM_MAX_AGENT_RETRIES (2): an outage
    queue(client, repo, [number])
    settle(fleet, repo, [number])  # nobody queues it again but the task that gave it back
    assert len(pulls_for(fleet, repo, number)) == 1
    assert sum("will retry later" in c for c in fleet.github.issue(repo, number).comments) == 1


def test_the_worker_imports_the_model_sdk_once_before_it_forks_its_pool(fleet: Sandbox) -> None:
    main = fleet.workers[0].process.pid
    # The SDK's compiled JSON parser, mapped in the main process: every pool process forked from it
    # shares the import instead of spending seconds of its start on it.
    assert "jiter" in Path(f"/proc/{main}/maps").read_text()


def test_revise_once_then_approve_gives_one_pull_request_after_two_rounds(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/revise")
    solution = SOLUTIONS[0]
    number = fleet.add_issue(repo, solution.title, solution.body + "\nasm-sandbox: po=REVISE,APPROVE")
    queue(client, repo, [number])
    settle(fleet, repo, [number])
    [pull] = pulls_for(fleet, repo, number)
    assert "1 revision" in pull.body
    assert "# Revision 1:" in fleet.github.file_at(repo, pull.head, solution.module_path)
    assert fleet.github.issue(repo, number).labels == ("in-review",)


def test_reject_gives_no_pull_request_and_says_why(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/reject")
    number = fleet.add_issue(repo, SOLUTIONS[1].title, "asm-sandbox: po=REJECT")
    queue(client, repo, [number])
    settle(fleet, repo, [number])
    assert pulls_for(fleet, repo, number) == []
    issue = fleet.github.issue(repo, number)
    assert issue.labels == ("ai-failed",)
    assert "rejected" in issue.comments[-1] and "out of scope" in issue.comments[-1]
    assert "Traceback" not in issue.comments[-1]


def test_revisions_exhausted_gives_ai_failed(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/exhausted")
    number = fleet.add_issue(repo, SOLUTIONS[2].title, "asm-sandbox: po=REVISE")
    queue(client, repo, [number])
    settle(fleet, repo, [number])
    assert pulls_for(fleet, repo, number) == []
    issue = fleet.github.issue(repo, number)
    assert issue.labels == ("ai-failed",) and "3 revisions" in issue.comments[-1]


def test_questions_label_the_issue_needs_clarification(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/clarify")
    number = fleet.add_issue(repo, "Make it better", "asm-sandbox: clarify")
    queue(client, repo, [number])
    settle(fleet, repo, [number])
    issue = fleet.github.issue(repo, number)
    assert issue.labels == ("needs-clarification",)
    assert "What should happen with empty input?" in issue.comments[-1]
    assert pulls_for(fleet, repo, number) == []


def test_a_default_branch_other_than_main_is_the_base(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/develop-first", default_branch="develop")
    [number] = fleet.add_sample_issues(1, repo)
    queue(client, repo, [number])
    settle(fleet, repo, [number])
    [pull] = pulls_for(fleet, repo, number)
    assert pull.base == "develop"
    assert fleet.github.branch_sha(repo, "main") is None


def test_no_secret_reaches_tools_comments_pull_requests_logs_or_git_config(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/secrets")
    solution = SOLUTIONS[3]
    probe = "env > probe-env.txt; git config --list > probe-git.txt"
    number = fleet.add_issue(repo, solution.title, f"asm-sandbox: run={probe}")
    queue(client, repo, [number])
    settle(fleet, repo, [number])
    [pull] = pulls_for(fleet, repo, number)
    tool_env = fleet.github.file_at(repo, pull.head, "probe-env.txt")
    assert tool_env and "PATH=" in tool_env
    secrets = (fleet.github_token, fleet.api_key)
    seen = [tool_env, fleet.github.file_at(repo, pull.head, "probe-git.txt") or "", pull.body,
            *fleet.github.issue(repo, number).comments, fleet.workers[0].log()]
    workspaces = fleet.root / "workspaces"
    seen += [path.read_text() for path in workspaces.rglob("config") if path.parent.name.endswith(".git")]
    book, issue = Transcripts(client, ()), IssueRef(repo, number)
    kept = [json.dumps(vars(step)) for run in book.runs(issue) for step in book.conversations(issue, run.run)]
    assert len(kept) == 4  # every role's conversation, in Redis
    seen += kept
    for text in seen:
        for secret in secrets:
            assert secret not in text
    for name in ("GITHUB_TOKEN", "ANTHROPIC_API_KEY", "ASM_GIT_TOKEN"):
        assert name not in tool_env
    left = [p for p in workspaces.glob(f"*/acme__secrets/*issue-{number}") if not p.parts[-3].startswith(".")]
    assert not left, "the workspace and its tool HOME must be removed"
