"""Queuing an issue: one `asm.process_issue` message per issue (one `asm.process_pull` per pull request),
however many scans or people ask.

The queued marker only keeps the queue from filling with copies; exactly-once rests on the claim,
which every delivery must win before it touches the issue.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Protocol

import redis

from asm.keys import QUEUED, IssueRef

PROCESS_ISSUE = "asm.process_issue"
PROCESS_PULL = "asm.process_pull"  # a follow-up on a pull request of asm's; queued and claimed by its own number


class Sender(Protocol):
    """What sends a task by name: the Celery app (`app.send_task`)."""

    def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None) -> object: ...


def claimed_or_queued(client: redis.Redis[bytes], issue: IssueRef, stale_after: float) -> bool:
    """Whether the issue is claimed by a worker or waits in the queue (a marker fresher than stale_after)."""
    if client.exists(issue.claim_key):
        return True
    raw = client.hget(QUEUED, issue.key)
    return raw is not None and time.time() - float(json.loads(raw).get("queued_at", 0)) < stale_after


def enqueue(client: redis.Redis[bytes], sender: Sender, issue: IssueRef, by: str, stale_after: float,
            countdown: float | None = None, task: str = PROCESS_ISSUE) -> str | None:
    """Queue the issue (or, with PROCESS_PULL, the pull request) unless it is already queued or claimed;
    the task id, or None when skipped."""
    if client.exists(issue.claim_key):
        return None
    now = time.time()
    task_id = f"{issue.key}@{secrets.token_hex(4)}"
    entry = json.dumps({"task_id": task_id, "queued_at": now, "by": by})
    if not client.hsetnx(QUEUED, issue.key, entry):
        existing = json.loads(client.hget(QUEUED, issue.key) or "{}")
        # A marker this old means its message was lost (a purged queue, a lost broker); queue again.
        if now - float(existing.get("queued_at", now)) < stale_after:
            return None
        client.hset(QUEUED, issue.key, entry)
    try:
        sender.send_task(task, args=[issue.repo, issue.number], task_id=task_id, countdown=countdown)
    except BaseException:
        client.hdel(QUEUED, issue.key)
        raise
    return task_id


def mark_delivered(client: redis.Redis[bytes], issue: IssueRef) -> None:
    """The message was delivered: the issue is no longer waiting in the queue."""
    client.hdel(QUEUED, issue.key)
