"""Fair turns across repositories: every run waits in its repository's line in Redis, and lines take turns.

However a run is asked for (the scan, `asm enqueue`, a webhook), `asm.fleet.queue.enqueue` puts it in
its repository's waiting line, and `release` sends the next runs to the Celery queue, keeping at
most AHEAD run messages there, so each choice is made when a slot is about to be free, with
everything that is waiting in view. The choice is one Lua script, so any number of processes on
any number of machines can release at once:

- priority first: a `priority:high` issue of any repository goes before every normal one, a
  `priority:low` one after them; within a priority, a line holds its issues oldest first (by number,
  however they were listed or told of; a delivery sent back to wait goes before them all);
- then turns: among repositories with an issue of the best priority waiting, the one whose turn it
  is (stride scheduling: a repository's pass grows by 1/weight each time it is served, ASM_REPO_WEIGHTS;
  the lowest pass goes next, so weights 3 and 1 share out 3 to 1, and equal weights are a round robin);
  a repository that had nothing waiting rejoins at the current pass, and banks no turns while away;
- then the limit: a repository with ASM_MAX_RUNNING_PER_REPO runs going is passed over (its turn
  kept) until one of them ends.

The released message carries the issue's priority as a Celery priority (Redis: 0 first), so what
does sit in the Celery queue at once (a scan, a retry after the model's rest, a message restored
after a worker died) is taken in the same order.

Releases happen when a run is queued, when a worker takes a run and when it ends, when a worker
starts, and after every scan. A run taken out of its line is kept in SENDING until its message is
sent: a process that dies in between leaves it there, and a release after SENDING_GRACE_SECONDS puts
it back at the head of its line. Nothing is released while the fleet is held.

Runs per repository are counted in Redis by the claims themselves: a repository's running set holds
issue keys, each counted while its claim key exists (or for ADMIT_GRACE_SECONDS after it was let in,
before its claim is taken), so a dead worker's run stops counting when its claim expires. A
delivery checks the limit before it claims (`admit`); over it, the issue goes back to the head of its
line and waits there, released again when a run of its repository ends. The claim alone still makes
each run happen once: this module only decides the order and how many run at a time.

Why not one Celery queue per repository? kombu's Redis transport does take turns among the queues
a worker consumes (it rotates them after each message), but unweighted, per worker, with every
repository's queue (times each priority step) in every BRPOP, and only for queues the worker was
told of at start or by a broadcast `add_consumer` that a restarted worker forgets. A per-repository
limit would still need a gate outside Celery. Lines in Redis do all three with one small script.

The weights and the limit the scripts use are the fleet's, published to Redis by every worker when
it starts and by every scan (`publish`), so a process without them (`asm enqueue`, a webhook server)
releases by the same rules: set them alike on every machine.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import redis
from kombu.exceptions import KombuError

from asm.fleet.hold import fleet_hold
from asm.keys import PREFIX, QUEUED, IssueRef

log = logging.getLogger(__name__)

HIGH, NORMAL, LOW = 0, 1, 2  # an issue's priority: the order lines are served in
PRIORITY_NAMES = {HIGH: "high", NORMAL: "normal", LOW: "low"}
# Celery on Redis keeps one list per priority step and takes from the lowest step first. The three
# priorities use three steps; a message sent without one (the scan, a webhook's look) counts as 0.
PRIORITY_STEPS = (0, 3, 6)
CELERY_PRIORITY = {HIGH: 0, NORMAL: 3, LOW: 6}
CELERY_QUEUE = "celery"  # Celery's default queue, the only one asm uses
PRIORITY_SEP = "\x06\x16"  # kombu's default separator between a queue's name and its priority step
# Run messages waiting in the Celery queue, at most: one, so a slot coming free finds its next run at
# once, and every other choice waits for the moment a slot is about to take it.
AHEAD = 1
# How long a run let in (released, or admitted by a delivery) counts before its claim exists.
ADMIT_GRACE_SECONDS = 60

LINE = PREFIX + "fair:line:"  # + repo (lower case): sorted set of "<issue key>|<task>", by priority then number
LINES = PREFIX + "fair:lines"  # sorted set of repos with issues waiting, by their next issue's priority, then pass
PASSES = PREFIX + "fair:pass"  # hash: repo -> its pass (how far its turns have gone)
CLOCK = PREFIX + "fair:clock"  # the pass of the last repository served: where a returning one rejoins
RUNS = PREFIX + "fair:runs:"  # + repo: sorted set of issue keys running (or about to), by when they were let in
CONFIG = PREFIX + "fair:config"  # hash: "limit" and "weight:<repo>", as the fleet published them
# Sorted set of line members taken out of their line and not yet sent to Celery, by when: a process that dies
# in between leaves them here, and the next release puts them back at the head of their lines.
SENDING = PREFIX + "fair:sending"
SENDING_GRACE_SECONDS = 60  # far longer than a send takes: older ones were lost with their process
CLAIMS = PREFIX + "claim:"  # asm.keys.IssueRef.claim_key, without the issue's key
BAND = 1e12  # a score is priority * BAND + number (an issue) or + pass (a repository)

# How many runs of a repository count now; forgets those whose claim is gone and whose grace is over.
_LIVE = f"""
local function live(repo, now, grace, skip)
  local runs = '{RUNS}' .. repo
  local entries = redis.call('ZRANGE', runs, 0, -1, 'WITHSCORES')
  local count = 0
  for i = 1, #entries, 2 do
    local key = entries[i]
    if tonumber(entries[i + 1]) > now - grace or redis.call('EXISTS', '{CLAIMS}' .. key) == 1 then
      if key ~= skip then count = count + 1 end
    else
      redis.call('ZREM', runs, key)
    end
  end
  return count
