"""How much of GitHub's rate limit one scan may spend: it slows down before the limit, never after.

GitHub gives a token (or a GitHub App installation) a budget an hour per resource, `core` for REST and
`graphql`, shared by everything asm does with it: the scan, and the runs' labels, comments and pushes. The
scan keeps off the last RESERVE_FRACTION (asm.ratelimit) of each, for the runs, and spends no more than its
share of the rest: the rest spread evenly until the reset, over the seconds until the next scan, or a
twentieth of it if that is more (a burst, for a first scan of many repositories, or scans seconds apart; the
share shrinks with the budget, so it never runs out before the reset):

    share = (remaining - reserve) x max(min(1, scan interval / seconds until the reset), FLOOR_FRACTION)

Before it reads a repository whole (its question was not answered 304, or it has no memory of it), it compares
how far the budget has dropped since the scan began with that share: once the share is spent, the repositories
that would need a read are left for the next scan, which starts with them, and unchanged ones still cost their
free 304. Once the reserve is reached it sends nothing more at all. A thousand repositories read for the first
time spread over as many scans as the budget needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import redis

from asm.keys import SCAN_NEXT
from asm.observe.display import duration_text
from asm.ratelimit import RateLimit

log = logging.getLogger(__name__)
NEXT_SECONDS = 24 * 3600  # where a paced scan stopped is forgotten after this long without a scan
FLOOR_FRACTION = 0.05  # of what is left above the reserve, a scan may always spend


def reset_text(budget: RateLimit, now: float) -> str:
    at = datetime.fromtimestamp(budget.reset, timezone.utc).strftime("%H:%M:%S UTC")
    return f"resets at {at}, in {duration_text(budget.seconds_to_reset(now))}"


@dataclass
class Pace:
    """One scan's spending of the rate limit, from its first reply on."""

    interval: float  # seconds until the next scan (ASM_SCAN_INTERVAL)
    began: float = field(default_factory=time.time)
    # The budget as this scan first saw it, per resource and window (an App's installations each have theirs).
    anchors: dict[tuple[str, float], RateLimit] = field(default_factory=dict)

    def reserve_reached(self, budgets: Mapping[str, RateLimit], now: float | None = None) -> str:
        """Why the scan sends nothing more (a budget is down to what is kept for the runs), or ""."""
        now = time.time() if now is None else now
        for resource, budget in sorted(budgets.items()):
            if budget.current(now) and budget.remaining <= budget.reserve:
                return (f"GitHub {resource} rate limit: {budget.remaining} of {budget.limit} left, kept for the runs; "
                        f"{reset_text(budget, now)}")
        return ""

    def share_spent(self, budgets: Mapping[str, RateLimit], now: float | None = None) -> str:
        """Why the scan reads no more repositories whole (its share is spent, or the reserve reached), or ""."""
        now = time.time() if now is None else now
        reached = self.reserve_reached(budgets, now)
        if reached:
            return reached
        for resource, budget in sorted(budgets.items()):
            if not budget.current(now):
                continue  # its window is over: the budget is whole again
            if budget.seen_at < self.began:
                continue  # told before this scan began (by another machine, perhaps): only the reserve counts
            anchor = self.anchors.setdefault((resource, budget.reset), budget)
            seconds_left = max(anchor.seconds_to_reset(anchor.seen_at), 1.0)
            even = min(1.0, self.interval / seconds_left)
            share = (anchor.remaining - anchor.reserve) * max(even, FLOOR_FRACTION)
            spent = anchor.remaining - budget.remaining
            if spent > 0 and spent >= share:
                return (f"GitHub {resource} rate limit: this scan spent {spent}, its share of the {budget.remaining} "
                        f"left until the reset ({reset_text(budget, now)}) at one scan every {self.interval:g}s")
        return ""


def latest(*sources: Mapping[str, RateLimit]) -> dict[str, RateLimit]:
    """Per resource, the budget told most recently among `sources`."""
    found: dict[str, RateLimit] = {}
    for source in sources:
        for resource, budget in source.items():
            if resource not in found or budget.seen_at > found[resource].seen_at:
                found[resource] = budget
    return found


def in_turn(client: redis.Redis[bytes], repos: tuple[str, ...]) -> tuple[str, ...]:
    """The repositories in the order this scan takes them: from where the last paced scan stopped."""
    raw = client.get(SCAN_NEXT)
    start = raw.decode().lower() if raw else ""
    names = [repo.lower() for repo in repos]
    if start not in names:
        return repos
    index = names.index(start)
    return repos[index:] + repos[:index]


def stopped_at(client: redis.Redis[bytes], repo: str | None) -> None:
    """Where the next scan starts (None: at the beginning, this scan reached every repository)."""
    if repo is None:
        client.delete(SCAN_NEXT)
    else:
        client.set(SCAN_NEXT, repo, ex=NEXT_SECONDS)
