"""Each fault the fleet must survive, caused for real: killed processes, a restarted Redis, failing
GitHub and model APIs, crashes at the worst moments, the time limit, two beats. Every test asserts
the outcome on the sandbox GitHub: exactly one pull request, or the issue labelled with a reason.

Where a process dies (a worker, a host, Redis) or processes race (two beats), real `celery worker`
processes run the issues; the faults no process has to die for are caused in this process, on the
same Redis and servers, through `asm.run.issue_run.process_issue`.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from asm.fleet.queue import enqueue
from asm.keys import MODEL_OUTAGES, MODEL_RESTING, RUNNING, IssueRef, worker_key
from asm.observe.status import read_workers
from asm.sandbox.fleet import Sandbox, point_process_at, wait_for
from asm.sandbox.redis_server import RedisServer

REPO = "acme/textkit"
# A short claim and a fast scan, so a lapsed claim is noticed in seconds, not minutes.
FAST = {"ASM_CLAIM_TTL": "3", "ASM_SCAN_INTERVAL": "1", "ASM_RETRY_BACKOFF_SECONDS": "0.2"}
SETTLE = 90


@contextmanager
def fleet(root: Path, redis_url: str, latency: float = 0.1, **env: str) -> Iterator[Sandbox]:
    redis.Redis.from_url(redis_url).flushall()
    box = Sandbox(root, model_latency=latency, redis_url=redis_url, extra_env={**FAST, **env}).start()
    box.create_repo(REPO)
    point_process_at(box)
    try:
        yield box
    finally:
        box.stop()


def client_of(box: Sandbox) -> redis.Redis:
    return redis.Redis.from_url(box.redis_url)


def started(box: Sandbox, worker, slots: int) -> None:
    client = client_of(box)
    name = f"{worker.name}@"
    ready = lambda: sum(1 for w in read_workers(client)  # noqa: E731 (a slot may have taken an issue already)
                        if w.worker.startswith(name) and w.state in ("idle", "working")) >= slots
    assert wait_for(ready, 60), worker.log()[-3000:]


def queue(box: Sandbox, numbers: list[int]) -> None:
    from asm.celery_app import app

    for number in numbers:
        enqueue(client_of(box), app, IssueRef(REPO, number), by="test", stale_after=600)


def stage_of(box: Sandbox, number: int) -> str | None:
    raw = client_of(box).hget(RUNNING, f"{REPO}#{number}")
    return json.loads(raw)["stage"] if raw else None


def settle(box: Sandbox, numbers: list[int], timeout: float = SETTLE) -> None:
    logs = "\n".join(w.log()[-2500:] for w in box.workers)
    assert wait_for(lambda: box.settled(REPO, numbers), timeout), logs


def one_pull_each(box: Sandbox, numbers: list[int]) -> None:
    heads = [pull.head for pull in box.github.pulls(REPO)]
    for number in numbers:
        issue = box.github.issue(REPO, number)
        said = f"#{number}: {heads}, {issue.labels}, {issue.comments}"
        assert heads.count(f"ai-feature/issue-{number}") == 1, said
        assert issue.labels == ("in-review",), said


def test_a_worker_process_killed_mid_workflow_is_finished_by_another(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url) as box:
        [number] = box.add_sample_issues(1)
        worker = box.start_worker(2, name="a")
        box.start_beat()  # it queues the ready issue, and the orphan once the claim lapses
        started(box, worker, 2)
        assert wait_for(lambda: stage_of(box, number) in ("tester", "po"), 60, interval=0.05)
        holder = client_of(box).get(IssueRef(REPO, number).claim_key).decode().rsplit(":", 1)[0]
        pid = int(client_of(box).hget(worker_key(holder), "pid"))
        os.kill(pid, signal.SIGKILL)
        settle(box, [number])
        one_pull_each(box, [number])
        assert any("resumed the interrupted run" in c for c in box.github.issue(REPO, number).comments)


def test_a_whole_host_stopping_is_recovered_by_another_host(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url) as box:
        numbers = box.add_sample_issues(2)
        host_a = box.start_worker(2, name="host-a")
        started(box, host_a, 2)
        queue(box, numbers)
        assert wait_for(lambda: all(stage_of(box, n) for n in numbers), 60)  # host-a holds both
        host_b = box.start_worker(2, name="host-b")  # idle: nothing is left for it, for now
        box.start_beat()
        assert wait_for(lambda: all(stage_of(box, n) in ("security", "tester", "po") for n in numbers), 60,
                        interval=0.05)
        host_a.stop(signal.SIGKILL)  # every process of the host, at once
        settle(box, numbers)
        one_pull_each(box, numbers)
        assert "host-b" in host_b.log() and "succeeded" in host_b.log()


def test_redis_restarted_mid_run_loses_and_doubles_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url) as box:
        numbers = box.add_sample_issues(3)
        worker = box.start_worker(2, name="w")
        started(box, worker, 2)
        queue(box, numbers)
        assert wait_for(lambda: any(stage_of(box, n) in ("architect", "security") for n in numbers), 60)
        redis_server.restart(down_for=1.0)
        box.start_beat()  # re-queues whatever the restart lost
        settle(box, numbers, timeout=120)
        one_pull_each(box, numbers)


@pytest.mark.parametrize("moment", ["after the push, before the PR", "after the PR, before the labels"])
def test_a_crash_at_the_worst_moment_is_finished_without_a_second_pull_request(
        tmp_path: Path, redis_server: RedisServer, moment: str) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.0) as box:
        [number] = box.add_sample_issues(1)
        branch = f"ai-feature/issue-{number}"
        if moment.startswith("after the push"):
            box.github.inject_delay(30, path_contains="/pulls", method="POST")
            def crashed() -> bool:
                return box.github.branch_sha(REPO, branch) is not None
        else:
            box.github.inject_delay(30, path_contains=f"/issues/{number}/labels/in-progress", method="DELETE")
            def crashed() -> bool:
                return "in-review" in box.labels(REPO, number)
        worker = box.start_worker(1, name="first")
        box.start_beat()  # it queues the ready issue, and the orphan once the claim lapses
        assert wait_for(crashed, 60), worker.log()[-3000:]
        box.start_worker(1, name="second")  # idle while the first holds the claim
        worker.stop(signal.SIGKILL)
        calls_before = box.model.calls
        settle(box, [number])
        one_pull_each(box, [number])
        assert box.model.calls == calls_before, "the retry must finish the approved work, not redo it"


def test_two_beats_by_mistake_still_run_each_issue_once(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.05) as box:
        numbers = box.add_sample_issues(3)
        worker = box.start_worker(3, name="w")
        box.start_beat("beat-1")
        box.start_beat("beat-2")
        started(box, worker, 3)
        settle(box, numbers)
        one_pull_each(box, numbers)
        for number in numbers:
            comments = box.github.issue(REPO, number).comments
            assert sum("picked up" in c for c in comments) == 1


# -- faults no process has to die for: worked in this process ----------------------------------


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
