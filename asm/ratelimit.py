"""GitHub's rate-limit budget as the headers of its replies tell it, and as the fleet last saw it (in Redis).

Every reply carries `X-RateLimit-Limit`, `-Remaining`, `-Used`, `-Reset` (epoch seconds) and `-Resource`
(`core` for REST, `graphql` for GraphQL: two separate budgets). The scan records what it saw, so
`asm status` on any machine shows the budget left and when it comes back.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import redis

from asm.keys import RATE_LIMITS

# What the scan leaves of each budget for the runs (labels, comments, pushes, pull requests) and for
# `asm enqueue`: the scan stops before it would dip into this share.
RESERVE_FRACTION = 0.1


@dataclass(frozen=True)
class RateLimit:
    """One budget (`resource`) at one moment (`seen_at`, epoch seconds)."""

    resource: str
    limit: int
    remaining: int
    used: int
    reset: float  # epoch seconds at which the budget comes back whole
    seen_at: float

    @property
    def reserve(self) -> int:
        return int(self.limit * RESERVE_FRACTION)

    def seconds_to_reset(self, now: float) -> float:
        return max(self.reset - now, 0.0)

    def current(self, now: float) -> bool:
        """Whether its window still runs (after the reset the budget is whole again)."""
        return self.reset > now


def from_headers(headers: Mapping[str, str], now: float | None = None) -> RateLimit | None:
    """The budget a reply's headers tell (names in any case); None when they do not."""
    lower = {name.lower(): value for name, value in headers.items()}
    try:
        limit = int(float(lower["x-ratelimit-limit"]))
        remaining = int(float(lower["x-ratelimit-remaining"]))
        reset = float(lower["x-ratelimit-reset"])
    except (KeyError, ValueError, OverflowError):
        return None
    if not math.isfinite(reset):
        return None
    used = lower.get("x-ratelimit-used") or ""
    return RateLimit(resource=lower.get("x-ratelimit-resource") or "core", limit=limit, remaining=remaining,
                     used=int(used) if used.isdigit() else limit - remaining,
                     reset=reset, seen_at=time.time() if now is None else now)


def record(client: redis.Redis[bytes], limits: Mapping[str, RateLimit]) -> None:
    """Keep the latest budgets seen (a later sighting never loses to an earlier one from another machine)."""
    if not limits:
        return
    known = read_limits(client)
    fresh: dict[str | bytes, str] = {resource: json.dumps(asdict(limit)) for resource, limit in limits.items()
             if resource not in known or limit.seen_at >= known[resource].seen_at}
    if fresh:
        client.hset(RATE_LIMITS, mapping=fresh)


def read_limits(client: redis.Redis[bytes]) -> dict[str, RateLimit]:
    """The budgets last seen by any machine, by resource."""
    found = {}
    for resource, raw in client.hgetall(RATE_LIMITS).items():
        try:
            found[resource.decode()] = RateLimit(**json.loads(raw))
        except (TypeError, ValueError):
            continue  # written by another version: the next scan writes it again
    return found
