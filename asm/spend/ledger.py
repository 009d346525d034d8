"""Spend, in Redis: per issue, per worker, per repository per UTC day and for the fleet per UTC day.

Before every model call the run's meter reserves the most that call can cost (its prompt at the
priciest input rate of the call's model plus `max_tokens` of output), atomically against every cap and every other
call in flight across the fleet; the call is made only if all caps still hold. When the reply
comes, its real cost at its model's prices is charged (before the reply is even parsed) and the reservation dropped.
So a cap is never crossed by more than the estimate's error on one call, however many workers
share it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from asm.errors import AsmError, BudgetExceeded
from asm.keys import (
    IssueRef,
    fleet_day_spend_key,
    repo_day_spend_key,
    reservations_key,
    utc_day,
    worker_key,
)
from asm.spend.cost import Price, Usage, money

DAY_KEYS_TTL = 3 * 24 * 3600
LEDGER_TTL = 30 * 24 * 3600
# A reservation older than this belongs to a call whose worker died; it no longer counts. One call,
# retries and backoffs included, stays well inside it.
RESERVATION_STALE_SECONDS = 3600
# Code runs about 3.5 characters a token, and newer tokenizers count more tokens for the same text;
# 2 over-counts on purpose, since this bounds a cap.
CHARACTERS_PER_TOKEN = 2

# One call's usage, everywhere it counts, in one step: the issue's ledger, the worker's total and
# the day's totals, which the caps read; its reservation goes in the same step, so spend held and
# spend charged never count twice or not at all.
_CHARGE = """
local ledger, worker, repo_day, fleet_day, reservations = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
redis.call('HINCRBY', ledger, 'input_tokens', ARGV[1])
redis.call('HINCRBY', ledger, 'output_tokens', ARGV[2])
redis.call('HINCRBY', ledger, 'cache_write_tokens', ARGV[3])
redis.call('HINCRBY', ledger, 'cache_read_tokens', ARGV[4])
local total = redis.call('HINCRBYFLOAT', ledger, 'usd', ARGV[5])
redis.call('HINCRBYFLOAT', ledger, 'saved_usd', ARGV[6])
redis.call('HINCRBY', ledger, 'calls', 1)
redis.call('EXPIRE', ledger, ARGV[7])
redis.call('HINCRBYFLOAT', worker, 'cost_usd', ARGV[5])
redis.call('INCRBYFLOAT', repo_day, ARGV[5])
redis.call('EXPIRE', repo_day, ARGV[8])
redis.call('INCRBYFLOAT', fleet_day, ARGV[5])
redis.call('EXPIRE', fleet_day, ARGV[8])
if ARGV[9] ~= '' then redis.call('HDEL', reservations, ARGV[9]) end
return total
"""

# Reserve ARGV[1] USD for one call of issue ARGV[2] in repo ARGV[3] if every cap holds with it and
# with every live reservation. Reservation values are "usd|repo|issue|unix time".
_RESERVE = """
local ledger, repo_day, fleet_day, reservations = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local amount, issue, repo = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local now, stale = tonumber(ARGV[4]), tonumber(ARGV[5])
local held_issue, held_repo, held_fleet = 0, 0, 0
local entries = redis.call('HGETALL', reservations)
for i = 1, #entries, 2 do
  local usd, r_repo, r_issue, at = string.match(entries[i + 1], '^([^|]+)|([^|]*)|([^|]*)|([^|]+)$')
  if at == nil or now - tonumber(at) > stale then
    redis.call('HDEL', reservations, entries[i])
  else
    usd = tonumber(usd)
    held_fleet = held_fleet + usd
    if r_repo == repo then held_repo = held_repo + usd end
    if r_issue == issue then held_issue = held_issue + usd end
  end
end
local spent_issue = tonumber(redis.call('HGET', ledger, 'usd') or '0')
local calls = tonumber(redis.call('HGET', ledger, 'calls') or '0')
local spent_repo = tonumber(redis.call('GET', repo_day) or '0')
local spent_fleet = tonumber(redis.call('GET', fleet_day) or '0')
if calls >= tonumber(ARGV[10]) then return {'turns', tostring(calls), ARGV[10]} end
if spent_issue + held_issue + amount > tonumber(ARGV[7]) then
  return {'issue', tostring(spent_issue + held_issue), ARGV[7]} end
if spent_repo + held_repo + amount > tonumber(ARGV[8]) then
  return {'repo', tostring(spent_repo + held_repo), ARGV[8]} end
if spent_fleet + held_fleet + amount > tonumber(ARGV[9]) then
  return {'fleet', tostring(spent_fleet + held_fleet), ARGV[9]} end
