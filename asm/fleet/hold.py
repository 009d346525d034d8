"""Whether the fleet takes new issues: it is paused (until `asm resume`), or it rests the model API.

Both are fleet-wide keys in Redis, so every worker, the scan and `asm enqueue` ask the one question
here, and the runs that find the model account or the API failing set them here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from asm.keys import MODEL_OUTAGES, MODEL_RESTING, PAUSED
from asm.observe.status import paused_reason

# After the model API failed every retry, the whole fleet waits before trying it again: a multiple
# of the retry backoff at first (a rest longer than the retries that just failed), doubling with
# each outage in a row, up to MODEL_REST_MAX_SECONDS.
MODEL_REST_BACKOFFS = 8
MODEL_REST_MAX_SECONDS = 900.0
# Outages further apart than this are not "in a row": the count starts again.
OUTAGES_REMEMBERED_SECONDS = int(MODEL_REST_MAX_SECONDS * 4)


@dataclass(frozen=True)
class Hold:
    """Why the fleet takes no new issue now."""

    reason: str  # for people: what holds the fleet, and what ends it
    paused: bool  # True: until a person runs `asm resume`; False: the model API rests, and that ends by itself
    resting_seconds: int = 0  # what is left of the model's rest


def fleet_hold(client: redis.Redis[bytes]) -> Hold | None:
    """What holds the fleet now, if anything: the one check before queuing or starting an issue."""
    paused = paused_reason(client)
    if paused:
        return Hold(f"the fleet is paused ({paused}); `asm resume` ends it", paused=True)
    resting = client.ttl(MODEL_RESTING)
    if resting > 0:
        return Hold(f"the model API is resting after an outage, for {resting}s more", paused=False,
                    resting_seconds=resting)
    return None


def pause_fleet(client: redis.Redis[bytes], reason: str) -> None:
    """No worker takes a new issue until `asm resume` (the account, not an issue, is the problem)."""
    client.set(PAUSED, reason)


def resume_fleet(client: redis.Redis[bytes]) -> str | None:
    """End a pause; why the fleet was paused, or None when it was not."""
    pipe = client.pipeline()
    pipe.get(PAUSED)
    pipe.delete(PAUSED)
    reason, _ = pipe.execute()
    return reason.decode() if reason else None


def rest_model(client: redis.Redis[bytes], why: str, backoff_seconds: float) -> int:
    """The model API failed every retry: rest it fleet-wide, longer each outage in a row; the rest, in
    whole seconds (what Redis keeps, and what `fleet_hold` reads back)."""
    pipe = client.pipeline()
    pipe.incr(MODEL_OUTAGES)
    pipe.expire(MODEL_OUTAGES, OUTAGES_REMEMBERED_SECONDS)
    outages, _ = pipe.execute()
    rest: int = math.ceil(min(backoff_seconds * MODEL_REST_BACKOFFS * 2 ** (outages - 1), MODEL_REST_MAX_SECONDS))
    client.set(MODEL_RESTING, why, ex=rest)
    return rest


def model_answered(client: redis.Redis[bytes]) -> None:
    """A billed reply: whatever outages came before, the next one is the first of a new row."""
    client.delete(MODEL_OUTAGES)
