"""The scan: find every issue that should be worked on, and queue each one once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from asm.errors import AsmError
from asm.fleet.hold import fleet_hold
from asm.fleet.queue import Sender, enqueue
from asm.github import COMMENT_PREFIX, IN_PROGRESS, GitHub
from asm.keys import IssueRef, attempts_key, told_key

log = logging.getLogger(__name__)
NOT_OURS_SECONDS = 3600


@dataclass(frozen=True)
class Found:
    """One issue the scan looked at, and what it did with it."""

    issue: IssueRef
    title: str
    task_id: str | None  # None: already queued or claimed
    why: str  # "ready" or "orphaned" (in-progress with nobody holding its claim)


@dataclass(frozen=True)
class ScanResult:
    """What one scan queued, and the repositories it could not read."""

    found: list[Found] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # repo -> why
    held: str = ""  # why nothing was queued at all (the fleet is paused, the model resting)


def scan(github: GitHub, client: redis.Redis[bytes], sender: Sender, repos: tuple[str, ...], ready_label: str,
         stale_after: float) -> ScanResult:
    """Queue every open ready issue, and every in-progress one asm started whose worker is gone.

    A repository that cannot be read is named in the result and skipped; the others are still scanned.
    """
    hold = fleet_hold(client)
    if hold is not None:
        log.warning("nothing queued: %s", hold.reason)
        return ScanResult(held=hold.reason)
    result = ScanResult()
    for repo in repos:
        try:
            result.found.extend(_scan_repo(github, client, sender, repo, ready_label, stale_after))
        except AsmError as problem:
            log.error("scan of %s failed: %s", repo, problem)
            result.failed[repo] = str(problem)
    return result


def _scan_repo(github: GitHub, client: redis.Redis[bytes], sender: Sender, repo: str, ready_label: str,
               stale_after: float) -> list[Found]:
    found: list[Found] = []
    for label, why in ((ready_label, "ready"), (IN_PROGRESS, "orphaned")):
        for issue in github.issues_labelled(repo, label):
            if why == "orphaned" and not is_orphan(github, client, issue.ref):
                continue
            task_id = enqueue(client, sender, issue.ref, by=f"scan ({why})", stale_after=stale_after)
            found.append(Found(issue.ref, issue.title, task_id, why))
            if task_id:
                log.info("queued %s (%s) as %s", issue.ref, why, task_id)
    return found


def is_orphan(github: GitHub, client: redis.Redis[bytes], issue: IssueRef) -> bool:
    """In-progress, nobody holds its claim, and asm is the one that started it.

    `in-progress` is a common label for people's own work too: asm adopts only issues its runs
    marked (an attempts counter in Redis, or, if Redis lost it, a comment asm's own account wrote:
    anyone can write a comment that only looks like asm's).
    """
    if client.exists(issue.claim_key):
        return False  # a live worker holds it
    if client.exists(attempts_key(issue)):
        return True
    # Reading comments costs a request: remember for a while that a person's issue is not ours,
    # or every scan would read them again. (A run of asm's sets the attempts record first.)
    if client.exists(told_key(issue, "not-ours")):
        return False
    me = github.whoami()
    if any(c.author == me and c.body.startswith(COMMENT_PREFIX) for c in github.comments(issue)):
        return True
    client.set(told_key(issue, "not-ours"), 1, ex=NOT_OURS_SECONDS)
    return False
