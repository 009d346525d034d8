"""`asm bench`'s label-to-claim figure, through the webhook: a label put on an issue in the sandbox GitHub, its
delivery posted (signed, as GitHub posts it) by the sandbox's hook to a real `asm webhook` process, the run queued,
and the clock stops when a worker of the real fleet holds the issue's claim in Redis.

Each label waits until the fleet is idle (the run before it settled), so what is timed is the path from a
label to a free worker's claim, not a queue behind busy workers. The scripted model answers at once meanwhile:
the runs' length does not change the figure, only how long the bench takes.
"""

from __future__ import annotations

import math
import secrets
import signal
import statistics
import time
from dataclasses import dataclass
from functools import partial

from asm.keys import IssueRef
from asm.sandbox.fleet import Fleet, Sandbox, start_fleet, wait_for
from asm.sandbox.sample_repo import SOLUTIONS

REPO = "acme/bench-webhook"
WORKERS = 2
WORKER_START_TIMEOUT = 60.0
CLAIM_TIMEOUT = 60.0  # a label not claimed by then counts as missed
SETTLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class ClaimLatency:
    """Seconds from a label to the claim of its run, over `labels` labels; how long `asm webhook` took to answer."""

    labels: int
    claimed: int
    p50_s: float
    p95_s: float
    max_s: float
    answer_p50_ms: float
    answer_p95_ms: float


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value at least `share` of them are at or under."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else float("nan")


def measure_claim_latency(box: Sandbox, labels: int) -> ClaimLatency:
    """Label `labels` issues one after another on the sandbox, with a fleet and a webhook server of their own;
    the figure."""
    assert box.model is not None
    box.create_repo(REPO)
    numbers = [box.add_issue(REPO, s.title, s.body, labels=())
               for s in (SOLUTIONS[i % len(SOLUTIONS)] for i in range(labels))]
    secret = secrets.token_urlsafe(24)
    webhook, url = box.start_webhook(secret, name="benchhook-webhook")
    fleet = start_fleet(box, WORKERS, "benchhook", WORKER_START_TIMEOUT)
    hooks = box.webhooks()
    hook = hooks.add(url + "/webhook", secret)
    latency, box.model.latency = box.model.latency, 0.0
    seconds: list[float] = []
    try:
        for index, number in enumerate(numbers):
            if index and not wait_for(partial(box.settled, REPO, [numbers[index - 1]]), SETTLE_TIMEOUT, interval=0.05):
                raise RuntimeError(f"{REPO}#{numbers[index - 1]} did not settle; worker log:\n"
                                   f"{fleet.worker.log()[-3000:]}")
            took = label_and_time(box, fleet, number)
            if took is not None:
                seconds.append(took)
        hooks.wait_idle()
    finally:
        box.model.latency = latency
        hooks.remove(hook)
        fleet.worker.stop(signal.SIGTERM)
        webhook.stop(signal.SIGTERM)
    answers = [d.seconds * 1000 for d in hooks.deliveries if d.hook_id == hook.id and d.event == "issues"
               and d.action == "labeled" and d.answer.startswith("queued")]
    return ClaimLatency(
        labels=labels, claimed=len(seconds), p50_s=round(statistics.median(seconds), 3) if seconds else math.nan,
        p95_s=round(percentile(seconds, 0.95), 3), max_s=round(max(seconds, default=math.nan), 3),
        answer_p50_ms=round(statistics.median(answers), 1) if answers else math.nan,
        answer_p95_ms=round(percentile(answers, 0.95), 1),
    )


def label_and_time(box: Sandbox, fleet: Fleet, number: int) -> float | None:
    """Label the issue ready; seconds until its claim appears in Redis, None if it never does."""
    assert box.github is not None
    claim = IssueRef(REPO, number).claim_key
    started = time.monotonic()
    box.github.add_labels(REPO, number, [fleet.settings.ready_label])
    if wait_for(lambda: bool(fleet.redis.exists(claim)), CLAIM_TIMEOUT, interval=0.002):
        return time.monotonic() - started
    return None


def render_latency(figure: ClaimLatency) -> str:
    return "\n".join([
        f"Label to claim, through `asm webhook` ({figure.claimed} of {figure.labels} labels claimed; goal: p95 < 2 s)",
        "",
        "| p50 | p95 | max | webhook answer p50 | webhook answer p95 |",
        "|-----|-----|-----|--------------------|--------------------|",
        f"| {figure.p50_s:.3f}s | {figure.p95_s:.3f}s | {figure.max_s:.3f}s | {figure.answer_p50_ms:>15.1f} ms "
        f"| {figure.answer_p95_ms:>15.1f} ms |",
        "",
        "From the label in the sandbox GitHub to its issue's claim key in Redis: the sandbox's hook posts the signed",
        "delivery, `asm webhook` queues the run, a free worker of the fleet claims it. Webhook answer = the time",
        "GitHub waits on `asm webhook` for one delivery (its limit is 10 s).",
    ])
