"""Spend, in Redis: per issue, per worker, per repository per UTC day and for the fleet per UTC day.

Every model call is charged the moment it is billed. Before a call, the meter asks whether one
more call like the largest so far could cross a cap; caps can therefore be overrun by at most
the one call that was already under way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import redis

from asm.config import Settings
from asm.cost import Price, Usage
from asm.errors import BudgetExceeded
from asm.keys import IssueRef, fleet_day_spend_key, repo_day_spend_key, utc_day, worker_key

DAY_KEYS_TTL = 3 * 24 * 3600
LEDGER_TTL = 30 * 24 * 3600


@dataclass(frozen=True)
class Spend:
    """What an issue has cost so far, across every attempt."""

    usage: Usage
    usd: float
    calls: int
    saved_usd: float
    largest_call_usd: float

    @property
    def summary(self) -> str:
        return f"{self.usage.total_tokens:,} tokens, ${self.usd:.4f}"


class Ledger:
    """Charges and reads spend; one instance per worker process."""

    def __init__(self, client: redis.Redis, price: Price) -> None:
        self.client = client
        self.price = price

    def charge(self, issue: IssueRef, worker: str, usage: Usage) -> float:
        """Record one call's usage everywhere it counts; returns its cost in USD."""
        usd = usage.cost(self.price)
        saved = usage.saved_by_cache(self.price)
        day = utc_day()
        pipe = self.client.pipeline(transaction=True)
        ledger = issue.ledger_key
        for field, value in asdict(usage).items():
            pipe.hincrby(ledger, field, value)
        pipe.hincrbyfloat(ledger, "usd", usd)
        pipe.hincrbyfloat(ledger, "saved_usd", saved)
        pipe.hincrby(ledger, "calls", 1)
        pipe.expire(ledger, LEDGER_TTL)
        pipe.hincrbyfloat(worker_key(worker), "cost_usd", usd)
        for key in (repo_day_spend_key(issue.repo, day), fleet_day_spend_key(day)):
            pipe.incrbyfloat(key, usd)
            pipe.expire(key, DAY_KEYS_TTL)
        pipe.execute()
        # The largest call is the best guess of what the next one costs (contexts only grow).
        self.client.eval(
            "local c = tonumber(redis.call('HGET', KEYS[1], 'largest_call_usd') or '0') "
            "if tonumber(ARGV[1]) > c then redis.call('HSET', KEYS[1], 'largest_call_usd', ARGV[1]) end",
            1, ledger, repr(usd),
        )
        return usd

    def spend(self, issue: IssueRef) -> Spend:
        raw = {k.decode(): v.decode() for k, v in self.client.hgetall(issue.ledger_key).items()}
        usage = Usage(*(int(raw.get(name, 0)) for name in Usage.__dataclass_fields__))
        return Spend(usage, float(raw.get("usd", 0)), int(raw.get("calls", 0)),
                     float(raw.get("saved_usd", 0)), float(raw.get("largest_call_usd", 0)))

    def repo_today(self, repo: str) -> float:
        return float(self.client.get(repo_day_spend_key(repo, utc_day())) or 0)

    def fleet_today(self) -> float:
        return float(self.client.get(fleet_day_spend_key(utc_day())) or 0)


@dataclass(frozen=True)
class Caps:
    """The spend caps, USD."""

    issue: float
    repo_day: float
    fleet_day: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Caps:
        return cls(settings.max_cost_usd, settings.max_cost_per_repo_day_usd, settings.max_cost_per_day_usd)


class IssueMeter:
    """The agent's meter for one issue: refuses a call that could cross a cap, charges every call."""

    def __init__(self, ledger: Ledger, issue: IssueRef, worker: str, caps: Caps,
                 checks: Sequence[Callable[[], None]] = (),
                 on_charge: Callable[[float], None] | None = None) -> None:
        self.ledger = ledger
        self.issue = issue
        self.worker = worker
        self.caps = caps
        self.checks = checks
        self.on_charge = on_charge
        self.calls = 0
        self.started = time.monotonic()

    def before_call(self) -> None:
        for check in self.checks:
            check()
        spend = self.ledger.spend(self.issue)
        next_call = spend.largest_call_usd
        for name, spent, cap in (
            ("ASM_MAX_COST_USD (per issue)", spend.usd, self.caps.issue),
            (f"ASM_MAX_COST_PER_REPO_DAY_USD ({self.issue.repo} today)", self.ledger.repo_today(self.issue.repo),
             self.caps.repo_day),
            ("ASM_MAX_COST_PER_DAY_USD (whole fleet today)", self.ledger.fleet_today(), self.caps.fleet_day),
        ):
            if spent + next_call > cap:
                raise BudgetExceeded(
                    f"stopped before the next model call: ${spent:.4f} spent, and one more call "
                    f"(about ${next_call:.4f}) could cross the cap {name} of ${cap:.2f}",
                    cap_name=name, spent_usd=spent, cap_usd=cap,
                )

    def charge(self, usage: Usage) -> None:
        self.calls += 1
        usd = self.ledger.charge(self.issue, self.worker, usage)
        if self.on_charge is not None:
            self.on_charge(usd)

