"""The scan: find every issue that should be worked on, and queue each one once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from asm.config import Settings
from asm.conversation.asks import Trusted, answered, follow_up
from asm.conversation.people import trusted_people
from asm.errors import AsmError
from asm.fleet.hold import fleet_hold
from asm.fleet.queue import PROCESS_PULL, Sender, enqueue
from asm.github import COMMENT_PREFIX, IN_PROGRESS, NEEDS_CLARIFICATION, GitHub
from asm.keys import IssueRef, attempts_key, seen_key, told_key

log = logging.getLogger(__name__)
NOT_OURS_SECONDS = 3600
# A conversation that asked nothing is read whole again once it changes, or after a day (a person's
# permission may have changed since).
SEEN_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Found:
    """One issue the scan looked at, and what it did with it."""

    issue: IssueRef
    title: str
    task_id: str | None  # None: already queued or claimed
    why: str  # "ready", "orphaned" (in-progress, nobody holding its claim), "answered", or a follow-up's kind


@dataclass(frozen=True)
class FollowRules:
    """What makes a conversation ask for a run (ASM_MENTION, ASM_TRUSTED_PERMISSION, ASM_MAX_CI_FIXES)."""

    mention: str = "@asm"
    least: str = "write"
    max_ci_fixes: int = 2

    @classmethod
    def of(cls, settings: Settings) -> FollowRules:
        return cls(settings.mention, settings.trusted_permission, settings.max_ci_fixes)


@dataclass(frozen=True)
class ScanResult:
    """What one scan queued, and the repositories it could not read."""

    found: list[Found] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # repo -> why
    held: str = ""  # why nothing was queued at all (the fleet is paused, the model resting)


def scan(github: GitHub, client: redis.Redis[bytes], sender: Sender, repos: tuple[str, ...], ready_label: str,
         stale_after: float, rules: FollowRules = FollowRules()) -> ScanResult:
    """Queue every open ready issue, every in-progress one asm started whose worker is gone, every pull
    request of asm's that asks for a follow-up, and every issue whose questions someone trusted answered.

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
            result.found.extend(_scan_conversations(github, client, sender, repo, stale_after, rules))
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


def _scan_conversations(github: GitHub, client: redis.Redis[bytes], sender: Sender, repo: str, stale_after: float,
                        rules: FollowRules) -> list[Found]:
    """Pull requests of asm's that ask for a follow-up, and issues whose questions someone trusted answered.

    One glance at the repository a scan (a GraphQL request a page); only a pull request or issue that
    changed since it was last found asking nothing is read whole. A person's permission is asked once and
    remembered a few minutes.
    """
    me = github.whoami()
    trusted = trusted_people(github, repo, rules.least, memory=client)
    found: list[Found] = []
    for glance in github.overview(repo, NEEDS_CLARIFICATION):
        if glance.is_pull and not glance.is_asms(me):
            continue
        seen = seen_key(IssueRef(repo, glance.number))
        if client.get(seen) == glance.signature.encode():
            continue  # nothing changed since it asked for nothing
        item = consider(github, client, sender, IssueRef(repo, glance.number), glance.is_pull, me, trusted,
                        stale_after, rules)
        if item is None:
            client.set(seen, glance.signature, ex=SEEN_SECONDS)
        else:
            found.append(item)
            if item.task_id:
                log.info("queued %s (%s) as %s", item.issue, item.why, item.task_id)
    return found


def consider(github: GitHub, client: redis.Redis[bytes], sender: Sender, ref: IssueRef, is_pull: bool, me: str,
             trusted: Trusted, stale_after: float, rules: FollowRules) -> Found | None:
    """What one pull request of asm's (`is_pull`) or one issue waiting for answers asks for now, read whole and
    queued; None when it asks nothing. The scan calls it for what changed; anything told of a change may too."""
    if is_pull:
        thread = github.pull_thread(ref.repo, ref.number)
        ask = follow_up(thread, me, rules.mention, trusted, rules.max_ci_fixes) if thread else None
        if thread is None or ask is None:
            return None
        task_id = enqueue(client, sender, ref, by=f"scan ({ask.label})", stale_after=stale_after, task=PROCESS_PULL)
        return Found(ref, f"pull request for #{thread.issue_number}", task_id, ask.label)
    if answered(github.comments(ref), me, trusted) is None:
        return None
    return Found(ref, "", enqueue(client, sender, ref, by="scan (answered)", stale_after=stale_after), "answered")


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