end
local function clock_now()
  local time = redis.call('TIME')
  return tonumber(time[1]) + tonumber(time[2]) / 1000000
end
local function rank(repo, pass)
  local line = '{LINE}' .. repo
  local head = redis.call('ZRANGE', line, 0, 0, 'WITHSCORES')
  if head[1] then
    redis.call('ZADD', '{LINES}', math.floor(tonumber(head[2]) / {BAND:.0f}) * {BAND:.0f} + pass, repo)
  else
    redis.call('ZREM', '{LINES}', repo)
  end
end
"""

# ARGV: repo (lower case), member, priority, place in its priority (the issue's number; 0: first). 1 if added;
# 0 if it was waiting already (moved up, when its priority is now higher: a priority label added meanwhile).
_WAIT = _LIVE + f"""
local repo, member, priority = ARGV[1], ARGV[2], tonumber(ARGV[3])
local line = '{LINE}' .. repo
local score = priority * {BAND:.0f} + tonumber(ARGV[4])
local waiting = redis.call('ZSCORE', line, member)
if waiting then
  if math.floor(tonumber(waiting) / {BAND:.0f}) > priority then
    redis.call('ZADD', line, score, member)
    rank(repo, tonumber(redis.call('HGET', '{PASSES}', repo) or '0'))
  end
  return 0
end
redis.call('ZADD', line, score, member)
local pass = tonumber(redis.call('HGET', '{PASSES}', repo) or '0')
if not redis.call('ZSCORE', '{LINES}', repo) then
  pass = math.max(pass, tonumber(redis.call('GET', '{CLOCK}') or '0'))
  redis.call('HSET', '{PASSES}', repo, pass)
end
rank(repo, pass)
return 1
"""

# KEYS: the Celery queue's lists. ARGV: AHEAD, ADMIT_GRACE_SECONDS.
# Returns member, priority, queued marker ("" when none) for each issue released.
_RELEASE = _LIVE + f"""
local room = tonumber(ARGV[1])
for i = 1, #KEYS do room = room - redis.call('LLEN', KEYS[i]) end
local limit = tonumber(redis.call('HGET', '{CONFIG}', 'limit') or '0')
local grace = tonumber(ARGV[2])
local now = clock_now()
local released, full = {{}}, {{}}
while room > 0 do
  local pick = nil
  for _, repo in ipairs(redis.call('ZRANGE', '{LINES}', 0, -1)) do
    if not full[repo] then
      if limit > 0 and live(repo, now, grace, nil) >= limit then full[repo] = true else pick = repo; break end
    end
  end
  if not pick then break end
  local line = '{LINE}' .. pick
  local head = redis.call('ZRANGE', line, 0, 0, 'WITHSCORES')
  local pass = tonumber(redis.call('HGET', '{PASSES}', pick) or '0')
  if head[1] then
    redis.call('ZREM', line, head[1])
    redis.call('ZADD', '{SENDING}', now, head[1])
    redis.call('SET', '{CLOCK}', pass)
    pass = pass + 1 / tonumber(redis.call('HGET', '{CONFIG}', 'weight:' .. pick) or '1')
    redis.call('HSET', '{PASSES}', pick, pass)
    local key = string.match(head[1], '^(.*)|')
    if limit > 0 then redis.call('ZADD', '{RUNS}' .. pick, now, key) end
    table.insert(released, head[1])
    table.insert(released, math.floor(tonumber(head[2]) / {BAND:.0f}))
    table.insert(released, redis.call('HGET', '{QUEUED}', key) or '')
    room = room - 1
  end
  rank(pick, pass)
