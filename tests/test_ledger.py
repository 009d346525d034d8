"""The ledger's reservations and charges, on a real Redis (the Lua scripts run there)."""

from __future__ import annotations

import pytest
import redis

from asm.errors import AsmError, BudgetExceeded
from asm.keys import (
    METRICS,
    MODEL_OUTAGES,
    IssueRef,
    fleet_day_spend_key,
    repo_day_spend_key,
    reservations_key,
    utc_day,
)
from asm.spend.cost import PRICES, Usage
from asm.spend.ledger import RESERVATION_STALE_SECONDS, Caps, Ledger

ISSUE = IssueRef("acme/shop", 7)
OTHER = IssueRef("acme/shop", 8)
ROOMY = Caps(issue=1.0, repo_day=1.0, fleet_day=1.0, issue_turns=100)
CALL = Usage(input_tokens=1000, output_tokens=1000)  # $0.003 + $0.015 at $3 / $15
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def ledger(redis_client: redis.Redis) -> Ledger:
    return Ledger(redis_client, PRICES)


def test_a_charge_counts_everywhere_and_drops_its_reservation(ledger: Ledger, redis_client: redis.Redis) -> None:
    held = ledger.reserve(ISSUE, 0.5, ROOMY)
    assert redis_client.hlen(reservations_key(utc_day())) == 1
    total = ledger.charge(ISSUE, "w-1", CALL, MODEL, held)
    assert total == pytest.approx(0.018)
    assert ledger.spend(ISSUE).calls == 1 and ledger.repo_today("acme/shop") == pytest.approx(0.018)
    assert ledger.fleet_today() == pytest.approx(0.018)
    assert redis_client.hlen(reservations_key(utc_day())) == 0


def test_calls_in_flight_count_against_each_others_caps(ledger: Ledger) -> None:
    caps = Caps(issue=1.0, repo_day=0.5, fleet_day=1.0, issue_turns=100)
    first = ledger.reserve(ISSUE, 0.3, caps)
    with pytest.raises(BudgetExceeded, match="ASM_MAX_COST_PER_REPO_DAY_USD"):
        ledger.reserve(OTHER, 0.3, caps)  # 0.3 held + 0.3 asked > 0.5, though nothing is spent yet
    ledger.release(first)
    ledger.reserve(OTHER, 0.3, caps)


@pytest.mark.parametrize(("caps", "named"), [
    (Caps(issue=0.1, repo_day=1.0, fleet_day=1.0, issue_turns=100), "ASM_MAX_COST_USD"),
    (Caps(issue=1.0, repo_day=0.1, fleet_day=1.0, issue_turns=100), "ASM_MAX_COST_PER_REPO_DAY_USD"),
    (Caps(issue=1.0, repo_day=1.0, fleet_day=0.1, issue_turns=100), "ASM_MAX_COST_PER_DAY_USD"),
])
def test_each_cap_refuses_a_call_that_could_cross_it(ledger: Ledger, caps: Caps, named: str) -> None:
    ledger.charge(ISSUE, "w-1", CALL, MODEL)
    with pytest.raises(BudgetExceeded, match=named) as refused:
        ledger.reserve(ISSUE, 0.09, caps)
    assert refused.value.spent_usd == pytest.approx(0.018)


def test_the_turn_cap_counts_calls_across_attempts(ledger: Ledger) -> None:
    caps = Caps(issue=1.0, repo_day=1.0, fleet_day=1.0, issue_turns=2)
    for _ in range(2):
        ledger.charge(ISSUE, "w-1", CALL, MODEL, ledger.reserve(ISSUE, 0.01, caps))
    with pytest.raises(BudgetExceeded, match="model calls"):
        ledger.reserve(ISSUE, 0.01, caps)


