"""Spend caps, hit for real: the sandbox model bills its usage, the ledger in Redis counts it, and a
run is stopped before the call that could cross a cap. Runs go through `asm.run.issue_run.process_issue`
in this process (the product path without Celery); the last test runs three at once on a worker."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from asm.fleet.queue import enqueue
from asm.keys import IssueRef, fleet_day_spend_key, repo_day_spend_key, utc_day
from asm.sandbox.fleet import Sandbox, running_fleet
from asm.sandbox.redis_server import RedisServer
from asm.spend.cost import money

REPO = "acme/textkit"
OTHER = "acme/other"
# The caps below are set against this model's prices: $3 / $15 per MTok, a full reply of 8192
# output tokens $0.12, so one call may reserve up to ~$0.16 and one sample issue costs ~$0.03.
PRICED = {"ASM_MODEL": "claude-sonnet-4-6"}


@pytest.fixture
def work(work_issue):
    """`work(number, repo=REPO, **env)`: one run in this process, at the prices the caps are set against."""
    def run(number: int, repo: str = REPO, **env: str):
        return work_issue(repo, number, **{**PRICED, **env})

    return run


def spent(box: Sandbox, key: str) -> float:
    return float(redis.Redis.from_url(box.redis_url).get(key) or 0)


def test_an_issue_stops_at_its_cap_with_nothing_pushed(sandbox: Sandbox, work) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    result, deps = work(number, ASM_MAX_COST_USD="0.15")
    spend = deps.ledger.spend(IssueRef(REPO, number))
    assert result.outcome == "ai-failed"
    assert 0 < spend.usd <= 0.15 and 0 < spend.calls < 11
    issue = sandbox.github.issue(REPO, number)
    assert issue.labels == ("ai-failed",)
    last = issue.comments[-1]
    assert "spend cap" in last and "ASM_MAX_COST_USD" in last and "$0.15" in last
    assert money(spend.usd) in last and "ready-for-dev" in last  # what was spent, how to retry
    assert sandbox.github.branch_sha(REPO, f"ai-feature/issue-{number}") is None
    assert sandbox.github.pulls(REPO) == []


def test_raising_the_cap_and_labelling_again_finishes_the_issue(sandbox: Sandbox, work) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    work(number, ASM_MAX_COST_USD="0.15")
    sandbox.github.add_labels(REPO, number, ["ready-for-dev"])
    result, deps = work(number, ASM_MAX_COST_USD="1.0")
    assert result.outcome == "in-review"
    assert deps.ledger.spend(IssueRef(REPO, number)).usd <= 1.0  # both attempts counted


def test_a_repository_stops_at_its_daily_cap_and_others_go_on(sandbox: Sandbox, work) -> None:
    sandbox.create_repo(REPO)
    sandbox.create_repo(OTHER)
    first, second, third = sandbox.add_sample_issues(3, REPO)
    [elsewhere] = sandbox.add_sample_issues(1, OTHER)
    # A call may cost up to ~$0.14 (its prompt plus 8192 tokens of output): the cap leaves room for
    # one issue (~$0.03), not two.
    cap = {"ASM_MAX_COST_PER_REPO_DAY_USD": "0.175"}
    assert work(first, **cap)[0].outcome == "in-review"
    stopped, _ = work(second, **cap)
    assert stopped.outcome == "ai-failed"
    assert "ASM_MAX_COST_PER_REPO_DAY_USD" in sandbox.github.issue(REPO, second).comments[-1]
    assert spent(sandbox, repo_day_spend_key(REPO, utc_day())) <= 0.175
    # With less room left than one call can cost, an issue is not even started: it stays ready.
    waiting, _ = work(third, ASM_MAX_COST_PER_REPO_DAY_USD="0.15")
    assert waiting.outcome == "capped"
    assert sandbox.github.issue(REPO, third).labels == ("ready-for-dev",)
    assert sandbox.github.issue(REPO, third).comments == ()
    assert work(elsewhere, OTHER, **cap)[0].outcome == "in-review"


def test_the_fleet_stops_at_its_daily_cap(sandbox: Sandbox, work) -> None:
    sandbox.create_repo(REPO)
    sandbox.create_repo(OTHER)
    [first] = sandbox.add_sample_issues(1, REPO)
    [second] = sandbox.add_sample_issues(1, OTHER)
    cap = {"ASM_MAX_COST_PER_DAY_USD": "0.175"}
    assert work(first, **cap)[0].outcome == "in-review"
    stopped, _ = work(second, OTHER, **cap)
    assert stopped.outcome == "ai-failed"
    assert "ASM_MAX_COST_PER_DAY_USD" in sandbox.github.issue(OTHER, second).comments[-1]
    assert spent(sandbox, fleet_day_spend_key(utc_day())) <= 0.175


def test_the_turn_cap_stops_a_role_that_keeps_going(sandbox: Sandbox, work) -> None:
    sandbox.create_repo(REPO)
    number = sandbox.add_issue(REPO, "Add `slugify` for URL slugs", "asm-sandbox: turns=30")
    result, deps = work(number, ASM_MAX_TURNS="8")
    assert result.outcome == "ai-failed"
    assert deps.ledger.spend(IssueRef(REPO, number)).calls == 8  # never a call past the cap
    assert "ran out of turns" in sandbox.github.issue(REPO, number).comments[-1]


def test_every_comment_and_the_pull_request_carry_the_spend(sandbox: Sandbox, work) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    result, deps = work(number)
    spend = deps.ledger.spend(IssueRef(REPO, number))
    assert spend.usage.cache_read_tokens > 0 and spend.saved_usd > 0  # prompt caching paid off
    [pull] = sandbox.github.pulls(REPO)
    for text in (*sandbox.github.issue(REPO, number).comments, pull.body):
        assert "tokens" in text and "turns" in text and "revision" in text and "$" in text
    assert f"${spend.usd:.4f}" in pull.body and "caching saved" in pull.body


def test_concurrent_runs_never_cross_a_shared_cap(tmp_path: Path, redis_server: RedisServer) -> None:
    """Three worker processes on one repository: reservations are atomic, so together they stay under its cap."""
    cap = "0.45"
    with running_fleet(tmp_path, redis_server.url, 3, "capped", model_latency=0.05, repos=(REPO,),
                       ASM_MAX_COST_PER_REPO_DAY_USD=cap, **PRICED) as box:
        box.create_repo(REPO)
        numbers = box.add_sample_issues(6)
        from asm.celery_app import app

        client = redis.Redis.from_url(box.redis_url)
        tasks = [enqueue(client, app, IssueRef(REPO, number), by="test", stale_after=600) for number in numbers]
        for task_id in tasks:
            app.AsyncResult(task_id).get(timeout=120)  # every delivery has ended
        assert spent(box, repo_day_spend_key(REPO, utc_day())) <= float(cap)
        outcomes = [box.settled_label(REPO, n) or "ready-for-dev" for n in numbers]
        assert "in-review" in outcomes and ({"ai-failed", "ready-for-dev"} & set(outcomes)), outcomes
