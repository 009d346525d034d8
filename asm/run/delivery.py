"""What every delivery of a task does before its work: refuse what is not asm's, wait out a held fleet, wait
for its repository's turn (ASM_MAX_RUNNING_PER_REPO), win a claim.

An issue's run and a follow-up on a pull request share it; each claims its own key (an issue's
number, or its pull request's), so two deliveries never work one issue, nor one pull request.
"""

from __future__ import annotations

from collections.abc import Callable

from asm.deps import Deps
from asm.errors import AlreadyClaimed, ClaimLost
from asm.fleet.claim import Claim
from asm.fleet.fair import admit, leave, wait_again
from asm.fleet.hold import fleet_hold
from asm.fleet.queue import PROCESS_ISSUE, mark_delivered
from asm.keys import IssueRef
from asm.run.endings import DeliveryResult


def deliver(deps: Deps, ref: IssueRef, worker: str, work: Callable[[Claim], DeliveryResult],
            task: str = PROCESS_ISSUE) -> DeliveryResult:
    """`work`, under the claim on `ref`; unless `ref` is not asm's, the fleet is held, its repository has its most
    runs going (`ref` then waits again, for `task`), or another delivery holds it."""
    queued = mark_delivered(deps.redis, ref)
    refused = deps.github.refuses(ref.repo, deps.settings.repos)
    if refused:
        # Tasks come through Redis: a forged or stale one must not point asm at another repository.
        leave(deps.redis, ref)  # let in, but not run: it holds no place under the repository's limit
        return DeliveryResult(f"{ref}: refused, {ref.repo} {refused}", "refused")
    hold = fleet_hold(deps.redis)
    if hold is not None:
        leave(deps.redis, ref)
    if hold is not None and hold.paused:
        return DeliveryResult(f"{ref}: not started, {hold.reason}", "paused")
    if hold is not None:
        return DeliveryResult(f"{ref}: not started, {hold.reason}", "deferred", requeue_after=hold.resting_seconds + 1)
    if not admit(deps.redis, ref):
        wait_again(deps.redis, ref, task, queued)
        return DeliveryResult(f"{ref}: waits, {ref.repo} has its most runs going (ASM_MAX_RUNNING_PER_REPO)",
                              "waiting")
    try:
        with Claim(deps.redis, ref, deps.settings.claim_ttl, worker) as claim:
            try:
                return work(claim)
            finally:
                leave(deps.redis, ref)
    except AlreadyClaimed as busy:
        deps.metrics.count("asm_claim_conflicts_total")
        return DeliveryResult(f"{ref}: skipped, {busy}", "skipped")
    except ClaimLost as lost:
        return DeliveryResult(f"{ref}: stopped, {lost}; the new holder carries on", "claim-lost")