def test_a_stale_reservation_of_a_dead_worker_stops_counting(ledger: Ledger, redis_client: redis.Redis) -> None:
    caps = Caps(issue=1.0, repo_day=0.5, fleet_day=1.0, issue_turns=100)
    import time

    old = time.time() - RESERVATION_STALE_SECONDS - 1
    redis_client.hset(reservations_key(utc_day()), "dead", f"0.4|acme/shop|acme/shop#9|{old}")
    ledger.reserve(ISSUE, 0.4, caps)  # fits: the dead worker's 0.4 no longer counts
    assert not redis_client.hexists(reservations_key(utc_day()), "dead")


def test_a_call_reserved_before_midnight_is_charged_to_that_day(ledger: Ledger, redis_client: redis.Redis) -> None:
    yesterday = "2020-01-01"
    redis_client.hset(reservations_key(yesterday), f"{yesterday}/abc", "0.5|acme/shop|acme/shop#7|0")
    ledger.charge(ISSUE, "w-1", CALL, MODEL, f"{yesterday}/abc")
    assert float(redis_client.get(repo_day_spend_key("acme/shop", yesterday))) == pytest.approx(0.018)
    assert float(redis_client.get(fleet_day_spend_key(yesterday))) == pytest.approx(0.018)
    assert ledger.fleet_today() == 0 and not redis_client.hlen(reservations_key(yesterday))


def test_the_worst_case_of_a_call_bounds_what_it_is_billed(ledger: Ledger) -> None:
    worst = ledger.worst_case(prompt_characters=40_000, max_output_tokens=8192, model=MODEL)
    billed = Usage(cache_write_tokens=40_000 // 3, output_tokens=8192).cost(PRICES[MODEL])
    assert worst >= billed


def test_each_call_is_reserved_and_charged_at_its_own_model_s_prices(ledger: Ledger) -> None:
    dear, cheap = "claude-opus-4-1", "claude-haiku-4-5"  # $15 / $75 and $1 / $5 per MTok
    assert ledger.worst_case(1000, 100, dear) == pytest.approx(15 * ledger.worst_case(1000, 100, cheap))
    ledger.charge(ISSUE, "w-1", CALL, dear)
    total = ledger.charge(ISSUE, "w-1", CALL, cheap)
    assert total == pytest.approx(0.015 + 0.075 + 0.001 + 0.005)
    cached = Usage(cache_write_tokens=1000, cache_read_tokens=10_000)
    ledger.charge(OTHER, "w-1", cached, dear)
    assert ledger.spend(OTHER).saved_usd == pytest.approx(cached.saved_by_cache(PRICES[dear]))
    assert ledger.spend(OTHER).usd == pytest.approx(cached.cost(PRICES[dear]))


def test_a_model_the_ledger_cannot_price_is_refused_before_the_call(redis_client: redis.Redis) -> None:
    with pytest.raises(AsmError, match="no price for the model 'claude-nope-1'"):
        Ledger(redis_client, {MODEL: PRICES[MODEL]}).worst_case(100, 100, "claude-nope-1")


def test_day_cap_reached_says_which_cap(ledger: Ledger) -> None:
    caps = Caps(issue=1.0, repo_day=0.02, fleet_day=1.0, issue_turns=100)
    ledger.charge(ISSUE, "w-1", CALL, MODEL)
    assert "ASM_MAX_COST_PER_REPO_DAY_USD (acme/shop, today)" in ledger.day_cap_reached("acme/shop", caps, 0.01)
    assert ledger.day_cap_reached("acme/other", caps, 0.01) is None


def test_a_charge_writes_spend_and_nothing_else(ledger: Ledger, redis_client: redis.Redis) -> None:
    """Counters people graph and the model's outage record belong to others (the metrics, the fleet's hold)."""
    redis_client.set(MODEL_OUTAGES, 2)
    ledger.charge(ISSUE, "w-1", CALL, MODEL)
    assert not redis_client.exists(METRICS)
    assert redis_client.get(MODEL_OUTAGES) == b"2"