end
return released
"""

# ARGV: repo (lower case), issue key, ADMIT_GRACE_SECONDS. 1 if the run may start.
_ADMIT = _LIVE + f"""
local limit = tonumber(redis.call('HGET', '{CONFIG}', 'limit') or '0')
if limit <= 0 then return 1 end
local now = clock_now()
if live(ARGV[1], now, tonumber(ARGV[3]), ARGV[2]) >= limit then return 0 end
redis.call('ZADD', '{RUNS}' .. ARGV[1], now, ARGV[2])
return 1
"""


class Sender(Protocol):
    """What sends a task by name: the Celery app (`app.send_task`)."""

    def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None,
                  priority: int | None = None) -> object: ...


@dataclass(frozen=True)
class PriorityLabels:
    """The labels that move an issue up or down the line (ASM_HIGH_PRIORITY_LABEL, ASM_LOW_PRIORITY_LABEL)."""

    high: str = "priority:high"
    low: str = "priority:low"

    def of(self, labels: Iterable[str]) -> int:
        """The priority of an issue labelled so; high wins when it has both (GitHub ignores a label's case)."""
        names = {label.lower() for label in labels}
        return HIGH if self.high.lower() in names else LOW if self.low.lower() in names else NORMAL


def celery_queue_lists(queue: str = CELERY_QUEUE) -> list[str]:
    """The Redis lists kombu keeps a queue's messages in, one per priority step."""
    return [f"{queue}{PRIORITY_SEP}{step}" if step else queue for step in PRIORITY_STEPS]


def publish(client: redis.Redis[bytes], weights: Mapping[str, int], limit: int) -> None:
    """Make these the fleet's weights and per-repository limit (0: none), for every process that releases."""
    fields: dict[str | bytes, bytes | float | int | str] = {"limit": limit}
    fields.update({f"weight:{repo.lower()}": weight for repo, weight in weights.items()})
    pipe = client.pipeline(transaction=True)
    pipe.delete(CONFIG)
    pipe.hset(CONFIG, mapping=fields)
    pipe.execute()


def wait(client: redis.Redis[bytes], issue: IssueRef, task: str, priority: int = NORMAL, first: bool = False) -> bool:
    """Put the issue in its repository's line (`first`: at the head of its priority); False if it was there."""
    script = client.register_script(_WAIT)
    member = f"{issue.key}|{task}"
    return bool(script(args=[issue.repo.lower(), member, priority, 0 if first else issue.number]))


def marked_priority(marker: Mapping[str, object]) -> int:
    """The priority a queued marker records (NORMAL when it records none)."""
    return {name: band for band, name in PRIORITY_NAMES.items()}.get(str(marker.get("priority")), NORMAL)


def wait_again(client: redis.Redis[bytes], issue: IssueRef, task: str, marker: str | None) -> None:
    """A delivery over its repository's limit: back to the head of its line, with the queued marker it came
    with (`asm.fleet.queue.mark_delivered` returns it) and so its priority."""
    queued = json.loads(marker) if marker else {"queued_at": time.time(), "by": "a delivery over the limit"}
    priority = marked_priority(queued)
    queued["task_id"] = _task_id(issue)  # its next message is a new task: the one just delivered has ended
    client.hsetnx(QUEUED, issue.key, json.dumps(queued))
    wait(client, issue, task, priority, first=True)


def release(client: redis.Redis[bytes], sender: Sender) -> list[IssueRef]:
    """Send the next runs to Celery, as many as the queue has room for; what was sent.

    What cannot be sent goes back to the head of its line, logged: the next release (a run's end,
    the next scan) sends it.
    """
    try:
        if fleet_hold(client) is not None:
            return []
        _recover_unsent(client)
        popped = client.register_script(_RELEASE)(keys=celery_queue_lists(), args=[AHEAD, ADMIT_GRACE_SECONDS])
    except redis.RedisError as problem:
        log.warning("could not release waiting runs (%s); the next run's end or scan will", problem)
        return []
    picks = [(_member(popped[i]), int(popped[i + 1]), popped[i + 2], popped[i]) for i in range(0, len(popped), 3)]
    for index, ((issue, task), priority, marker, member) in enumerate(picks):
        task_id = json.loads(marker).get("task_id") if marker else None
        try:
            sender.send_task(task, args=[issue.repo, issue.number], task_id=task_id or _task_id(issue),
                             countdown=None, priority=CELERY_PRIORITY.get(priority, CELERY_PRIORITY[NORMAL]))
            client.zrem(SENDING, member)
        except (redis.RedisError, KombuError, OSError) as problem:
            log.warning("could not send %s to the queue (%s); it waits for the next release", issue, problem)
            try:
                for (unsent, unsent_task), unsent_priority, _, unsent_member in picks[index:]:
                    wait(client, unsent, unsent_task, unsent_priority, first=True)
                    client.zrem(SENDING, unsent_member)
                    leave(client, unsent)  # let in but never sent: it holds no place under the limit
            except redis.RedisError:
                pass  # Redis is away too: the next release finds them among the unsent, or the scan queues them
            return [issue for (issue, _), _, _, _ in picks[:index]]
    return [issue for (issue, _), _, _, _ in picks]


def _recover_unsent(client: redis.Redis[bytes]) -> None:
    """Put back at the head of their lines the runs a process took out and died before sending."""
    # Redis's clock, which stamped them (in the release script): a machine's own may be minutes off.
    seconds, micros = client.time()
    stale = client.zrangebyscore(SENDING, 0, seconds + micros / 1e6 - SENDING_GRACE_SECONDS)
    for member in stale:
        if client.zrem(SENDING, member):  # only one releaser puts each back
            issue, task = _member(member)
            marker = client.hget(QUEUED, issue.key)
            wait_again(client, issue, task, marker.decode() if marker else None)
            leave(client, issue)
            log.warning("%s was taken out of its line but never sent (its process died): it waits again", issue)


def _member(raw: bytes) -> tuple[IssueRef, str]:
    """A line's member, `<owner/name>#<n>|<task>`, as the issue and the task that works it."""
    key, _, task = raw.decode().rpartition("|")
    repo, _, number = key.rpartition("#")
    return IssueRef(repo, int(number)), task


def _task_id(issue: IssueRef) -> str:
    """A Celery task id named by its issue, as `enqueue` makes them."""
    return f"{issue.key}@{secrets.token_hex(4)}"


def admit(client: redis.Redis[bytes], issue: IssueRef) -> bool:
    """Whether a run of the issue may start now under the fleet's per-repository limit; if so, it counts from now."""
    script = client.register_script(_ADMIT)
    return bool(script(args=[issue.repo.lower(), issue.key, ADMIT_GRACE_SECONDS]))


def leave(client: redis.Redis[bytes], issue: IssueRef) -> None:
    """The run ended: it no longer counts against its repository's limit."""
    client.zrem(RUNS + issue.repo.lower(), issue.key)


def waiting(client: redis.Redis[bytes]) -> dict[str, int]:
    """How many issues wait in each repository's line."""
    repos = [repo.decode() for repo in client.zrange(LINES, 0, -1)]
    pipe = client.pipeline()
    for repo in repos:
        pipe.zcard(LINE + repo)
    return dict(zip(repos, pipe.execute(), strict=True))


def queue_length(client: redis.Redis[bytes]) -> int:
    """Runs waiting in their lines, and messages in the Celery queue no worker has taken yet."""
    pipe = client.pipeline()
    for name in celery_queue_lists():
        pipe.llen(name)
    sizes: list[int] = pipe.execute()
    return sum(sizes) + sum(waiting(client).values())
