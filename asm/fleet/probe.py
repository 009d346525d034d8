"""Whether a repository changed since the scan last read it, for the price of a 304 (which GitHub does not count).

A full read of a repository costs its lists of ready and in-progress issues (a REST request a page) and a
GraphQL glance at its conversations (GraphQL has no ETags). Between full reads the scan asks GitHub, with
`If-None-Match`, questions whose answers change whenever anything it acts on changes:

- the repository's most recently updated issues and pull requests (`GET /repos/{o}/{r}/issues?state=all&
  sort=updated&direction=desc`): a label, a comment, an edit, an issue opened or closed, a review or a push to
  a pull request all update the issue or pull request they touch, which then leads this list;
- for each open pull request of asm's, the check runs and the combined status of its head commit
  (`GET .../commits/{sha}/check-runs`, `.../commits/{sha}/status`): a check finishing updates no pull request.

The repository's event feed (`/repos/{o}/{r}/events`) would be one request too, but GitHub says it is not
real-time (from 30 s to 6 h late) and it has no check events.

When every answer is a 304, what the last full read found (the ready and in-progress issues, what the
conversations asked for) is what a full read would find now, and the scan acts on it at no counted cost.
Otherwise the scan reads the repository whole and remembers what it found under the ETags it was given
*before* it read: a change made while it read is a change again next time, never lost.

The memory is shared by the fleet in Redis and expires (spread out, so a thousand repositories do not all
expire in one minute): a full read at least that often also catches what updates no issue (a label deleted
from the repository's settings, a person's permission changed).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from asm.github import GitHub
from asm.keys import scan_memory_key

# The probe reads this many of the most recently updated issues, not one: two changed in the same second may
# list in either order, and a change must show in the page whichever comes first.
PROBE_PAGE = 20
CHECKS_PAGE = 100  # a head with more checks than one page holds is read whole at every scan
MEMORY_SECONDS = 24 * 3600
MEMORY_SPREAD = 6 * 3600  # each repository's memory lives 18 to 24 hours


@dataclass(frozen=True)
class Seen:
    """An issue a full read listed, or a conversation it found asking for something."""

    number: int
    title: str
    why: str = ""  # a conversation's ask ("answered", a follow-up's kind)
    is_pull: bool = False
    labels: tuple[str, ...] = ()  # an issue's labels (a priority label moves it up or down the line)


@dataclass(frozen=True)
class Memory:
    """What the last full read of a repository found, and the ETags it read it under."""

    issues_etag: str
    ready: tuple[Seen, ...] = ()
    in_progress: tuple[Seen, ...] = ()
    asked: tuple[Seen, ...] = ()
    checks: dict[str, str] = field(default_factory=dict)  # a head's checks path -> ETag ("": none yet)

    def as_json(self) -> str:
        def rows(items: Iterable[Seen]) -> list[list[object]]:
            return [[item.number, item.title, item.why, item.is_pull, list(item.labels)] for item in items]

        return json.dumps({"issues": self.issues_etag, "ready": rows(self.ready),
                           "in_progress": rows(self.in_progress), "asked": rows(self.asked), "checks": self.checks})

    @classmethod
    def from_json(cls, raw: bytes) -> Memory:
        data = json.loads(raw)

        def seen(rows: list[list[Any]]) -> tuple[Seen, ...]:
            return tuple(Seen(int(n), str(title), str(why), bool(pull), tuple(str(name) for name in labels))
                         for n, title, why, pull, labels in rows)

        return cls(str(data["issues"]), seen(data["ready"]), seen(data["in_progress"]), seen(data["asked"]),
                   {str(path): str(tag) for path, tag in data["checks"].items()})


@dataclass(frozen=True)
class Look:
    """The conditional requests of one scan of one repository: whether anything changed, the ETags given."""

    changed: bool
    issues_etag: str
    checks: dict[str, str]  # path -> ETag, as this look was answered
    requests: int
    not_modified: int


def issues_path(repo: str) -> str:
    return f"/repos/{repo}/issues"


def checks_paths(repo: str, head_sha: str) -> tuple[str, str]:
    """Where a head commit's check runs and combined status are read."""
    return f"/repos/{repo}/commits/{head_sha}/check-runs", f"/repos/{repo}/commits/{head_sha}/status"


def recall(client: redis.Redis[bytes], repo: str) -> Memory | None:
    """The memory of the repository's last full read, if the fleet has one."""
    raw = client.get(scan_memory_key(repo))
    if raw is None:
        return None
    try:
        return Memory.from_json(raw)
    except (KeyError, TypeError, ValueError):
        return None  # written by another version of asm: read the repository whole


def remember(client: redis.Redis[bytes], repo: str, memory: Memory) -> None:
    client.set(scan_memory_key(repo), memory.as_json(), ex=MEMORY_SECONDS - random.randrange(MEMORY_SPREAD))


def forget(client: redis.Redis[bytes], repo: str) -> None:
    """The next scan reads the repository whole."""
    client.delete(scan_memory_key(repo))


def look(github: GitHub, repo: str, memory: Memory | None) -> Look:
    """Ask GitHub, with the ETags of the last full read, whether anything the scan reads has changed."""
    answer = github.conditional_get(repo, issues_path(repo), {"state": "all", "sort": "updated",
                                                              "direction": "desc", "per_page": PROBE_PAGE},
                                    memory.issues_etag if memory else "")
    answers = [answer]
    checks: dict[str, str] = {}
    for path, etag in (memory.checks if memory else {}).items():
        reply = github.conditional_get(repo, path, {"per_page": CHECKS_PAGE}, etag)
        answers.append(reply)
        whole = not (isinstance(reply.body, dict) and int(reply.body.get("total_count") or 0) > CHECKS_PAGE)
        checks[path] = reply.etag if whole else ""
    changed = memory is None or any(reply.changed for reply in answers)
    return Look(changed, answer.etag, checks, len(answers), sum(1 for reply in answers if not reply.changed))


def after_read(look: Look, ready: Iterable[Seen], in_progress: Iterable[Seen], asked: Iterable[Seen],
               heads: Iterable[str], repo: str) -> Memory:
    """The memory of a full read: the ETags given before it, and a head first seen in it with none yet (its checks
    are read with no ETag next time, which counts as a change: the read after that has ETags from before it)."""
    checks = {path: look.checks.get(path, "") for sha in heads for path in checks_paths(repo, sha)}
    return Memory(look.issues_etag, tuple(ready), tuple(in_progress), tuple(asked), checks)
