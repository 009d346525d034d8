"""The scan: find every issue that should be worked on, and queue each one once."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import redis

from asm.config import Settings
from asm.conversation.asks import Trusted, answered, follow_up
from asm.conversation.people import trusted_people
from asm.errors import AsmError
from asm.fleet import probe
from asm.fleet.fair import PriorityLabels
from asm.fleet.hold import fleet_hold
from asm.fleet.pace import Pace, in_turn, latest, stopped_at
from asm.fleet.probe import Seen
from asm.fleet.queue import PROCESS_ISSUE, PROCESS_PULL, Sender, enqueue
from asm.github import COMMENT_PREFIX, IN_PROGRESS, NEEDS_CLARIFICATION, GitHub
from asm.keys import PREFIX, IssueRef, attempts_key, reply_key, seen_key, told_key
from asm.ratelimit import RateLimit, read_limits, record

log = logging.getLogger(__name__)
UNCHANGED, READ = "unchanged", ""  # how _scan_one took a repository (otherwise: why it left it for the next scan)
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
    is_pull: bool = False  # a follow-up on a pull request of asm's (asm.process_pull)


@dataclass(frozen=True)
class FollowRules:
    """What makes a conversation ask for a run (ASM_MENTION, ASM_TRUSTED_PERMISSION, ASM_MAX_CI_FIXES), and
    which labels move a ready issue up or down the line (ASM_HIGH_PRIORITY_LABEL, ASM_LOW_PRIORITY_LABEL)."""

    mention: str = "@asm"
    least: str = "write"
    max_ci_fixes: int = 2
    priorities: PriorityLabels = PriorityLabels()

    @classmethod
    def of(cls, settings: Settings) -> FollowRules:
        return cls(settings.mention, settings.trusted_permission, settings.max_ci_fixes,
                   PriorityLabels(settings.high_priority_label, settings.low_priority_label))


@dataclass(frozen=True)
class ScanResult:
    """What one scan queued, the repositories it could not read, and those it left for the next scan."""

    found: list[Found] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # repo -> why
    held: str = ""  # why nothing was queued at all (the fleet is paused, the model resting)
    unchanged: list[str] = field(default_factory=list)  # repositories GitHub said had not changed (304s only)
    skipped: list[str] = field(default_factory=list)  # not reached: the next scan starts with them
    paced: str = ""  # why it stopped before them (the rate limit), or ""


SCAN_LOCK = PREFIX + "scan:lock"  # held by the scan under way; it lapses should its worker die
SCAN_LOCK_MIN_SECONDS = 10
_RELEASE_IF_MINE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW_IF_MINE = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
                  "return 0")


def scan(github: GitHub, client: redis.Redis[bytes], sender: Sender, repos: tuple[str, ...], ready_label: str,
         stale_after: float, rules: FollowRules = FollowRules(), interval: float = 60.0) -> ScanResult:
    """Queue every open ready issue, every in-progress one asm started whose worker is gone, every pull
    request of asm's that asks for a follow-up, and every issue whose questions someone trusted answered.

    A repository that changed in nothing the scan reads since its last full read costs conditional requests
    answered 304, free (asm.fleet.probe). The rate limit is watched (asm.fleet.pace): once this scan has spent
    its share of it until the next scan, `interval` seconds on, a repository that needs reading waits for the
    next scan, which starts with it (an unchanged one still costs its free 304); once only the runs' reserve is
    left, nothing more is sent.

    A repository that cannot be read is named in the result and skipped; the others are still scanned. As a
    GitHub App, asm scans the repositories of its installations, narrowed by `repos` when it names any.
    """
    hold = fleet_hold(client)
    if hold is not None:
        log.warning("nothing queued: %s", hold.reason)
        return ScanResult(held=hold.reason)
    # One scan at a time across the fleet: a slow one (a thousand repositories on a busy GitHub) that outlasts
    # the interval would otherwise be joined by the next, both spending the rate limit on the same answers.
    # It lapses a few intervals after its scan last read a repository: a scan whose worker died holds up none.
    token, lapse = secrets.token_hex(8), int(max(SCAN_LOCK_MIN_SECONDS, 3 * interval))
    if not client.set(SCAN_LOCK, token, nx=True, ex=lapse):
        log.info("scan skipped: the previous one is still running")
        return ScanResult(held="the previous scan is still running")

    def still_scanning() -> None:
        client.register_script(_RENEW_IF_MINE)(keys=[SCAN_LOCK], args=[token, lapse])

    try:
        return _scan(github, client, sender, repos, ready_label, stale_after, rules, interval, still_scanning)
    finally:
        client.register_script(_RELEASE_IF_MINE)(keys=[SCAN_LOCK], args=[token])


def _scan(github: GitHub, client: redis.Redis[bytes], sender: Sender, repos: tuple[str, ...], ready_label: str,
          stale_after: float, rules: FollowRules, interval: float, still_scanning: Callable[[], None]) -> ScanResult:
    result = ScanResult()
    # ASM_REPOS; as a GitHub App, its installations' repositories (only those ASM_REPOS names, when it names any).
    chosen = github.repositories(repos)
    installed = {name.lower() for name in chosen}
    for repo in repos:
        if repo.lower() not in installed:
            result.failed[repo] = "the GitHub App is not installed on it"
    pace, told, paced = Pace(interval), read_limits(client), ""
    order = in_turn(client, chosen)

    def budgets(repo: str) -> dict[str, RateLimit]:
        """As the last reply with the repository's token told them, or the last scan recorded them. A GitHub
        App's installations each have a budget of their own: there, only the repository's own counts."""
        own = github.rate_limits(repo)
        return own if github.access.app else latest(told, own)

    def share_spent(repo: str) -> Callable[[], str]:
        return lambda: pace.share_spent(budgets(repo))

    for repo in order:
        still_scanning()
        if reached := pace.reserve_reached(budgets(repo)):  # this budget's reserve: others may have theirs
            paced = reached
            result.skipped.append(repo)
            continue
        try:
            found, outcome = _scan_one(github, client, sender, repo, ready_label, stale_after, rules,
                                       share_spent(repo))
        except AsmError as problem:
            log.error("scan of %s failed: %s", repo, problem)
            result.failed[repo] = str(problem)
            continue
        result.found.extend(found)
        if outcome == UNCHANGED:
            result.unchanged.append(repo)
        elif outcome:
            paced = outcome
            result.skipped.append(repo)
    if result.skipped:
        log.warning("scan paced: %d of %d repositories left for the next scan, from %s (%s)",
                    len(result.skipped), len(order), result.skipped[0], paced)
    stopped_at(client, result.skipped[0] if result.skipped else None)
    record(client, github.rate_limits())
    return replace(result, paced=paced)


def _scan_one(github: GitHub, client: redis.Redis[bytes], sender: Sender, repo: str, ready_label: str,
              stale_after: float, rules: FollowRules, defer: Callable[[], str]) -> tuple[list[Found], str]:
    """What one repository asks for, and how: UNCHANGED (GitHub said nothing changed since the last full read,
    whose findings are queued again, de-duplicated, at no counted cost), READ whole, or left for the next scan
    (why, from `defer`, asked before a read: the rate limit)."""
    memory = probe.recall(client, repo)
    if memory is None and (why := defer()):
        return [], why  # with nothing remembered, its question could only be answered 200: counted
    look = probe.look(github, repo, memory)
    if memory is not None and not look.changed:
        found = _queue_issues(github, client, sender, repo, memory.ready, memory.in_progress, stale_after,
                              rules.priorities)
        return found + [_queue_asked(client, sender, repo, seen, stale_after) for seen in memory.asked], UNCHANGED
    if why := defer():
        return [], why  # remembered as it was: the next scan asks again, and reads it
    ready, in_progress = (tuple(Seen(issue.ref.number, issue.title, labels=tuple(sorted(issue.labels)))
                                for issue in github.issues_labelled(repo, label))
                          for label in (ready_label, IN_PROGRESS))
    found = _queue_issues(github, client, sender, repo, ready, in_progress, stale_after, rules.priorities)
    asked, heads = _scan_conversations(github, client, sender, repo, stale_after, rules)
    remembered = (Seen(item.issue.number, item.title, item.why, item.is_pull) for item in asked)
    probe.remember(client, repo, probe.after_read(look, ready, in_progress, remembered, heads, repo))
    return found + asked, READ


def _queue_issues(github: GitHub, client: redis.Redis[bytes], sender: Sender, repo: str, ready: tuple[Seen, ...],
                  in_progress: tuple[Seen, ...], stale_after: float, priorities: PriorityLabels) -> list[Found]:
    found: list[Found] = []
    for issues, why in ((ready, "ready"), (in_progress, "orphaned")):
        for issue in issues:
            ref = IssueRef(repo, issue.number)
            if why == "orphaned" and not is_orphan(github, client, ref):
                continue
            task_id = enqueue(client, sender, ref, by=f"scan ({why})", stale_after=stale_after,
                              priority=priorities.of(frozenset(issue.labels)))
            found.append(Found(ref, issue.title, task_id, why))
            if task_id:
                log.info("queued %s (%s) as %s", ref, why, task_id)
    return found


def _queue_asked(client: redis.Redis[bytes], sender: Sender, repo: str, seen: Seen, stale_after: float) -> Found:
    """Again what a conversation asked for at the last full read (nothing changed since), unless it is queued."""
    task_id = enqueue(client, sender, IssueRef(repo, seen.number), by=f"scan ({seen.why})", stale_after=stale_after,
                      task=PROCESS_PULL if seen.is_pull else PROCESS_ISSUE)
    return Found(IssueRef(repo, seen.number), seen.title, task_id, seen.why, seen.is_pull)


def _scan_conversations(github: GitHub, client: redis.Redis[bytes], sender: Sender, repo: str, stale_after: float,
                        rules: FollowRules) -> tuple[list[Found], list[str]]:
    """Pull requests of asm's that ask for a follow-up, and issues whose questions someone trusted answered; and the
    head commits of asm's open pull requests, whose checks the scan watches until its next full read.

    One glance at the repository a scan (a GraphQL request a page); only a pull request or issue that
    changed since it was last found asking nothing is read whole. A person's permission is asked once and
    remembered a few minutes.
    """
    me = github.whoami()
    trusted = trusted_people(github, repo, rules.least, memory=client)
    found: list[Found] = []
    heads: list[str] = []
    for glance in github.overview(repo, NEEDS_CLARIFICATION):
        if glance.is_pull and not glance.is_asms(me):
            continue
        if glance.is_pull and glance.head_sha:
            heads.append(glance.head_sha)
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
    return found, heads


def consider(github: GitHub, client: redis.Redis[bytes], sender: Sender, ref: IssueRef, is_pull: bool, me: str,
             trusted: Trusted, stale_after: float, rules: FollowRules) -> Found | None:
    """What one pull request of asm's (`is_pull`) or one issue waiting for answers asks for now, read whole and
    queued; None when it asks nothing. The scan calls it for what changed; anything told of a change may too."""
    if is_pull:
        thread = github.pull_thread(ref.repo, ref.number)
        if thread is None:
            return None
        ask = follow_up(thread, me, rules.mention, trusted, rules.max_ci_fixes)
        # A run that pushed and could not post its reply (GitHub refused it) saved it: a delivery posts it.
        why = ask.label if ask else "reply owed" if reply_owed(client, ref, thread.head_sha) else None
        if why is None:
            return None
        task_id = enqueue(client, sender, ref, by=f"scan ({why})", stale_after=stale_after, task=PROCESS_PULL)
        return Found(ref, f"pull request for #{thread.issue_number}", task_id, why, True)
    if answered(github.comments(ref), me, trusted) is None:
        return None
    return Found(ref, "", enqueue(client, sender, ref, by="scan (answered)", stale_after=stale_after), "answered")


def reply_owed(client: redis.Redis[bytes], pull: IssueRef, head: str) -> bool:
    """A follow-up pushed `head` and saved its reply, which has not been posted (`asm.run.pull_run`)."""
    saved = client.get(reply_key(pull))
    try:
        return saved is not None and json.loads(saved).get("sha") == head
    except (ValueError, AttributeError):
        return False


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
