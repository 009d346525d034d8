"""The scan: find every issue that should be worked on, and queue each one once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from asm.github import IN_PROGRESS, GitHub
from asm.keys import IssueRef
from asm.queue import Sender, enqueue
from asm.status import paused_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    """One issue the scan looked at, and what it did with it."""

    issue: IssueRef
    title: str
    task_id: str | None
    why: str  # "ready" or "orphaned" (in-progress with nobody holding its claim)


def scan(github: GitHub, client: redis.Redis, sender: Sender, repos: tuple[str, ...], ready_label: str,
         stale_after: float) -> list[Found]:
    """Queue every open ready issue, and every in-progress one whose worker is gone."""
    reason = paused_reason(client)
    if reason:
        log.warning("fleet paused, nothing queued: %s", reason)
        return []
    found: list[Found] = []
    for repo in repos:
        for label, why in ((ready_label, "ready"), (IN_PROGRESS, "orphaned")):
            for issue in github.issues_labelled(repo, label):
                if why == "orphaned" and client.exists(issue.ref.claim_key):
                    continue  # a live worker holds it
                task_id = enqueue(client, sender, issue.ref, by=f"scan ({why})", stale_after=stale_after)
                found.append(Found(issue.ref, issue.title, task_id, why))
                if task_id:
                    log.info("queued %s (%s) as %s", issue.ref, why, task_id)
    return found
