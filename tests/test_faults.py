"""Each fault the fleet must survive, caused for real: killed processes, a restarted Redis, failing
GitHub and model APIs, crashes at the worst moments, the time limit, two beats. Every test asserts
the outcome on the sandbox GitHub: exactly one pull request, or the issue labelled with a reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from asm.config import load_settings
from asm.fleet.queue import PROCESS_ISSUE, enqueue
from asm.keys import RUNNING, IssueRef, worker_key
from asm.observe.status import paused_reason, read_workers
from asm.sandbox.fleet import Sandbox, wait_for
from asm.sandbox.redis_server import RedisServer

REPO = "acme/textkit"
# A short claim and a fast scan, so a lapsed claim is noticed in seconds, not minutes.
FAST = {"ASM_CLAIM_TTL": "4", "ASM_SCAN_INTERVAL": "1", "ASM_RETRY_BACKOFF_SECONDS": "0.2"}
SETTLE = 90


@contextmanager
def fleet(root: Path, redis_url: str, latency: float = 0.2, **env: str) -> Iterator[Sandbox]:
    redis.Redis.from_url(redis_url).flushall()
    box = Sandbox(root, model_latency=latency, redis_url=redis_url, extra_env={**FAST, **env}).start()
    box.create_repo(REPO)
    from asm.celery_app import use_settings

    use_settings(load_settings(box.env(), dotenv=None))
    try:
        yield box
    finally:
        box.stop()


def client_of(box: Sandbox) -> redis.Redis:
    return redis.Redis.from_url(box.redis_url)


def started(box: Sandbox, worker, slots: int) -> None:
    client = client_of(box)
    name = f"{worker.name}@"
    ready = lambda: sum(1 for w in read_workers(client) if w.worker.startswith(name) and w.state == "idle") >= slots
    assert wait_for(ready, 60), worker.log()[-3000:]


def queue(box: Sandbox, numbers: list[int]) -> None:
    from asm.celery_app import app

    for number in numbers:
        enqueue(client_of(box), app, IssueRef(REPO, number), by="test", stale_after=600)


def stage_of(box: Sandbox, number: int) -> str | None:
    import json

    raw = client_of(box).hget(RUNNING, f"{REPO}#{number}")
    return json.loads(raw)["stage"] if raw else None


def settle(box: Sandbox, numbers: list[int], timeout: float = SETTLE) -> None:
    logs = "\n".join(w.log()[-2500:] for w in box.workers)
    assert wait_for(lambda: box.settled(REPO, numbers), timeout), logs


def one_pull_each(box: Sandbox, numbers: list[int]) -> None:
    heads = [pull.head for pull in box.github.pulls(REPO)]
    for number in numbers:
        assert heads.count(f"ai-feature/issue-{number}") == 1, heads
        assert box.github.issue(REPO, number).labels == ("in-review",)


def test_a_worker_process_killed_mid_workflow_is_finished_by_another(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url) as box:
        [number] = box.add_sample_issues(1)
        worker = box.start_worker(2, name="a")
        started(box, worker, 2)
        queue(box, [number])
        box.start_beat()
        assert wait_for(lambda: stage_of(box, number) == "tester", 60)
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
        assert wait_for(lambda: all(stage_of(box, n) == "security" for n in numbers), 60)
        host_a.stop(signal.SIGKILL)  # every process of the host, at once
        host_b = box.start_worker(2, name="host-b")
        box.start_beat()
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


def test_a_redelivered_message_during_a_live_run_does_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    from asm.celery_app import app

    with fleet(tmp_path, redis_server.url) as box:
        [number] = box.add_sample_issues(1)
        worker = box.start_worker(2, name="w")
        started(box, worker, 2)
        first = app.send_task(PROCESS_ISSUE, args=[REPO, number])
        assert wait_for(lambda: stage_of(box, number) == "architect", 60)
        second = app.send_task(PROCESS_ISSUE, args=[REPO, number])
        assert "skipped" in second.get(timeout=60) and "claimed by" in second.get()
        assert "pull" in first.get(timeout=120)
        one_pull_each(box, [number])


def test_github_errors_and_rate_limits_are_retried_honouring_retry_after(tmp_path: Path,
                                                                          redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.0) as box:
        [number] = box.add_sample_issues(1)
        box.github.inject_failures(502, count=2, path_contains="/comments", method="POST")
        box.github.inject_failures(403, retry_after=1, path_contains=f"/issues/{number}/labels", method="POST")
        box.github.inject_failures(429, retry_after=1, path_contains="/pulls", method="POST")
        worker = box.start_worker(1, name="w")
        started(box, worker, 1)
        queue(box, [number])
        settle(box, [number])
        one_pull_each(box, [number])
        timed = box.github.timed_requests
        for path_part in (f"/issues/{number}/labels", "/pulls"):
            posts = [at for at, method, path in timed if method == "POST" and path.endswith(path_part)]
            assert posts[1] - posts[0] >= 0.9, f"{path_part}: Retry-After not honoured"
        comment_posts = [p for _, m, p in timed if m == "POST" and p.endswith("/comments")]
        assert len(comment_posts) >= 4  # two failed, then the first comment, then the last


def test_an_overloaded_model_is_retried_then_the_issue_goes_back_to_the_queue(tmp_path: Path,
                                                                                 redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.0, ASM_MAX_AGENT_RETRIES="1") as box:
        numbers = box.add_sample_issues(2)
        box.model.fail_next(529, count=1)  # retried within the call
        worker = box.start_worker(1, name="w")
        started(box, worker, 1)
        queue(box, numbers[:1])
        settle(box, numbers[:1])
        # Two outages in a row, each longer than ASM_MAX_AGENT_RETRIES: the issue goes back to the
        # queue twice, the fleet rests the model between (longer the second time), and says so once.
        box.model.fail_next(429, count=4)
        queue(box, numbers[1:])
        settle(box, numbers[1:])
        one_pull_each(box, numbers)
        comments = box.github.issue(REPO, numbers[1]).comments
        assert sum("will retry later" in c for c in comments) == 1
        assert not any("ai-failed" in c for c in comments)
        assert box.model.calls >= 11 + 4 + 11


def test_no_credit_pauses_the_fleet_and_gives_issues_back_untouched(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.0) as box:
        numbers = box.add_sample_issues(2)
        box.model.fail_next(400)  # "Your credit balance is too low..."
        worker = box.start_worker(1, name="w")
        started(box, worker, 1)
        queue(box, numbers)
        client = client_of(box)
        assert wait_for(lambda: paused_reason(client) is not None and client.llen("celery") == 0
                        and not client.hlen(RUNNING), 60)
        assert "credit" in paused_reason(client)
        for number in numbers:
            assert box.github.issue(REPO, number).labels == ("ready-for-dev",)
        env = box.process_env()
        status = subprocess.run([sys.executable, "-m", "asm", "status"], env=env, capture_output=True, text=True)
        assert "PAUSED" in status.stdout and "credit" in status.stdout
        assert "fleet paused" in worker.log()
        resumed = subprocess.run([sys.executable, "-m", "asm", "resume"], env=env, capture_output=True, text=True)
        assert resumed.returncode == 0
        subprocess.run([sys.executable, "-m", "asm", "scan"], env=env, check=True, capture_output=True)
        settle(box, numbers)
        one_pull_each(box, numbers)


@pytest.mark.parametrize("moment", ["after the push, before the PR", "after the PR, before the labels"])
def test_a_crash_at_the_worst_moment_is_finished_without_a_second_pull_request(
        tmp_path: Path, redis_server: RedisServer, moment: str) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.0) as box:
        [number] = box.add_sample_issues(1)
        branch = f"ai-feature/issue-{number}"
        if moment.startswith("after the push"):
            box.github.inject_delay(30, path_contains="/pulls", method="POST")
            crashed = lambda: box.github.branch_sha(REPO, branch) is not None
        else:
            box.github.inject_delay(30, path_contains=f"/issues/{number}/labels/in-progress", method="DELETE")
            crashed = lambda: "in-review" in box.labels(REPO, number)
        worker = box.start_worker(1, name="first")
        started(box, worker, 1)
        queue(box, [number])
        assert wait_for(crashed, 60)
        worker.stop(signal.SIGKILL)
        calls_before = box.model.calls
        box.start_worker(1, name="second")
        box.start_beat()
        settle(box, [number])
        one_pull_each(box, [number])
        assert box.model.calls == calls_before, "the retry must finish the approved work, not redo it"


def test_the_time_limit_cleans_up_and_labels_the_issue(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.5, ASM_TASK_TIME_LIMIT="3") as box:
        [number] = box.add_sample_issues(1)
        worker = box.start_worker(1, name="w")
        started(box, worker, 1)
        queue(box, [number])
        settle(box, [number])
        issue = box.github.issue(REPO, number)
        assert issue.labels == ("ai-failed",) and "time limit" in issue.comments[-1]
        # the label is set while the claim is held; the claim goes a moment later
        assert wait_for(lambda: not client_of(box).exists(IssueRef(REPO, number).claim_key), 10)
        assert not [p for p in (box.root / "workspaces").glob("w@*/*/*") if p.name.endswith(f"issue-{number}")]
        assert box.github.pulls(REPO) == []


def test_two_beats_by_mistake_still_run_each_issue_once(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.05) as box:
        numbers = box.add_sample_issues(3)
        worker = box.start_worker(3, name="w")
        started(box, worker, 3)
        box.start_beat("beat-1")
        box.start_beat("beat-2")
        settle(box, numbers)
        one_pull_each(box, numbers)
        for number in numbers:
            comments = box.github.issue(REPO, number).comments
            assert sum("picked up" in c for c in comments) == 1
