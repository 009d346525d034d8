"""The faults no process has to die for, worked in this process through `asm.run.issue_run.process_issue`
on the real Redis and the sandbox servers: GitHub errors and rate limits, an overloaded model and the
fleet resting it, a spent credit balance pausing the fleet, the time limit."""

from __future__ import annotations

import pytest
import redis
from fault_fleet import REPO, one_pull_each

from asm.keys import MODEL_OUTAGES, MODEL_RESTING, IssueRef
from asm.sandbox.fleet import Sandbox, wait_for


def test_github_errors_and_rate_limits_are_retried_honouring_retry_after(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    sandbox.github.inject_failures(502, count=2, path_contains="/comments", method="POST")
    sandbox.github.inject_failures(403, retry_after=1, path_contains=f"/issues/{number}/labels", method="POST")
    sandbox.github.inject_failures(429, retry_after=1, path_contains="/pulls", method="POST")

    result, _ = work_issue(REPO, number)

    assert result.outcome == "in-review"
    one_pull_each(sandbox, [number])
    timed = sandbox.github.timed_requests
    for path_part in (f"/issues/{number}/labels", "/pulls"):
        posts = [at for at, method, path in timed if method == "POST" and path.endswith(path_part)]
        assert posts[1] - posts[0] >= 0.9, f"{path_part}: Retry-After not honoured"
    comment_posts = [p for _, m, p in timed if m == "POST" and p.endswith("/comments")]
    assert len(comment_posts) >= 4  # two failed, then the first comment, then the last


def test_an_overloaded_model_is_retried_then_the_fleet_rests_it_and_the_issue_goes_back(sandbox: Sandbox,
                                                                                       work_issue) -> None:
    sandbox.create_repo(REPO)
    first, second = sandbox.add_sample_issues(2)
    client = redis.Redis.from_url(sandbox.redis_url)
    # A rest is 8 backoffs, doubling: 1 s, then 2 s.
    fast = {"ASM_MAX_AGENT_RETRIES": "1", "ASM_RETRY_BACKOFF_SECONDS": "0.125"}
    sandbox.model.fail_next(529, count=1)  # retried within the call
    assert work_issue(REPO, first, **fast)[0].outcome == "in-review"

    # Two outages in a row, each longer than ASM_MAX_AGENT_RETRIES: each time the issue goes back as it
    # was, to be queued again once the model has rested; the fleet rests it longer the second time.
    sandbox.model.fail_next(429, count=4)
    outage, _ = work_issue(REPO, second, **fast)
    assert (outage.outcome, sandbox.github.issue(REPO, second).labels) == ("given-back", ("ready-for-dev",))
    assert client.ttl(MODEL_RESTING) > 0
    resting, _ = work_issue(REPO, second, **fast)  # nothing starts while the model rests
    assert resting.outcome == "deferred" and 0 < resting.requeue_after <= outage.requeue_after
    assert wait_for(lambda: not client.exists(MODEL_RESTING), 10)
    again, _ = work_issue(REPO, second, **fast)
    assert again.outcome == "given-back" and again.requeue_after > outage.requeue_after
    assert int(client.get(MODEL_OUTAGES)) == 2
    assert wait_for(lambda: not client.exists(MODEL_RESTING), 10)

    assert work_issue(REPO, second, **fast)[0].outcome == "in-review"
    assert not client.exists(MODEL_OUTAGES)  # a billed reply ends the row of outages
    one_pull_each(sandbox, [first, second])
    comments = sandbox.github.issue(REPO, second).comments
    assert sum("will retry later" in c for c in comments) == 1  # said once
    assert not any("ai-failed" in c for c in comments)
    assert sandbox.model.calls >= 11 + 4 + 11


def test_no_credit_pauses_the_fleet_gives_issues_back_untouched_until_asm_resume(
        sandbox: Sandbox, work_issue, asm_command, caplog: pytest.LogCaptureFixture) -> None:
    sandbox.create_repo(REPO)
    numbers = sandbox.add_sample_issues(2)
    sandbox.model.fail_next(400)  # "Your credit balance is too low..."

    paused, _ = work_issue(REPO, numbers[0])
    held, _ = work_issue(REPO, numbers[1])

    assert paused.outcome == "given-back" and paused.requeue_after is None  # the scan takes it after `asm resume`
    assert held.outcome == "paused" and "asm resume" in held.summary
    assert "fleet paused" in caplog.text and "credit" in caplog.text
    for number in numbers:
        assert sandbox.github.issue(REPO, number).labels == ("ready-for-dev",)
    status = asm_command(sandbox, "status")
    assert "PAUSED" in status.stdout and "credit" in status.stdout
    refused = asm_command(sandbox, "scan")
    assert refused.returncode == 1 and "paused" in refused.stderr
    resumed = asm_command(sandbox, "resume")
    assert resumed.returncode == 0 and "was paused" in resumed.stdout and "credit" in resumed.stdout
    assert "queued" in asm_command(sandbox, "scan").stdout
    for number in numbers:
        assert work_issue(REPO, number)[0].outcome == "in-review"
    one_pull_each(sandbox, numbers)
    assert asm_command(sandbox, "resume").stdout.strip() == "the fleet was not paused"


def test_the_time_limit_cleans_up_and_labels_the_issue(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    sandbox.model.latency = 0.3

    result, _ = work_issue(REPO, number, ASM_TASK_TIME_LIMIT="1")

    assert result.outcome == "ai-failed"
    issue = sandbox.github.issue(REPO, number)
    assert issue.labels == ("ai-failed",) and "time limit" in issue.comments[-1]
    assert not redis.Redis.from_url(sandbox.redis_url).exists(IssueRef(REPO, number).claim_key)
    workspaces = sandbox.root / "workspaces" / "here-1" / "acme__textkit"
    assert workspaces.is_dir() and not list(workspaces.glob(f"*issue-{number}*"))
    assert sandbox.github.pulls(REPO) == []
