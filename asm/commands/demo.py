"""`asm demo`: the real fleet on the sandbox, with the live status table and the speedup at the end."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import redis

from asm.config import without_password
from asm.conversation.markers import read_marks
from asm.github import IN_REVIEW
from asm.observe.dashboard import render
from asm.observe.display import duration_text
from asm.observe.fleet_state import read_fleet_state
from asm.observe.status import paused_reason, read_history
from asm.sandbox.fleet import Fleet, Sandbox, start_fleet, wait_for
from asm.sandbox.model_server import DEFAULT as DEFAULT_STYLE
from asm.sandbox.sample_repo import solution_for

WORKER_START_TIMEOUT = 60.0
TABLE_EVERY_SECONDS = 1.0
REVIEWER = "reviewer"  # the maintainer who reviews a pull request in the demo


def run_demo(workers: int, issues: int, latency: float, model_style: str = DEFAULT_STYLE,
             out: TextIO = sys.stdout) -> int:
    """Work `issues` sample issues with `workers` worker slots; 0 when every one became a PR.

    `model_style` is how the scripted model answers: "sonnet-5-5" sends signed thinking blocks the way
    asm's default model does, and refuses a conversation that does not send them back unchanged.
    """
    with tempfile.TemporaryDirectory(prefix="asm-demo-") as tmp, \
            Sandbox(Path(tmp), model_latency=latency, model_style=model_style) as box:
        repo = box.create_repo()
        numbers = box.add_sample_issues(issues)
        # Set by box.start() (the with statement).
        assert box.github_server is not None and box.model is not None and box.redis_url is not None
        print(f"sandbox: GitHub {box.github_server.url}, model {box.model.url} ({model_style}, {latency:g}s a call), "
              f"Redis {without_password(box.redis_url)} ({box.redis.kind if box.redis else 'given'})", file=out)
        print(f"{repo}: {issues} issues labelled ready-for-dev; starting `celery -A asm worker -c {workers}`",
              file=out)
        try:
            fleet = start_fleet(box, workers, "demo", WORKER_START_TIMEOUT)
        except RuntimeError as problem:
            print(f"asm demo: {problem}", file=sys.stderr)
            return 1
        from asm.celery_app import app
        from asm.fleet.scan import scan

        settings, client = fleet.settings, fleet.redis
        started = time.monotonic()
        found = scan(fleet.github, client, app, settings.repos, settings.ready_label, settings.task_time_limit)
        print(f"scan queued {sum(1 for f in found.found if f.task_id)} issues", file=out)
        live = out.isatty()
        last_table = 0.0

        def show() -> None:
            nonlocal last_table
            if time.monotonic() - last_table < (TABLE_EVERY_SECONDS if live else 5.0):
                return
            last_table = time.monotonic()
            if live:
                print("\033[2J\033[H", end="", file=out)
            print(render(read_fleet_state(client, settings)), file=out, flush=True)

        done = wait_for(lambda: box.settled(repo, numbers) or bool(paused_reason(client)),
                        timeout=120 + issues * latency * 30, on_tick=show)
        wall = time.monotonic() - started
        print(render(read_fleet_state(client, settings)), file=out)
        status = _summary(box, repo, numbers, client, wall, workers, done, out)
        answered = _review_round_trip(box, fleet, repo, numbers[0], latency, out) if status == 0 else False
        fleet.worker.stop(signal.SIGTERM)
        return status if answered else 1


def _review_round_trip(box: Sandbox, fleet: Fleet, repo: str, number: int, latency: float, out: TextIO) -> bool:
    """A maintainer asks for a change on the first pull request; the next scan queues a follow-up, and asm
    answers with a new commit on the same branch and a reply. True when the reply came."""
    from asm.celery_app import app
    from asm.fleet.scan import FollowRules, scan

    assert box.github is not None
    pull = next(p for p in box.github.pulls(repo) if p.head == f"ai-feature/issue-{number}")
    before = box.github.branch_sha(repo, pull.head)
    box.github.add_user(REVIEWER)
    box.github.grant(repo, REVIEWER, "write")
    module = solution_for(box.github.issue(repo, number).title)
    path = module.module_path if module else f"docs/issue-{number}.md"
    box.github.submit_review(repo, pull.number, REVIEWER, "REQUEST_CHANGES", "Nearly there.",
                             comments=[{"path": path, "line": 1, "body": "Say here what this module is for."}])
    print(f"\nReview round trip: @{REVIEWER} requested a change on {pull.html_url}, on {path} line 1", file=out)
    started = time.monotonic()
    settings = fleet.settings
    scan(fleet.github, fleet.redis, app, settings.repos, settings.ready_label, settings.task_time_limit,
         FollowRules.of(settings))
    github = box.github

    def said() -> list[str]:
        return [comment for comment in github.issue(repo, pull.number).comments if read_marks(comment)]

    if not wait_for(lambda: bool(said()), timeout=120 + latency * 40):
        print("asm demo: no reply to the review in time; see the worker log", file=sys.stderr)
        return False
    reply = said()[0]
    after = box.github.branch_sha(repo, pull.head)
    print(f"  asm replied after {time.monotonic() - started:.1f}s: {reply.splitlines()[0]}", file=out)
    print(f"  {pull.head}: {str(before)[:12]} -> {str(after)[:12]} (a new commit on top, not a force-push)", file=out)
    return True


def _summary(box: Sandbox, repo: str, numbers: list[int], client: redis.Redis[bytes], wall: float, workers: int,
             done: bool, out: TextIO) -> int:
    assert box.github is not None  # the box is started
    pulls = {pull.head: pull for pull in box.github.pulls(repo)}
    runs: dict[str, dict[str, Any]] = {}
    for record in read_history(client):
        if record["completed"]:
            runs.setdefault(record["issue"], record)
    print("\nResults", file=out)
    ok = 0
    for number in numbers:
        issue = box.github.issue(repo, number)
        pull = pulls.get(f"ai-feature/issue-{number}")
        run = runs.get(f"{repo}#{number}", {})
        where = pull.html_url if pull else ", ".join(sorted(issue.labels)) or "not settled"
        ok += bool(pull) and IN_REVIEW in issue.labels
        print(f"  #{number:<3} {issue.title:<36} -> {where}  ({duration_text(run.get('seconds', 0))}, "
              f"${run.get('cost_usd', 0):.4f}, {run.get('worker', '-')})", file=out)
    serial = sum(record.get("seconds", 0) for record in runs.values())
    print(f"\n{ok}/{len(numbers)} issues became pull requests with {workers} workers.", file=out)
    print(f"Total wall time: {wall:.1f}s; one worker would take about {serial:.1f}s (the sum of the runs); "
          f"speedup {serial / wall if wall else 0:.2f}x over one worker.", file=out)
    if not done:
        print("asm demo: some issues did not settle in time; see the worker log above", file=sys.stderr)
    return 0 if ok == len(numbers) else 1
