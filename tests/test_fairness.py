"""Fair turns with real workers: two `celery -A asm worker -c 2` processes (four slots) on a real Redis, the
sandbox GitHub and model, fed by the real scan.

The issues ask the scripted model's Architect a question (`asm-sandbox: clarify`), so each run ends
after one role: what is tested is the order runs start in and how many run at once, read from what
the workers record in Redis (`asm status`'s running issues and history), not the work itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from asm.deps import github_gateway
from asm.fleet import fair
from asm.fleet.queue import enqueue
from asm.fleet.scan import FollowRules, scan
from asm.keys import IssueRef
from asm.observe.status import read_history, read_queued, read_running
from asm.sandbox.fleet import Sandbox, running_fleet, wait_for
from asm.sandbox.redis_server import RedisServer

SLOTS = 4  # two processes of two
QUICK = "Needs a decision first.\n\nasm-sandbox: clarify"
CROWDED = "acme/crowded"
OTHERS = ("acme/one", "acme/two", "acme/three", "acme/four")
BUSY, CALM = "acme/busy", "acme/calm"


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    # ASM_REPO_WEIGHTS here changes no turn (a weight of 1 is everyone's); it shows each worker publishing its own.
    with running_fleet(tmp_path_factory.mktemp("fair"), redis_server.url, 2, "fair-a",
                       repos=(CROWDED, *OTHERS, BUSY, CALM), ASM_REPO_WEIGHTS=f"{CROWDED}=1") as box:
        box.start_ready_worker(2, "fair-b")
        yield box


@pytest.fixture
def client(fleet: Sandbox) -> redis.Redis:
    return redis.Redis.from_url(fleet.redis_url)


def starts(client: redis.Redis) -> list[dict[str, Any]]:
    """Every run that has started, finished or not, in the order they started (each with its issue and worker)."""
    # Running first: a run that ends between the two reads is then in both, never in neither.
    running = {issue: {"issue": issue, **entry} for issue, entry in read_running(client).items()}
    finished = {run["issue"]: run for run in read_history(client)}
    return sorted({**running, **finished}.values(), key=lambda run: run["started_at"])


def run_scan(fleet: Sandbox, client: redis.Redis, repos: tuple[str, ...]) -> None:
    """Scan until every repository was read (a scan paced by the rate limit leaves some for the next)."""
    from asm.celery_app import app

    settings = fleet.settings()
    github = github_gateway(settings)
    for _ in range(len(repos)):
        scan(github, client, app, repos, settings.ready_label, 600, FollowRules.of(settings))
        queued = {key.rpartition("#")[0] for key in read_queued(client)}
        if set(repos) <= queued | {run["issue"].rpartition("#")[0] for run in starts(client)}:
            return


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs in progress at one moment."""
    moments = sorted([(run["started_at"], 1) for run in runs] + [(run["finished_at"], -1) for run in runs])
    now = most = 0
    for _, change in moments:  # at a tie the end (-1) sorts first: a run that ends as another starts is not two
        now += change
        most = max(most, now)
    return most


def test_a_crowded_repository_does_not_starve_the_others_and_a_high_priority_issue_jumps_the_queue(
        fleet: Sandbox, client: redis.Redis) -> None:
    assert client.hget(fair.CONFIG, f"weight:{CROWDED}") == b"1"  # each worker published its settings at start
    for repo, count in ((CROWDED, 200), *((repo, 5) for repo in OTHERS)):
        fleet.create_repo(repo)
        for n in range(count):
            fleet.add_issue(repo, f"Issue {n + 1} of {repo}", QUICK)
    run_scan(fleet, client, (CROWDED, *OTHERS))  # the crowded one first: its 200 are queued before the others
    assert wait_for(lambda: len(starts(client)) >= 20 + SLOTS, 60), fleet.workers[0].log()[-3000:]
    first = Counter(run["issue"].rpartition("#")[0] for run in starts(client)[:20])
    # First come, first served would have given the crowded repository all twenty. It does have the first few:
    # they start while the scan is still reading the others.
    assert set(first) == {CROWDED, *OTHERS}, first

    # A high-priority issue, labelled while ~180 of the crowded repository's wait: the next scan queues it, and
    # it starts among the next few runs (one run may already be in the Celery queue, and each slot may be
    # taking one as it is queued), not after them.
    urgent = fleet.add_issue(CROWDED, "Urgent", QUICK, labels=("ready-for-dev", "priority:high"))
    waiting = fair.waiting(client)
    assert waiting.get(CROWDED, 0) > 150, waiting
    run_scan(fleet, client, (CROWDED,))
    # Counted from when the scan queued it (runs go on starting while the scan reads 200 issues).
    before = {run["issue"] for run in starts(client)}
    key = f"{CROWDED}#{urgent}"
    after: list[str] = []

    def urgent_started() -> bool:
        # One reading serves both the wait and the check: between two, the run may move from running to history.
        after[:] = [run["issue"] for run in starts(client) if run["issue"] not in before]
        return key in after or key in before

    assert wait_for(urgent_started, 30), fleet.workers[0].log()[-3000:]
    assert key in before or after.index(key) < SLOTS, after[:10]
    # Nothing of this test may run on into the next: its lines go, and the runs going end.
    client.delete(fair.LINES, *client.keys(fair.LINE + "*"))
    assert wait_for(lambda: not read_running(client) and not sum(client.llen(n) for n in fair.celery_queue_lists()),
                    30)


def test_the_per_repository_limit_holds_across_two_worker_processes(fleet: Sandbox, client: redis.Redis) -> None:
    from asm.celery_app import app

    # What every worker and every scan of a fleet set with ASM_MAX_RUNNING_PER_REPO=2 publishes.
    fair.publish(client, {}, 2)
    fleet.create_repo(BUSY)
    fleet.create_repo(CALM)
    busy = [fleet.add_issue(BUSY, f"Busy {n}", QUICK) for n in range(8)]
    calm = [fleet.add_issue(CALM, f"Calm {n}", QUICK) for n in range(4)]
    for repo, numbers in ((BUSY, busy), (CALM, calm)):
        for number in numbers:
            assert enqueue(client, app, IssueRef(repo, number), by="test", stale_after=600)
    wanted = {f"{BUSY}#{n}" for n in busy} | {f"{CALM}#{n}" for n in calm}
    assert wait_for(lambda: wanted <= {run["issue"] for run in read_history(client)}, 60), \
        fleet.workers[0].log()[-3000:]
    runs = [run for run in read_history(client) if run["issue"] in wanted]
    busy_runs = [run for run in runs if run["issue"].startswith(f"{BUSY}#")]
    assert len(busy_runs) == 8, "each ran once: a delivery sent back to wait is not lost"
    assert most_at_once(busy_runs) == 2
    assert {run["worker"].partition("@")[0] for run in busy_runs} == {"fair-a", "fair-b"}
    assert most_at_once(runs) > 2, "the calm repository ran beside the busy one"
