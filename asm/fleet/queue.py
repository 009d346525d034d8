"""Queuing an issue: one `asm.process_issue` message per issue (one `asm.process_pull` per pull request),
however many scans or people ask.

A queued run waits in its repository's line in Redis until `asm.fleet.fair.release` sends it to Celery,
so runs take turns across repositories however they were asked for. The queued marker only keeps
the lines and the queue from filling with copies; exactly-once rests on the claim, which every
delivery must win before it touches the issue.
"""

from __future__ import annotations

import json
import secrets
import time

import redis

from asm.fleet.fair import CELERY_PRIORITY, NORMAL, PRIORITY_NAMES, marked_priority, release, wait
from asm.fleet.fair import Sender as Sender  # named here too, where the callers of `enqueue` look for it
from asm.keys import QUEUED, IssueRef

PROCESS_ISSUE = "asm.process_issue"
PROCESS_PULL = "asm.process_pull"  # a follow-up on a pull request of asm's; queued and claimed by its own number


def claimed_or_queued(client: redis.Redis[bytes], issue: IssueRef, stale_after: float) -> bool:
    """Whether the issue is claimed by a worker or waits in the queue (a marker fresher than stale_after)."""
    if client.exists(issue.claim_key):
        return True
    raw = client.hget(QUEUED, issue.key)
    return raw is not None and time.time() - float(json.loads(raw).get("queued_at", 0)) < stale_after


def enqueue(client: redis.Redis[bytes], sender: Sender, issue: IssueRef, by: str, stale_after: float,
            countdown: float | None = None, task: str = PROCESS_ISSUE, priority: int = NORMAL) -> str | None:
    """Queue the issue (or, with PROCESS_PULL, the pull request) unless it is already queued or claimed;
    the task id, or None when skipped.

    It waits in its repository's line, by `priority` (asm.fleet.fair: HIGH, NORMAL, LOW), and is sent to
    Celery at once if its turn has come. With a `countdown` (a retry once the model API has rested) it
    goes to Celery directly, to start no sooner.
    """
    if client.exists(issue.claim_key):
        return None
    now = time.time()
    task_id = f"{issue.key}@{secrets.token_hex(4)}"
    entry = json.dumps({"task_id": task_id, "queued_at": now, "by": by, "priority": PRIORITY_NAMES[priority]})
    if not client.hsetnx(QUEUED, issue.key, entry):
        existing = json.loads(client.hget(QUEUED, issue.key) or "{}")
        # A marker this old means its message was lost (a purged queue, a lost broker); queue again.
        if now - float(existing.get("queued_at", now)) < stale_after:
            if countdown is None and priority < marked_priority(existing):
                _move_up(client, sender, issue, task, priority, existing)
            return None
        client.hset(QUEUED, issue.key, entry)
    try:
        if countdown is not None:
            sender.send_task(task, args=[issue.repo, issue.number], task_id=task_id, countdown=countdown,
                             priority=CELERY_PRIORITY[priority])
            return task_id
        added = wait(client, issue, task, priority)
    except BaseException:
        client.hdel(QUEUED, issue.key)
        raise
    release(client, sender)
    # Not added: it had waited in its line so long that its marker looked lost; it waits on, under the new marker.
    return task_id if added else None


def _move_up(client: redis.Redis[bytes], sender: Sender, issue: IssueRef, task: str, priority: int,
             marker: dict[str, object]) -> None:
    """A priority label put on an issue already waiting: it moves up its line now, not when next queued."""
    client.hset(QUEUED, issue.key, json.dumps({**marker, "priority": PRIORITY_NAMES[priority]}))
    wait(client, issue, task, priority)
    release(client, sender)


def mark_delivered(client: redis.Redis[bytes], issue: IssueRef) -> str | None:
    """The message was delivered: the issue is no longer waiting in the queue. Its queued marker, if it had one."""
    pipe = client.pipeline()
    pipe.hget(QUEUED, issue.key)
    pipe.hdel(QUEUED, issue.key)
    marker, _ = pipe.execute()
    return marker.decode() if marker else None
