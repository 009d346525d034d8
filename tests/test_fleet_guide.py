"""The original guide's test list, on the real system: one `celery -A asm worker -c 5`, real Redis,
the sandbox GitHub and model (each call taking 0.1 s, so runs overlap as they would for real).

What is asserted is what happened (which slot ran what, what landed on which branch), and how runs
overlapped as a ratio of times measured in the same run, never a wall-clock limit: two busy cores
slow every run alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from asm.fleet.claim import Claim
from asm.fleet.queue import enqueue
from asm.keys import IssueRef
from asm.observe.status import read_history, read_workers
from asm.sandbox.fleet import Sandbox, running_fleet, wait_for
from asm.sandbox.redis_server import RedisServer
from asm.sandbox.sample_repo import SOLUTIONS

SLOTS = 5


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_fleet(tmp_path_factory.mktemp("guide"), redis_server.url, SLOTS, "guide", model_latency=0.1,
                       repos=("acme/isolation", "acme/concurrent", "acme/broken", "acme/healthy",
                              "acme/balance")) as box:
        yield box


@pytest.fixture
def client(fleet: Sandbox) -> redis.Redis:
    return redis.Redis.from_url(fleet.redis_url)


def run(fleet: Sandbox, client: redis.Redis, repo: str, numbers: list[int]) -> list[dict]:
    from asm.celery_app import app

    for number in numbers:
        assert enqueue(client, app, IssueRef(repo, number), by="test", stale_after=600)
    wanted = {IssueRef(repo, number).key for number in numbers}

    def finished() -> list[dict]:
        return [r for r in read_history(client) if r["issue"] in wanted]

    # The end label is set before the run's record is written: wait for both, or the last run may be missing.
    assert wait_for(lambda: fleet.settled(repo, numbers) and len(finished()) >= len(numbers), 120), \
        fleet.workers[0].log()[-3000:]
    return finished()


def overlap(runs: list[dict]) -> float:
    """How many runs were in progress at once, on average: their summed time over the span they cover."""
    span = max(r["finished_at"] for r in runs) - min(r["started_at"] for r in runs)
    return sum(r["seconds"] for r in runs) / span


def test_worker_deployment(fleet: Sandbox, client: redis.Redis) -> None:
    workers = read_workers(client)
    assert sorted(w.worker for w in workers) == [f"guide@{workers[0].host}-{n}" for n in range(1, SLOTS + 1)]
    assert {w.state for w in workers} <= {"idle", "working"}
    assert len({w.host for w in workers}) == 1


def test_workspace_isolation(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/isolation")
    numbers = fleet.add_sample_issues(2, repo)
    runs = run(fleet, client, repo, numbers)
    assert len({r["worker"] for r in runs}) == 2, "two slots, two workspaces"
    assert overlap(runs) > 1.2, "the two issues should have run side by side"
    for number, mine, theirs in ((numbers[0], SOLUTIONS[0], SOLUTIONS[1]), (numbers[1], SOLUTIONS[1], SOLUTIONS[0])):
        branch = f"ai-feature/issue-{number}"
        assert fleet.github.file_at(repo, branch, mine.module_path) == mine.code
        assert fleet.github.file_at(repo, branch, theirs.module_path) is None
        assert fleet.github.file_at(repo, branch, theirs.test_path) is None


def test_concurrent_execution(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/concurrent")
    numbers = fleet.add_sample_issues(SLOTS, repo)
    runs = run(fleet, client, repo, numbers)
    assert len(runs) == SLOTS and len({r["worker"] for r in runs}) == SLOTS, "each slot took one"
    assert overlap(runs) > 2.5, "the five should have run at once"


def test_resource_contention(fleet: Sandbox, client: redis.Redis) -> None:
    from asm.celery_app import app

    issue = IssueRef("acme/contention", 1)
    barrier = threading.Barrier(8)
    claims: list[bool] = []
    queued: list[str | None] = []

    def race() -> None:
        barrier.wait()
        claims.append(Claim(client, issue, ttl=30, holder="racer").acquire())

    def enqueue_race() -> None:
        barrier.wait()
        queued.append(enqueue(client, app, IssueRef("acme/contention", 2), by="racer", stale_after=600))

    for target in (race, enqueue_race):
        threads = [threading.Thread(target=target) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert claims.count(True) == 1
    assert sum(1 for task in queued if task) == 1


def test_failure_isolation(fleet: Sandbox, client: redis.Redis) -> None:
    broken = fleet.create_repo("acme/broken")
    [bad] = fleet.add_sample_issues(1, broken)
    fleet.github.inject_failures(422, count=50, path_contains="/repos/acme/broken/pulls", method="POST",
                                 message="Validation Failed")
    healthy = fleet.create_repo("acme/healthy")
    good = fleet.add_sample_issues(3, healthy)
    from asm.celery_app import app

    assert enqueue(client, app, IssueRef(broken, bad), by="test", stale_after=600)
    run(fleet, client, healthy, good)
    assert wait_for(lambda: fleet.settled(broken, [bad]), 60)
    issue = fleet.github.issue(broken, bad)
    assert issue.labels == ("ai-failed",)
    assert "could not open the pull request" in issue.comments[-1] and "Traceback" not in issue.comments[-1]
    for number in good:
        assert fleet.github.issue(healthy, number).labels == ("in-review",)


def test_load_balancing(fleet: Sandbox, client: redis.Redis) -> None:
    repo = fleet.create_repo("acme/balance")
    numbers = fleet.add_sample_issues(10, repo)
    runs = run(fleet, client, repo, numbers)
    per_worker: dict[str, int] = {}
    for record in runs:
        per_worker[record["worker"]] = per_worker.get(record["worker"], 0) + 1
    assert len(per_worker) == SLOTS, per_worker  # every slot took work
    assert max(per_worker.values()) <= 2 * len(numbers) // SLOTS, per_worker  # and none took far more than its share
