"""The claim lease on a real Redis: NX, own-token release, renewal, loss and re-taking."""

from __future__ import annotations

import time

import pytest
import redis

from asm.errors import AlreadyClaimed, ClaimLost
from asm.fleet.claim import Claim
from asm.keys import IssueRef

ISSUE = IssueRef("acme/shop", 7)


def claim(client: redis.Redis, holder: str = "worker-1", ttl: float = 120) -> Claim:
    return Claim(client, ISSUE, ttl=ttl, holder=holder)


def test_acquire_sets_the_key_with_a_token_and_a_ttl(redis_client: redis.Redis) -> None:
    mine = claim(redis_client)

    assert mine.acquire()

    assert redis_client.get("asm:claim:acme/shop#7") == mine.token.encode()
    assert mine.token.startswith("worker-1:")
    assert 0 < redis_client.pttl(ISSUE.claim_key) <= 120_000
    assert mine.holder() == mine.token


def test_tokens_are_unique_per_claim(redis_client: redis.Redis) -> None:
    assert claim(redis_client).token != claim(redis_client).token


def test_a_second_claim_on_the_same_issue_fails(redis_client: redis.Redis) -> None:
    first, second = claim(redis_client, "worker-1"), claim(redis_client, "worker-2")

    assert first.acquire()
    assert not second.acquire()
    assert first.holder() == first.token


def test_with_raises_already_claimed_naming_the_holder(redis_client: redis.Redis) -> None:
    with claim(redis_client, "worker-1") as first:
        with pytest.raises(AlreadyClaimed, match="worker-1"):
            with claim(redis_client, "worker-2"):
                pytest.fail("the second claim must not be entered")

        assert redis_client.get(ISSUE.claim_key) == first.token.encode()


def test_claims_on_different_issues_do_not_interfere(redis_client: redis.Redis) -> None:
    assert claim(redis_client).acquire()
    assert Claim(redis_client, IssueRef("acme/shop", 8), 120, "worker-2").acquire()
    assert Claim(redis_client, IssueRef("acme/web", 7), 120, "worker-3").acquire()


def test_with_releases_on_exit(redis_client: redis.Redis) -> None:
    with claim(redis_client):
        assert redis_client.exists(ISSUE.claim_key)

    assert not redis_client.exists(ISSUE.claim_key)


def test_with_releases_when_the_body_raises(redis_client: redis.Redis) -> None:
    with pytest.raises(RuntimeError):
        with claim(redis_client):
            raise RuntimeError("workflow broke")

    assert not redis_client.exists(ISSUE.claim_key)
    assert claim(redis_client, "worker-2").acquire()


def test_release_only_with_its_own_token(redis_client: redis.Redis) -> None:
    mine, theirs = claim(redis_client, "worker-1"), claim(redis_client, "worker-2")
    assert mine.acquire()

    assert not theirs.release()
    assert redis_client.get(ISSUE.claim_key) == mine.token.encode()

    assert mine.release()
    assert not redis_client.exists(ISSUE.claim_key)
    assert not mine.release()  # a second release finds nothing of ours


def test_renew_extends_the_ttl(redis_client: redis.Redis) -> None:
    mine = claim(redis_client, ttl=60)
    assert mine.acquire()
    redis_client.pexpire(ISSUE.claim_key, 2_000)
    before = redis_client.pttl(ISSUE.claim_key)

    assert mine.renew()

    after = redis_client.pttl(ISSUE.claim_key)
    assert before <= 2_000 < after <= 60_000


def test_renew_fails_when_another_token_holds_the_key(redis_client: redis.Redis) -> None:
    mine = claim(redis_client)
    assert mine.acquire()
    redis_client.set(ISSUE.claim_key, "worker-2:other", px=50_000)

    assert not mine.renew()
    assert redis_client.get(ISSUE.claim_key) == b"worker-2:other"
    assert redis_client.pttl(ISSUE.claim_key) <= 50_000


def test_renew_takes_back_a_key_that_vanished(redis_client: redis.Redis) -> None:
    mine = claim(redis_client, ttl=60)
    assert mine.acquire()
    redis_client.flushall()  # Redis restarted without persistence

    assert mine.renew()

    assert redis_client.get(ISSUE.claim_key) == mine.token.encode()
    assert 0 < redis_client.pttl(ISSUE.claim_key) <= 60_000


def test_the_renewal_thread_keeps_a_short_claim_alive_past_its_ttl(redis_client: redis.Redis) -> None:
    with claim(redis_client, ttl=3) as mine:
        time.sleep(4.5)

        assert redis_client.get(ISSUE.claim_key) == mine.token.encode()
        assert not mine.lost.is_set()
        mine.check()  # no error

    assert not redis_client.exists(ISSUE.claim_key)


def test_a_claim_without_renewal_expires(redis_client: redis.Redis) -> None:
    mine = claim(redis_client, ttl=3)
    assert mine.acquire()
    redis_client.pexpire(ISSUE.claim_key, 50)
    time.sleep(0.2)

    assert claim(redis_client, "worker-2").acquire()


def test_a_claim_taken_over_is_lost_and_check_raises(redis_client: redis.Redis) -> None:
    with claim(redis_client, ttl=3) as mine:
        redis_client.set(ISSUE.claim_key, "worker-2:thief", px=60_000)

        assert mine.lost.wait(timeout=5)
        with pytest.raises(ClaimLost, match="acme/shop#7"):
            mine.check()

    # leaving does not delete the other worker's claim
    assert redis_client.get(ISSUE.claim_key) == b"worker-2:thief"


def test_a_key_deleted_while_held_is_retaken_by_the_renewal_thread(redis_client: redis.Redis) -> None:
    with claim(redis_client, ttl=3) as mine:
        redis_client.delete(ISSUE.claim_key)
        deadline = time.monotonic() + 5
        while not redis_client.exists(ISSUE.claim_key) and time.monotonic() < deadline:
            time.sleep(0.05)

        assert redis_client.get(ISSUE.claim_key) == mine.token.encode()
        assert not mine.lost.is_set()


def test_a_ttl_below_three_seconds_is_raised_to_three(redis_client: redis.Redis) -> None:
    assert claim(redis_client, ttl=0.5).ttl_ms == 3_000