redis.call('HSET', reservations, ARGV[6], ARGV[1] .. '|' .. repo .. '|' .. issue .. '|' .. ARGV[4])
redis.call('EXPIRE', reservations, 86400)
return {'ok', tostring(spent_issue), ''}
"""


@dataclass(frozen=True)
class Spend:
    """What an issue has cost so far, across every attempt."""

    usage: Usage
    usd: float
    calls: int
    saved_usd: float


@dataclass(frozen=True)
class Caps:
    """The spend caps (USD) and the most model calls one issue may make, across its attempts."""

    issue: float
    repo_day: float
    fleet_day: float
    issue_turns: int


CAP_NAMES = {
    "issue": "ASM_MAX_COST_USD (this issue)",
    "repo": "ASM_MAX_COST_PER_REPO_DAY_USD ({repo}, today)",
    "fleet": "ASM_MAX_COST_PER_DAY_USD (the whole fleet, today)",
}


class Ledger:
    """Reserves, charges and reads spend, each call at its model's prices; one instance per worker process."""

    def __init__(self, client: redis.Redis[bytes], prices: Mapping[str, Price]) -> None:
        self.client = client
        self.prices = prices  # every model the process calls (Settings.model_prices)
        self._charge = client.register_script(_CHARGE)
        self._reserve = client.register_script(_RESERVE)

    def price(self, model: str) -> Price:
        """What `model` costs; settings price every model in use before any call is made."""
        try:
            return self.prices[model]
        except KeyError:
            raise AsmError(f"no price for the model {model!r}: the ledger prices only {', '.join(self.prices)}") \
                from None

    def worst_case(self, prompt_characters: int, max_output_tokens: int, model: str) -> float:
        """The most one call to `model` can cost: every prompt token at its dearest input rate, full output."""
        price = self.price(model)
        prompt_tokens = prompt_characters // CHARACTERS_PER_TOKEN + 1
        dearest_input = max(price.input, price.cache_write, price.cache_read)
        return (prompt_tokens * dearest_input + max_output_tokens * price.output) / 1_000_000

    def reserve(self, issue: IssueRef, amount: float, caps: Caps) -> str:
        """Hold `amount` for one call; BudgetExceeded (naming the cap) when any cap would not hold."""
        day = utc_day()
        token = f"{day}/{secrets.token_hex(8)}"  # the day it counts against, whenever it is settled
        verdict, spent, cap = (part.decode() if isinstance(part, bytes) else part for part in self._reserve(
            keys=[issue.ledger_key, repo_day_spend_key(issue.repo, day), fleet_day_spend_key(day),
                  reservations_key(day)],
            args=[repr(amount), issue.key, issue.repo, time.time(), RESERVATION_STALE_SECONDS, token,
                  caps.issue, caps.repo_day, caps.fleet_day, caps.issue_turns],
        ))
        if verdict == "ok":
            return token
        if verdict == "turns":
            raise BudgetExceeded(f"stopped before the next model call: this issue used {spent} model calls, "
                                 f"the most one issue may use (ASM_MAX_TURNS for every role and round)",
                                 cap_name="turns", spent_usd=self.spend(issue).usd, cap_usd=float(cap))
        name = CAP_NAMES[verdict].format(repo=issue.repo)
        raise BudgetExceeded(
            f"stopped before the next model call: {money(float(spent))} spent (or held by calls in flight), and the "
            f"next call could cost up to {money(amount)}, which could cross {name} of {money(float(cap))}",
            cap_name=name, spent_usd=float(spent), cap_usd=float(cap),
        )

    def release(self, reservation: str) -> None:
        """Drop a reservation whose call was never billed (it failed)."""
        self.client.hdel(reservations_key(reservation.split("/", 1)[0]), reservation)

    def cost(self, usage: Usage, model: str) -> float:
        """What one call's usage costs at `model`'s prices, USD."""
        return usage.cost(self.price(model))

    def charge(self, issue: IssueRef, worker: str, usage: Usage, model: str, reservation: str = "") -> float:
        """Record one call's usage at its model's prices everywhere it counts, drop its reservation; the
        issue's new total USD."""
        # Charged to the day the call was reserved on: that day's caps made room for it, even when
        # the reply arrives after midnight.
        day = reservation.split("/", 1)[0] if reservation else utc_day()
        total = self._charge(
            keys=[issue.ledger_key, worker_key(worker), repo_day_spend_key(issue.repo, day),
                  fleet_day_spend_key(day), reservations_key(day)],
            args=[usage.input_tokens, usage.output_tokens, usage.cache_write_tokens, usage.cache_read_tokens,
                  repr(self.cost(usage, model)), repr(usage.saved_by_cache(self.price(model))), LEDGER_TTL,
                  DAY_KEYS_TTL, reservation],
        )
        return float(total)

    def spend(self, issue: IssueRef) -> Spend:
        raw = {k.decode(): v.decode() for k, v in self.client.hgetall(issue.ledger_key).items()}
        usage = Usage(*(int(raw.get(name, 0)) for name in Usage.__dataclass_fields__))
        return Spend(usage, float(raw.get("usd", 0)), int(raw.get("calls", 0)), float(raw.get("saved_usd", 0)))

    def day_cap_reached(self, repo: str, caps: Caps, next_call_usd: float) -> str | None:
        """Which daily cap leaves no room for even one more call today, if one does."""
        for spent, cap, name in ((self.repo_today(repo), caps.repo_day, CAP_NAMES["repo"].format(repo=repo)),
                                 (self.fleet_today(), caps.fleet_day, CAP_NAMES["fleet"])):
            if spent + next_call_usd > cap:
                return f"{name} of {money(cap)} is reached ({money(spent)} spent today)"
        return None

    def repo_today(self, repo: str) -> float:
        return float(self.client.get(repo_day_spend_key(repo, utc_day())) or 0)

    def fleet_today(self) -> float:
        return float(self.client.get(fleet_day_spend_key(utc_day())) or 0)

