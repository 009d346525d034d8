"""The agents' meter for one issue: the caps before every model call, the bill after it.

It ties together what the run owns: the ledger's reservations and charges, the run's own checks
(claim, deadline), the fleet's metrics, the progress people watch, and the news that the model
API answers again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from asm.config import Settings
from asm.keys import IssueRef
from asm.observe.metrics import Recorder
from asm.spend.cost import Usage
from asm.spend.ledger import Caps, Ledger


def issue_caps(settings: Settings, roles: int) -> Caps:
    """The caps one issue's calls are held to, across its attempts."""
    # Every role may use ASM_MAX_TURNS in every round; an issue never needs more than that.
    turns = settings.max_turns * roles * (settings.max_revisions + 1)
    return Caps(settings.max_cost_usd, settings.max_cost_per_repo_day_usd, settings.max_cost_per_day_usd, turns)


class IssueMeter:
    """Reserves before each call, charges after, and runs the run's checks; one per run."""

    def __init__(self, ledger: Ledger, metrics: Recorder, issue: IssueRef, worker: str, caps: Caps,
                 checks: Sequence[Callable[[], None]] = (),
                 on_charge: Sequence[Callable[[float], None]] = ()) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.issue = issue
        self.worker = worker
        self.caps = caps
        self.checks = checks
        self.on_charge = on_charge  # each is told the issue's new total, USD
        self.reservation = ""

    def check(self) -> None:
        for check in self.checks:
            check()

    def before_call(self, prompt_characters: int, max_output_tokens: int, model: str) -> None:
        self.check()
        worst = self.ledger.worst_case(prompt_characters, max_output_tokens, model)
        self.reservation = self.ledger.reserve(self.issue, worst, self.caps)

    def charge(self, usage: Usage, model: str) -> float:
        # The spend and the caps first, atomically in the ledger; the counters people graph after.
        total = self.ledger.charge(self.issue, self.worker, usage, model, self.reservation)
        self.reservation = ""
        cost = self.ledger.cost(usage, model)
        self.metrics.charged(self.issue.repo, cost, {
            "input": usage.input_tokens, "output": usage.output_tokens,
            "cache_write": usage.cache_write_tokens, "cache_read": usage.cache_read_tokens})
        for listener in self.on_charge:
            listener(total)
        return cost

    def call_failed(self) -> None:
        if self.reservation:
            self.ledger.release(self.reservation)
            self.reservation = ""
