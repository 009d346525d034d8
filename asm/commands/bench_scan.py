"""`asm bench`'s conditional-scan figure: a scan of a thousand repositories with five changed, and with none.

A fresh sandbox holds `repos` small repositories (issues and labels, no git content: the scan never clones),
served over HTTP; the scan is asm's own (`asm.fleet.scan.scan`, PyGithub through the gateway `asm.deps`
builds, the fleet's Redis). A first scan reads every repository whole and learns their ETags; then five
repositories each get a ready label and the scan is timed; then one more with nothing changed. The sandbox
counts what was asked, what it answered 304 (free) and what it counted against the token's budget, which for
the timed scans is GitHub's 5,000 REST and 5,000 GraphQL requests an hour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery

from asm.deps import github_gateway, redis_client
from asm.fleet.probe import MEMORY_SECONDS, MEMORY_SPREAD
from asm.fleet.queue import Sender
from asm.fleet.scan import FollowRules, scan
from asm.github import GitHub
from asm.sandbox.fleet import Sandbox
from asm.sandbox.github_limits import DEFAULT_LIMIT
from asm.sandbox.github_state import BOT_LOGIN, GitHubState

READY = "ready-for-dev"
SCANS_AN_HOUR = 60  # one scan a minute: the goal's pace
GOAL_EXTRA_REQUESTS = 100  # the issue's goal: fewer than 1,100 requests for 1,000 repositories with 5 changed
UNLIMITED = 10**9  # the first scan only learns the ETags: no budget stands in its way


@dataclass(frozen=True)
class ScanRun:
    """One scan of every repository, as the sandbox counted it."""

    requests: int
    not_modified: int  # answered 304: free
    counted_rest: int
    counted_graphql: int
    unchanged: int  # repositories GitHub said had not changed
    queued: int
    skipped: int  # left for the next scan by the pacing
    wall_s: float


@dataclass(frozen=True)
class ScanFigure:
    """A cold scan, a scan with `changed` repositories changed, and a steady one, of `repositories` repositories."""

    repositories: int
    changed: int
    cold: ScanRun
    with_changes: ScanRun
    steady: ScanRun
    budget_per_hour: int
    steady_counted_per_hour: int  # a scan a minute with nothing changed
    refresh_per_hour: int  # full reads as each repository's memory expires (18 to 24 hours), on average
    fits_one_token: bool  # a thousand repositories a minute within one token's budget, 304s free
    under_goal_requests: bool  # fewer than the issue's 1,100 for 1,000 (the repositories and 100 more)


def measure_conditional_scan(root: Path, repositories: int, changed: int = 5) -> ScanFigure:
    """The figure, on a fresh sandbox of `repositories` repositories."""
    changed = min(changed, repositories)
    with Sandbox(root, model_latency=0.0) as box:
        assert box.github is not None
        state = box.github
        names = tuple(f"bench/scan-{n:04d}" for n in range(repositories))
        issues = {}
        for name in names:
            state.create_repo(name, {}, with_git=False)
            issues[name] = state.create_issue(name, f"an issue of {name}")
        settings = box.settings()
        github, client = github_gateway(settings), redis_client(settings.redis_url)
        # A Celery app of its own, sending to this sandbox's Redis: the process's app may still hold connections to
        # the Redis of a sandbox the bench measured before (and stopped).
        sender = Celery("asm-bench-scan", broker=settings.redis_url, set_as_current=False)
        state.limits.configure(UNLIMITED)
        state.limits.configure(UNLIMITED, resource="graphql")
        cold = timed_scan(github, client, sender, state, names)
        state.limits.configure(DEFAULT_LIMIT)  # a fresh hour of GitHub's budget for the timed scans
        state.limits.configure(DEFAULT_LIMIT, resource="graphql")
        step = max(repositories // max(changed, 1), 1)
        for name in names[::step][:changed]:
            state.add_labels(name, issues[name], [READY])
        with_changes = timed_scan(github, client, sender, state, names)
        steady = timed_scan(github, client, sender, state, names)
        sender.close()
    per_hour = steady.counted_rest * SCANS_AN_HOUR
    memory_hours = (MEMORY_SECONDS - MEMORY_SPREAD / 2) / 3600
    refresh = round(cold.counted_rest / memory_hours)
    return ScanFigure(
        repositories=repositories, changed=changed, cold=cold, with_changes=with_changes, steady=steady,
        budget_per_hour=DEFAULT_LIMIT, steady_counted_per_hour=per_hour, refresh_per_hour=refresh,
        fits_one_token=steady.wall_s < 60 and per_hour + refresh <= DEFAULT_LIMIT and steady.skipped == 0,
        under_goal_requests=with_changes.requests < repositories + GOAL_EXTRA_REQUESTS,
    )


def timed_scan(github: GitHub, client: redis.Redis[bytes], sender: Sender, state: GitHubState,
               names: tuple[str, ...]) -> ScanRun:
    """One scan of `names`, timed, and what the sandbox counted of it."""
    requests, free = state.request_count, len(state.limits.not_modified)
    rest, graphql = (state.limits.peek(BOT_LOGIN, resource).used for resource in ("core", "graphql"))
    started = time.perf_counter()
    result = scan(github, client, sender, names, READY, 3600, FollowRules())
    wall = time.perf_counter() - started
    return ScanRun(
        requests=state.request_count - requests, not_modified=len(state.limits.not_modified) - free,
        counted_rest=state.limits.peek(BOT_LOGIN, "core").used - rest,
        counted_graphql=state.limits.peek(BOT_LOGIN, "graphql").used - graphql,
        unchanged=len(result.unchanged), queued=sum(1 for item in result.found if item.task_id),
        skipped=len(result.skipped), wall_s=round(wall, 2),
    )


def render_scan(figure: ScanFigure) -> str:
    """The figure as a table, and the goals it is held to."""
    lines = [
        f"Conditional scan: {figure.repositories:,} repositories on the sandbox GitHub; the timed scans within one "
        f"token's {figure.budget_per_hour:,} REST and {figure.budget_per_hour:,} GraphQL requests an hour",
        "",
        "| Scan            | Requests | 304s (free) | Counted REST | Counted GraphQL | Unchanged | Queued | Wall time"
        " |",
        "|-----------------|----------|-------------|--------------|-----------------|-----------|--------|----------"
        "-|",
    ]
    for label, run in (("first (cold)", figure.cold), (f"{figure.changed} changed", figure.with_changes),
                       ("nothing changed", figure.steady)):
        lines.append(f"| {label:<15} | {run.requests:>8,} | {run.not_modified:>11,} | {run.counted_rest:>12,} | "
                     f"{run.counted_graphql:>15,} | {run.unchanged:>9,} | {run.queued:>6,} | {run.wall_s:>8.2f}s |")
    met = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"Goal: fewer than {figure.repositories + GOAL_EXTRA_REQUESTS:,} requests with {figure.changed} changed: "
        f"{figure.with_changes.requests:,} ({met[figure.under_goal_requests]}).",
        f"Goal: {figure.repositories:,} repositories a minute within {figure.budget_per_hour:,} counted requests an "
        f"hour, 304s free: {figure.steady.wall_s:.2f}s a scan, {figure.steady_counted_per_hour:,} counted an hour, "
        f"plus about {figure.refresh_per_hour:,} an hour reading repositories whole as their memory expires "
        f"({met[figure.fits_one_token]}).",
    ]
    return "\n".join(lines)
