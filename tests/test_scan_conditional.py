"""Conditional scans against the sandbox GitHub and a real Redis: an unchanged repository costs 304s, which the
rate limit does not count; whatever changed (a label, an answer, a check finishing) is still found; the scan
slows down before the rate limit, never after; `asm status` shows the budget."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import redis

from asm.config import Settings
from asm.conversation.markers import mark
from asm.deps import github_gateway
from asm.fleet import probe
from asm.fleet.pace import Pace
from asm.fleet.scan import FollowRules, ScanResult, scan
from asm.github import COMMENT_PREFIX, NEEDS_CLARIFICATION, GitHub
from asm.keys import SCAN_NEXT, scan_memory_key
from asm.observe.fleet_state import read_fleet_state
from asm.observe.prometheus import fleet_gauges
from asm.ratelimit import RESERVE_FRACTION, RateLimit, from_headers, read_limits
from asm.sandbox.fleet import Sandbox
from asm.sandbox.github_state import BOT_LOGIN, HUMAN_LOGIN

REPOS = ("acme/one", "acme/two", "acme/three")


@pytest.fixture
def github(settings: Settings) -> GitHub:
    return github_gateway(settings)


def run_scan(github: GitHub, client: redis.Redis, repos: tuple[str, ...] = REPOS, interval: float = 60) -> ScanResult:
    from asm.celery_app import app

    return scan(github, client, app, repos, "ready-for-dev", 600, FollowRules(), interval)


def seed(sandbox: Sandbox, repos: tuple[str, ...] = REPOS) -> None:
    for repo in repos:
        sandbox.create_repo(repo)
        sandbox.add_issue(repo, f"ready in {repo}")


def counted(sandbox: Sandbox) -> tuple[int, int, int]:
    """(requests served, of which counted against the rate limit, answered 304) since the last reset."""
    assert sandbox.github is not None
    state = sandbox.github
    return state.request_count, state.limits.counted, len(state.limits.not_modified)


def reset(sandbox: Sandbox) -> None:
    assert sandbox.github is not None
    sandbox.github.reset_requests()
    sandbox.github.limits.reset_tally()


def test_an_unchanged_repository_costs_one_conditional_request_answered_304(
        sandbox: Sandbox, github: GitHub, redis_client: redis.Redis) -> None:
    seed(sandbox)
    first = run_scan(github, redis_client)
    assert sorted(item.issue.repo for item in first.found if item.task_id) == sorted(REPOS)
    assert first.unchanged == []
    reset(sandbox)
    before = sandbox.github.limits.peek(BOT_LOGIN, "core")
    again = run_scan(github, redis_client)
    # One request a repository, each sent with the ETag of the last read and answered 304: nothing counted.
    assert counted(sandbox) == (3, 0, 3), sandbox.github.requests
    assert all("sort=updated" in path for _, path in sandbox.github.requests)
    assert sandbox.github.limits.peek(BOT_LOGIN, "core").remaining == before.remaining
    assert sorted(again.unchanged) == sorted(REPOS)
    # What the last read found is what it finds: each ready issue, already queued.
    assert sorted((item.issue.repo, item.why, item.task_id) for item in again.found) == \
        sorted((repo, "ready", None) for repo in REPOS)


def test_a_label_or_an_answer_makes_its_repository_read_whole_and_the_others_stay_304(
        sandbox: Sandbox, github: GitHub, redis_client: redis.Redis) -> None:
    seed(sandbox)
    plain = sandbox.add_issue("acme/two", "not ready yet", labels=())
    waiting = sandbox.add_issue("acme/three", "what should it do?", labels=(NEEDS_CLARIFICATION,))
    sandbox.github.add_comment("acme/three", waiting, f"{COMMENT_PREFIX} a question\n\n{mark(questions=True)}",
                               author=BOT_LOGIN)
    run_scan(github, redis_client)
    assert run_scan(github, redis_client).unchanged == list(REPOS)

    sandbox.github.add_labels("acme/two", plain, ["ready-for-dev"])
    sandbox.github.add_comment("acme/three", waiting, "It should slugify titles.", author=HUMAN_LOGIN)
    reset(sandbox)
    result = run_scan(github, redis_client)
    assert [(item.issue.repo, item.issue.number, item.why) for item in result.found if item.task_id] == \
        [("acme/two", plain, "ready"), ("acme/three", waiting, "answered")]
    assert result.unchanged == ["acme/one"]
    requests, _, free = counted(sandbox)
    # acme/one: its 304; each changed one: its question, its two lists, one GraphQL glance (and the answered
    # issue's comments, read whole; the permission of its author, once).
    assert free == 1 and requests == 1 + 2 * 4 + 2, sandbox.github.requests
    # Read whole, they are remembered again: the next scan is 304s only.
    reset(sandbox)
    assert run_scan(github, redis_client).unchanged == list(REPOS)
    assert counted(sandbox) == (3, 0, 3)


def test_a_check_finishing_on_asms_pull_request_is_found_though_it_updates_no_issue(
        sandbox: Sandbox, settings: Settings, github: GitHub, redis_client: redis.Redis, work_issue) -> None:
    repo = "acme/checks"
    sandbox.create_repo(repo)
    number = sandbox.add_issue(repo, "Add `slugify` for URL slugs")
    work_issue(repo, number, ASM_REPOS=repo)
    [pull] = sandbox.github.pulls(repo)
    head = sandbox.github.branch_sha(repo, pull.head)
    running = sandbox.github.create_check_run(repo, head, "tests", status="in_progress")
    sandbox.github.create_status(repo, head, "ci/lint", "success", "clean")
    # The first scan reads it whole; the second learns the ETags of the head's checks (a head first seen in a
    # read has none) and reads it whole again; from then on, 304s.
    for _ in range(2):
        assert [item for item in run_scan(github, redis_client, (repo,)).found if item.task_id] == []
    reset(sandbox)
    assert run_scan(github, redis_client, (repo,)).unchanged == [repo]
    assert counted(sandbox) == (3, 0, 3), "the issues, the head's check runs and its status: 304 each"

    sandbox.github.update_check_run(repo, running, status="completed", conclusion="failure")
    reset(sandbox)
    result = run_scan(github, redis_client, (repo,))
    assert [(item.issue.number, item.why) for item in result.found if item.task_id] == [(pull.number, "checks fix")]
    free = [path.partition("?")[0] for path in sandbox.github.limits.not_modified]
    assert probe.issues_path(repo) in free, "no issue or pull request was updated: its question was a 304"
    assert f"/repos/{repo}/commits/{head}/check-runs" not in free, "the check runs' answer changed"

    # A commit status turning red is seen the same way (the combined status's ETag changes).
    reset(sandbox)
    run_scan(github, redis_client, (repo,))
    sandbox.github.create_status(repo, head, "ci/lint", "failure", "E501")
    reset(sandbox)
    assert run_scan(github, redis_client, (repo,)).unchanged == []
    assert counted(sandbox)[2] >= 2, "the issues and the check runs still 304"


def test_the_scan_stops_at_its_share_of_the_rate_limit_and_the_next_one_starts_where_it_stopped(
        sandbox: Sandbox, github: GitHub, redis_client: redis.Redis) -> None:
    repos = tuple(f"acme/paced-{n}" for n in range(5))
    seed(sandbox, repos)
    limits = sandbox.github.limits
    limits.configure(100)
    limits.set_used(BOT_LOGIN, 60)  # 40 left, 10 kept for the runs; an hour to the reset
    first = run_scan(github, redis_client, repos)
    # Its share until the next scan is (40 - 10) x a twentieth (more than 60 s / 3600 s of it): 1.5 requests; the
    # first repository read whole spends it.
    assert [item.issue.repo for item in first.found] == [repos[0]]
    assert first.skipped == list(repos[1:]) and "core rate limit" in first.paced
    assert redis_client.get(SCAN_NEXT) == repos[1].encode()
    left = limits.peek(BOT_LOGIN, "core").remaining
    assert left > 100 * RESERVE_FRACTION, "it stopped before the reserve, far from the limit"
    reset(sandbox)
    second = run_scan(github, redis_client, repos)
    assert sandbox.github.requests[0][1].startswith(f"/repos/{repos[1]}/issues"), "it starts where the last stopped"
    assert [item.issue.repo for item in second.found if item.task_id] == [repos[1]]
    assert second.unchanged == [repos[0]], "an unchanged repository still costs its free 304, share or not"
    assert second.skipped == list(repos[2:])

    # Down to the reserve: nothing more is sent at all, whatever the share.
    limits.set_used(BOT_LOGIN, 91)
    third = run_scan(github, redis_client, repos)  # its first answer tells 9 left: it reads nothing
    assert [item.issue.repo for item in third.found] == [] and "kept for the runs" in third.paced
    reset(sandbox)
    stopped = run_scan(github, redis_client, repos)
    assert counted(sandbox) == (0, 0, 0) and stopped.found == [] and "kept for the runs" in stopped.paced
    assert stopped.skipped == list(repos[2:]) + list(repos[:2])
    assert limits.peek(BOT_LOGIN, "core").remaining > 0, "never a 403"


def test_unchanged_repositories_cost_no_share_of_a_nearly_spent_budget(
        sandbox: Sandbox, github: GitHub, redis_client: redis.Redis) -> None:
    repos = tuple(f"acme/calm-{n}" for n in range(6))
    seed(sandbox, repos)
    run_scan(github, redis_client, repos)
    sandbox.github.limits.set_used(BOT_LOGIN, 4000)  # 1,000 left: a share of 12 a scan
    result = run_scan(github, redis_client, repos)
    assert result.skipped == [] and result.unchanged == list(repos)


def test_status_shows_the_budget_the_scan_saw(sandbox: Sandbox, settings: Settings, github: GitHub,
                                             redis_client: redis.Redis, asm_command) -> None:
    seed(sandbox, REPOS[:1])
    sandbox.github.limits.set_used(BOT_LOGIN, 1234)
    run_scan(github, redis_client, REPOS[:1])
    seen = read_limits(redis_client)
    assert set(seen) == {"core", "graphql"}
    assert seen["core"].limit == 5000 and seen["core"].remaining == 5000 - 1234 - 3  # the question and two lists
    done = asm_command(sandbox, "status", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["github_rate_limit"]
    assert shown["core"]["remaining"] == seen["core"].remaining and shown["core"]["current"] is True
    assert shown["graphql"]["used"] == 1
    table = asm_command(sandbox, "status").stdout
    assert f"core {seen['core'].remaining:,} of 5,000 left, resets" in table
    [gauge] = [family for family in fleet_gauges(read_fleet_state(redis_client, settings))
               if family.name == "asm_github_rate_limit_remaining"]
    assert {sample.labels["resource"]: sample.value for sample in gauge.samples} == \
        {"core": seen["core"].remaining, "graphql": seen["graphql"].remaining}


def test_a_memory_that_does_not_parse_or_a_forged_etag_means_a_full_read(
        sandbox: Sandbox, github: GitHub, redis_client: redis.Redis) -> None:
    seed(sandbox, REPOS[:2])
    run_scan(github, redis_client, REPOS[:2])
    redis_client.set(scan_memory_key(REPOS[0]), b"{not json")
    memory = probe.recall(redis_client, REPOS[1])
    assert memory is not None
    probe.remember(redis_client, REPOS[1], probe.Memory('W/"forged"', memory.ready))
    reset(sandbox)
    result = run_scan(github, redis_client, REPOS[:2])
    assert result.unchanged == [] and counted(sandbox)[2] == 0
    assert sorted(item.issue.repo for item in result.found) == sorted(REPOS[:2])
    reset(sandbox)
    assert run_scan(github, redis_client, REPOS[:2]).unchanged == list(REPOS[:2])


def test_rate_limit_headers_that_do_not_parse_are_ignored() -> None:
    good = {"x-ratelimit-limit": "5000", "X-RateLimit-Remaining": "4000", "x-ratelimit-reset": "1700000000",
            "x-ratelimit-used": "1000", "x-ratelimit-resource": "graphql"}
    assert from_headers(good, now=1.0) == RateLimit("graphql", 5000, 4000, 1000, 1700000000.0, 1.0)
    for name, value in (("X-RateLimit-Remaining", "lots"), ("x-ratelimit-limit", "inf"), ("x-ratelimit-reset", "nan")):
        assert from_headers({**{k.lower(): v for k, v in good.items()}, name.lower(): value}) is None
    assert from_headers({}) is None
    odd = from_headers({**good, "x-ratelimit-used": "-7", "x-ratelimit-resource": ""}, now=1.0)
    assert odd is not None and (odd.resource, odd.used) == ("core", 1000)


def test_the_share_is_the_rest_above_the_reserve_spread_evenly_until_the_reset() -> None:
    start = RateLimit("core", 5000, 4000, 1000, reset=6000.0, seen_at=0.0)
    pace = Pace(600, began=0.0)
    assert pace.share_spent({"core": start}, now=0.0) == ""  # the scan's first sight: its anchor
    # (4000 - 500) x 600 s / 6000 s = 350 requests this scan
    assert pace.share_spent({"core": replace(start, remaining=3651, seen_at=1.0)}, now=1.0) == ""
    assert "spent 350" in pace.share_spent({"core": replace(start, remaining=3650, seen_at=2.0)}, now=2.0)
    # Scans seconds apart: a twentieth of the rest, 175, rather than (4000 - 500) x 2 s / 6000 s
    brief = Pace(2, began=0.0)
    assert brief.share_spent({"core": start}, now=0.0) == ""
    assert brief.share_spent({"core": replace(start, remaining=3826, seen_at=1.0)}, now=1.0) == ""
    assert "spent 175" in brief.share_spent({"core": replace(start, remaining=3825, seen_at=1.0)}, now=1.0)
    # Told before the scan began (another machine's record): only the reserve counts.
    assert pace.share_spent({"core": replace(start, remaining=600, seen_at=-1.0)}, now=2.0) == ""
    assert "kept for the runs" in pace.reserve_reached({"core": replace(start, remaining=500)}, now=2.0)
    # A window past its reset is whole again; a new window is a new anchor.
    assert pace.reserve_reached({"core": replace(start, remaining=0)}, now=6001.0) == ""
    late = Pace(60, began=0.0)
    near = RateLimit("core", 5000, 1000, 4000, reset=30.0, seen_at=0.0)
    assert late.share_spent({"core": near}, now=0.0) == ""
    assert late.share_spent({"core": replace(near, remaining=501, seen_at=1.0)}, now=1.0) == "", \
        "30 s before the reset, with a scan a minute: all that is above the reserve is this scan's"
