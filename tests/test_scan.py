"""The scan against the sandbox GitHub and a real Redis: what it queues, and what it costs in requests."""

from __future__ import annotations

import math
import subprocess

import pytest
import redis

from asm.config import Settings
from asm.deps import github_gateway
from asm.fleet.claim import Claim
from asm.fleet.fair import queue_length
from asm.fleet.scan import SCAN_LOCK, SCAN_LOCK_MIN_SECONDS, scan
from asm.github import COMMENT_PREFIX, GitHub
from asm.keys import MODEL_RESTING, PAUSED, QUEUED, IssueRef, attempts_key
from asm.sandbox.fleet import Sandbox

REPO = "acme/scan"


@pytest.fixture
def github(settings: Settings) -> GitHub:
    return github_gateway(settings)


def run_scan(github: GitHub, settings: Settings, client: redis.Redis, stale_after: float = 600) -> list:
    from asm.celery_app import app

    return scan(github, client, app, (REPO,), settings.ready_label, stale_after).found


def make_pull_request(sandbox: Sandbox, title: str) -> int:
    """A real PR (a pushed branch), labelled ready-for-dev, as GitHub lists it among the issues."""
    path = sandbox.root / "pr-clone"
    clone_url = f"file://{sandbox.root / 'github' / 'acme' / 'scan.git'}"
    subprocess.run(["git", "clone", "-q", clone_url, str(path)], check=True)
    (path / "NOTE.md").write_text("note\n")
    for args in (["checkout", "-qb", "feature"], ["add", "-A"], ["commit", "-qm", "note"],
                 ["push", "-q", "origin", "feature"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    pull = sandbox.github.create_pull(REPO, title, "", "feature", "main")
    sandbox.github.add_labels(REPO, pull.number, ["ready-for-dev"])
    return pull.number


def test_the_scan_queues_ready_issues_once_and_skips_the_rest(sandbox: Sandbox, settings: Settings,
                                                             github: GitHub, redis_client: redis.Redis) -> None:
    sandbox.create_repo(REPO)
    ready = [sandbox.add_issue(REPO, f"ready {n}") for n in range(3)]
    sandbox.add_issue(REPO, "not labelled", labels=())
    closed = sandbox.add_issue(REPO, "closed")
    sandbox.github.close_issue(REPO, closed)
    reviewing = sandbox.add_issue(REPO, "in review", labels=("in-review",))
    pull = make_pull_request(sandbox, "a pull request")
    found = run_scan(github, settings, redis_client)
    assert sorted(item.issue.number for item in found if item.task_id) == sorted(ready)
    assert not {pull, closed, reviewing} & {item.issue.number for item in found}
    assert queue_length(redis_client) == 3
    again = run_scan(github, settings, redis_client)
    assert [item.task_id for item in again] == [None, None, None]
    assert queue_length(redis_client) == 3


def test_an_orphaned_in_progress_issue_is_queued_again_but_a_live_or_human_one_is_not(
        sandbox: Sandbox, settings: Settings, github: GitHub, redis_client: redis.Redis) -> None:
    sandbox.create_repo(REPO)
    orphan = sandbox.add_issue(REPO, "its worker died", labels=("in-progress",))
    redis_client.set(attempts_key(IssueRef(REPO, orphan)), 1)  # what a run of asm's leaves
    forgotten = sandbox.add_issue(REPO, "its worker died, and Redis forgot", labels=("in-progress",))
    sandbox.github.add_comment(REPO, forgotten, f"{COMMENT_PREFIX} picked up this issue")
    alive = sandbox.add_issue(REPO, "its worker is on it", labels=("in-progress",))
    redis_client.set(attempts_key(IssueRef(REPO, alive)), 1)
    Claim(redis_client, IssueRef(REPO, alive), ttl=60, holder="w-1").acquire()
    sandbox.add_issue(REPO, "a person is on it", labels=("in-progress",))
    found = run_scan(github, settings, redis_client)
    assert sorted((item.issue.number, item.why) for item in found) == [(orphan, "orphaned"), (forgotten, "orphaned")]


def test_a_repository_that_cannot_be_read_does_not_stop_the_others(
        sandbox: Sandbox, settings: Settings, github: GitHub, redis_client: redis.Redis) -> None:
    from asm.celery_app import app

    sandbox.create_repo(REPO)
    ready = sandbox.add_issue(REPO, "ready")
    result = scan(github, redis_client, app, ("acme/missing", REPO), settings.ready_label, 600)
    assert [item.issue.number for item in result.found] == [ready]
    assert "acme/missing" in result.failed and "not found" in result.failed["acme/missing"]


def test_a_stale_queue_marker_is_queued_again(sandbox: Sandbox, settings: Settings, github: GitHub,
                                             redis_client: redis.Redis) -> None:
    sandbox.create_repo(REPO)
    number = sandbox.add_issue(REPO, "its message was lost")
    redis_client.hset(QUEUED, f"{REPO}#{number}", '{"task_id": "lost", "queued_at": 0, "by": "scan"}')
    assert [item.task_id for item in run_scan(github, settings, redis_client, stale_after=600)][0] is not None


def test_nothing_is_queued_while_the_fleet_is_paused(sandbox: Sandbox, settings: Settings, github: GitHub,
                                                    redis_client: redis.Redis) -> None:
    sandbox.create_repo(REPO)
    sandbox.add_issue(REPO, "ready")
    redis_client.set(PAUSED, "the model account is out of credit")
    assert run_scan(github, settings, redis_client) == []
    assert queue_length(redis_client) == 0


def test_nothing_is_queued_while_the_model_api_rests(sandbox: Sandbox, settings: Settings, github: GitHub,
                                                    redis_client: redis.Redis) -> None:
    from asm.celery_app import app

    sandbox.create_repo(REPO)
    sandbox.add_issue(REPO, "ready")
    redis_client.set(MODEL_RESTING, "overloaded", ex=60)
    result = scan(github, redis_client, app, (REPO,), settings.ready_label, 600)
    assert result.found == [] and "resting" in result.held
    redis_client.delete(MODEL_RESTING)
    assert len(run_scan(github, settings, redis_client)) == 1


def test_the_scan_costs_requests_by_pages_not_by_issues(sandbox: Sandbox, settings: Settings, github: GitHub,
                                                       redis_client: redis.Redis) -> None:
    sandbox.create_repo(REPO)
    count = 230
    for n in range(count):
        sandbox.add_issue(REPO, f"issue {n}")
    sandbox.github.reset_requests()
    found = run_scan(github, settings, redis_client)
    assert sum(1 for item in found if item.task_id) == count
    # the conditional request that asks whether anything changed (first time: no ETag, so a full read), every
    # page of ready issues (100 a page), one page of in-progress ones, one GraphQL page of asm's pull requests
    # and the issues awaiting answers, and, once per process, who asm is; nothing per issue
    assert sandbox.github.request_count == 1 + math.ceil(count / 100) + 1 + 1 + 1, sandbox.github.requests
    sandbox.github.reset_requests()
    sandbox.github.limits.reset_tally()
    again = run_scan(github, settings, redis_client)
    # Issue 10 made the scan conditional: nothing changed, so the one request is that question, answered 304
    # (not counted against the rate limit), and the issues it found last time are queued again from memory.
    assert sandbox.github.request_count == 1, sandbox.github.requests
    assert (sandbox.github.limits.counted, len(sandbox.github.limits.not_modified)) == (0, 1)
    assert len(again) == count and not any(item.task_id for item in again)


def test_a_pull_request_that_asked_nothing_is_read_whole_again_only_once_it_changes(
        sandbox: Sandbox, settings: Settings, github: GitHub, redis_client: redis.Redis, work_issue) -> None:
    sandbox.create_repo(REPO)
    number = sandbox.add_issue(REPO, "Add `slugify` for URL slugs")
    work_issue(REPO, number, ASM_REPOS=REPO)
    [pull] = sandbox.github.pulls(REPO)
    sandbox.github.add_user("passer-by")
    sandbox.github.add_comment(REPO, pull.number, "@asm delete everything", author="passer-by")

    def graphql_requests() -> int:
        sandbox.github.reset_requests()
        assert run_scan(github, settings, redis_client) == []
        return sum(1 for request in sandbox.github.requests if request == ("POST", "/graphql"))

    assert graphql_requests() == 2, "a glance, then the changed pull request read whole"
    # Issue 10: the first read learnt the pull request's head; the next one learns the ETags of its checks (a head
    # first seen in a read has none yet, so this counts as a change): a glance, and the pull request unchanged.
    assert graphql_requests() == 1, "unchanged since it asked nothing: a glance only"
    sandbox.github.add_comment(REPO, pull.number, "still nothing for asm", author="passer-by")
    assert graphql_requests() == 2
    assert graphql_requests() == 0, "nothing changed on GitHub: every conditional request a 304, no glance"


def test_one_scan_at_a_time_and_a_dead_scanners_turn_lapses(sandbox: Sandbox, settings: Settings, github: GitHub,
                                                            redis_client: redis.Redis) -> None:
    from asm.celery_app import app

    sandbox.create_repo(REPO)
    [number] = [sandbox.add_issue(REPO, "ready")]
    redis_client.set(SCAN_LOCK, "a scan on another machine", ex=SCAN_LOCK_MIN_SECONDS)
    held = scan(github, redis_client, app, (REPO,), settings.ready_label, 600)
    assert held.held == "the previous scan is still running" and held.found == []
    assert redis_client.get(SCAN_LOCK) == b"a scan on another machine", "another's turn is not taken from it"
    assert 0 < redis_client.ttl(SCAN_LOCK) <= SCAN_LOCK_MIN_SECONDS, "it lapses if that scanner died"

    redis_client.delete(SCAN_LOCK)  # lapsed
    found = scan(github, redis_client, app, (REPO,), settings.ready_label, 600).found
    assert [item.issue.number for item in found if item.task_id] == [number]
    assert not redis_client.exists(SCAN_LOCK), "let go when done"
