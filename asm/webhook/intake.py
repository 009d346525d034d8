"""What a verified delivery does: remember its id, queue the run a label asks for, hand a look to a task.

Nothing here asks GitHub anything: a label is queued from Redis alone (the run's gate checks who
labelled it, as for the scan), and a comment, review or finished check is handed to `asm.consider`,
which reads the pull request or issue in a worker as the scan would (`asm.fleet.scan.consider`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import redis

from asm.config import Settings
from asm.conversation.people import trusted_people
from asm.fleet.fair import CELERY_PRIORITY, HIGH
from asm.fleet.hold import fleet_hold
from asm.fleet.queue import Sender, enqueue
from asm.fleet.scan import FollowRules, consider
from asm.github import GitHub
from asm.keys import PREFIX, IssueRef
from asm.webhook.events import Target, Told

log = logging.getLogger(__name__)
CONSIDER = "asm.consider"
# GitHub offers a delivery again (by hand, or through its API) for three days: its id is remembered as long.
DELIVERY_SECONDS = 3 * 24 * 3600
# A look queued and not yet started covers every change told meanwhile; this long at most, should its
# message be lost (the scan looks anyway).
LOOK_PENDING_SECONDS = 600


@dataclass(frozen=True)
class Answer:
    """The HTTP status and the one line GitHub shows among a hook's recent deliveries."""

    status: int
    text: str


def delivery_key(delivery: str) -> str:
    return f"{PREFIX}webhook:delivery:{delivery}"


def looking_key(ref: IssueRef) -> str:
    """Set while a look at `ref` waits in the queue: later news of it is already covered."""
    return f"{PREFIX}webhook:look:{ref.key}"


def first_time(client: redis.Redis[bytes], delivery: str) -> bool:
    """Remember the delivery id, shared by every webhook server on this Redis; False when it was seen before."""
    return bool(client.set(delivery_key(delivery), 1, nx=True, ex=DELIVERY_SECONDS))


def forget(client: redis.Redis[bytes], delivery: str) -> None:
    """The delivery was not handled after all (Redis or the broker failed): GitHub may deliver it again."""
    client.delete(delivery_key(delivery))


def take(told: Told, client: redis.Redis[bytes], sender: Sender, settings: Settings) -> Answer:
    """Act on what a delivery told, within the request: Redis and the broker only."""
    if told.kind == "pong":
        return Answer(200, "pong")
    if told.kind == "ignore":
        return Answer(202, f"ignored: {told.why}")
    hold = fleet_hold(client)
    if hold is not None:  # the scan finds it once the fleet goes on
        return Answer(202, f"not queued: {hold.reason}")
    if told.kind == "queue":
        [target] = told.targets
        priority = FollowRules.of(settings).priorities.of(told.labels)
        task_id = enqueue(client, sender, target.ref, by="webhook (labeled)", stale_after=settings.task_time_limit,
                          priority=priority)
        return Answer(202, f"queued {target.ref} as {task_id}" if task_id
                      else f"{target.ref} is already queued or running")
    looks = [target for target in told.targets if look_later(client, sender, target)]
    return Answer(202, f"{told.why}: looking at {', '.join(str(t.ref) for t in looks)}" if looks
                  else f"{told.why}: a look is already queued")


def look_later(client: redis.Redis[bytes], sender: Sender, target: Target) -> bool:
    """Queue one `asm.consider` of the target unless one waits already; whether one was queued."""
    task_id = f"consider:{target.ref.key}@{secrets.token_hex(4)}"
    if not client.set(looking_key(target.ref), task_id, nx=True, ex=LOOK_PENDING_SECONDS):
        return False
    try:
        # A look takes a request or two and tells whether a run is due: ahead of the runs waiting.
        sender.send_task(CONSIDER, args=[target.ref.repo, target.ref.number, target.is_pull], task_id=task_id,
                         countdown=None, priority=CELERY_PRIORITY[HIGH])
    except BaseException:
        client.delete(looking_key(target.ref))
        raise
    return True


def look(github: GitHub, client: redis.Redis[bytes], sender: Sender, settings: Settings, target: Target) -> str:
    """In a worker: read the pull request or issue whole, and queue the run it asks for as the scan would; what
    came of it, in one line."""
    ref = target.ref
    client.delete(looking_key(ref))  # from now on, news of it queues another look
    refused = github.refuses(ref.repo, settings.repos)  # as a delivery of a run refuses: ASM_REPOS, or the App's
    if refused:
        return f"{ref}: refused, {ref.repo} {refused}"
    hold = fleet_hold(client)
    if hold is not None:
        return f"{ref}: nothing queued, {hold.reason}"
    rules = FollowRules.of(settings)
    trusted = trusted_people(github, ref.repo, rules.least, memory=client)
    found = consider(github, client, sender, ref, target.is_pull, github.whoami(), trusted,
                     settings.task_time_limit, rules)
    if found is None:
        return f"{ref}: asks nothing now"
    if found.task_id is None:
        return f"{ref}: {found.why}, already queued or running"
    log.info("queued %s (%s, told by a webhook) as %s", ref, found.why, found.task_id)
    return f"{ref}: queued ({found.why}) as {found.task_id}"
