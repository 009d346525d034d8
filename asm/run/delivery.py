"""What every delivery of a task does before its work: refuse what is not asm's, wait out a held fleet, win a claim.

An issue's run and a follow-up on a pull request share it; each claims its own key (an issue's
number, or its pull request's), so two deliveries never work one issue, nor one pull request.
"""

from __future__ import annotations

from collections.abc import Callable

from asm.deps import Deps
from asm.errors import AlreadyClaimed, ClaimLost
from asm.fleet.claim import Claim
from asm.fleet.hold import fleet_hold
from asm.fleet.queue import mark_delivered
from asm.keys import IssueRef
from asm.run.endings import DeliveryResult


def deliver(deps: Deps, ref: IssueRef, worker: str, work: Callable[[Claim], DeliveryResult]) -> DeliveryResult:
    """`work`, under the claim on `ref`; unless `ref` is not asm's, the fleet is held, or another delivery holds it."""
    mark_delivered(deps.redis, ref)
    if ref.repo.lower() not in {repo.lower() for repo in deps.settings.repos}:
        # Tasks come through Redis: a forged or stale one must not point asm at another repository.
        return DeliveryResult(f"{ref}: refused, {ref.repo} is not in ASM_REPOS", "refused")
    hold = fleet_hold(deps.redis)
    if hold is not None and hold.paused:
        return DeliveryResult(f"{ref}: not started, {hold.reason}", "paused")
    if hold is not None:
        return DeliveryResult(f"{ref}: not started, {hold.reason}", "deferred", requeue_after=hold.resting_seconds + 1)
    try:
        with Claim(deps.redis, ref, deps.settings.claim_ttl, worker) as claim:
            return work(claim)
    except AlreadyClaimed as busy:
        deps.metrics.count("asm_claim_conflicts_total")
        return DeliveryResult(f"{ref}: skipped, {busy}", "skipped")
    except ClaimLost as lost:
        return DeliveryResult(f"{ref}: stopped, {lost}; the new holder carries on", "claim-lost")
