"""What the fault tests share: a sandbox with a short claim and a fast scan, real workers started on it,
and the one outcome every fault must still end in, exactly one pull request per issue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from asm.fleet.queue import enqueue
from asm.keys import RUNNING, IssueRef
from asm.observe.status import read_workers
from asm.sandbox.fleet import Sandbox, point_process_at, wait_for

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
