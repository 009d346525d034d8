"""Fair turns on a real Redis: the order runs are released in across repositories, priorities, weights,
the per-repository limit, and what happens when sending fails or a worker dies.

`Broker` sends as Celery does on Redis (one list per priority step, taken lowest step first) so that
the room `release` sees in the queue is real; `take` is a worker slot coming free.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import redis
from kombu.exceptions import OperationalError

from asm.config import load_settings
from asm.errors import ConfigError
from asm.fleet import fair
from asm.fleet.fair import AHEAD, HIGH, LOW, NORMAL, PRIORITY_STEPS, PriorityLabels, celery_queue_lists, publish
from asm.fleet.queue import PROCESS_ISSUE, PROCESS_PULL, enqueue, mark_delivered
from asm.keys import PAUSED, QUEUED, IssueRef
from asm.sandbox.fleet import Sandbox
from asm.sandbox.redis_server import RedisServer

CROWDED = "acme/crowded"
OTHERS = ("acme/one", "acme/two", "acme/three", "acme/four")


class Broker:
    """Celery on Redis, as far as `release` can tell: a message goes to its priority step's list."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.sent: list[tuple[str, str, str, int | None]] = []  # task, issue key, task id, priority

    def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None,
                  priority: int | None = None) -> object:
        step = max(s for s in PRIORITY_STEPS if s <= (priority or 0))
        key = f"{args[0]}#{args[1]}"
        self.client.lpush(celery_queue_lists()[PRIORITY_STEPS.index(step)], json.dumps([name, key, task_id]))
        self.sent.append((name, key, task_id, priority))
        return task_id

    def take(self) -> str | None:
        """A slot comes free: it takes the first message by priority, and the run lets the next one in."""
        for name in celery_queue_lists():
            raw = self.client.rpop(name)
            if raw:
                _, key, _ = json.loads(raw)
                repo, _, number = key.rpartition("#")
                mark_delivered(self.client, IssueRef(repo, int(number)))
                fair.release(self.client, self)
                return key
        return None

    def take_all(self, count: int) -> list[str]:
        taken = [self.take() for _ in range(count)]
        return [key for key in taken if key]


def queue(client: redis.Redis, broker: Broker, repo: str, count: int, priority: int = NORMAL, start: int = 1) -> None:
    for number in range(start, start + count):
        assert enqueue(client, broker, IssueRef(repo, number), by="test", stale_after=600, priority=priority)


def repo_of(key: str) -> str:
    return key.rpartition("#")[0]


def test_a_waiting_issue_given_a_higher_priority_moves_up_and_never_down(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    queue(redis_client, broker, CROWDED, 10)  # the first is sent at once (AHEAD), the rest wait in line
    issue = IssueRef(CROWDED, 9)
    assert enqueue(redis_client, broker, issue, by="a priority label", stale_after=600, priority=HIGH) is None
    assert enqueue(redis_client, broker, issue, by="the next scan", stale_after=600, priority=LOW) is None
    assert json.loads(redis_client.hget(QUEUED, issue.key))["priority"] == "high"
    assert broker.take_all(3) == [f"{CROWDED}#1", f"{CROWDED}#9", f"{CROWDED}#2"]


def test_a_crowded_repository_takes_turns_with_the_others(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    queue(redis_client, broker, CROWDED, 200)
    for repo in OTHERS:
        queue(redis_client, broker, repo, 5)
    first = broker.take_all(20)
    counts = Counter(repo_of(key) for key in first)
    assert set(counts) == {CROWDED, *OTHERS}
    assert counts[CROWDED] <= 5 and min(counts[repo] for repo in OTHERS) >= 3, counts


def test_a_line_holds_its_issues_oldest_first_however_they_were_listed(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    for number in (5, 4, 3, 2, 1):  # GitHub lists the newest first
        assert enqueue(redis_client, broker, IssueRef("acme/one", number), by="test", stale_after=600)
    # The first was sent at once, the queue being empty; the others waited, and go oldest first.
    assert broker.take_all(5) == ["acme/one#5", "acme/one#1", "acme/one#2", "acme/one#3", "acme/one#4"]


def test_the_celery_queue_holds_at_most_one_run_and_the_rest_wait_in_their_lines(
        redis_server: RedisServer, redis_client: redis.Redis) -> None:
    from asm.celery_app import app, use_settings

    use_settings(load_settings({"ASM_REDIS_URL": redis_server.url}, dotenv=None))
    for number in range(1, 11):
        assert enqueue(redis_client, app, IssueRef(CROWDED, number), by="test", stale_after=600)
    assert sum(redis_client.llen(name) for name in celery_queue_lists()) == AHEAD
    assert fair.waiting(redis_client) == {CROWDED: 10 - AHEAD}
    assert redis_client.hlen(QUEUED) == 10  # `asm status` shows all ten queued
    assert fair.queue_length(redis_client) == 10


def test_weights_share_turns_out_in_proportion(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    publish(redis_client, {"Acme/Heavy": 3}, 0)  # named in any case, as GitHub does
    queue(redis_client, broker, "acme/heavy", 60)
    queue(redis_client, broker, "acme/light", 60)
    counts = Counter(repo_of(key) for key in broker.take_all(40))
    assert abs(counts["acme/heavy"] - 30) <= 1 and abs(counts["acme/light"] - 10) <= 1, counts


def test_a_high_priority_issue_jumps_every_line_and_a_low_one_waits_for_all(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    queue(redis_client, broker, CROWDED, 30)
    for repo in OTHERS:
        queue(redis_client, broker, repo, 3)
    queue(redis_client, broker, "acme/four", 1, priority=LOW, start=50)
    broker.take_all(3)
    queue(redis_client, broker, CROWDED, 1, priority=HIGH, start=99)  # the crowded repository's, even
    # One run was already in the Celery queue; the high one is the next after it.
    assert f"{CROWDED}#99" in broker.take_all(AHEAD + 1)
    assert [priority for _, key, _, priority in broker.sent if key == f"{CROWDED}#99"] == [0]
    rest = broker.take_all(100)
    assert rest[-1] == "acme/four#50" and len(rest) == 30 + 12 + 2 - 3 - (AHEAD + 1)


def test_priority_labels_are_read_in_any_case_and_high_wins() -> None:
    labels = PriorityLabels("urgent", "someday")
    assert labels.of(["ready-for-dev", "URGENT"]) == HIGH
    assert labels.of(["someday", "urgent"]) == HIGH
    assert labels.of(["Someday"]) == LOW
    assert labels.of(["priority:high"]) == NORMAL  # only the labels configured count


def test_a_repository_back_after_a_pause_gets_its_turn_not_a_burst(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    queue(redis_client, broker, "acme/steady", 40)
    broker.take_all(10)
    queue(redis_client, broker, "acme/back", 10)  # it had nothing waiting while acme/steady was served
    counts = Counter(repo_of(key) for key in broker.take_all(10))
    assert 4 <= counts["acme/back"] <= 6, counts


def test_a_repository_at_its_limit_is_passed_over_until_a_run_of_it_ends(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    publish(redis_client, {}, 2)
    queue(redis_client, broker, "acme/busy", 6)
    queue(redis_client, broker, "acme/calm", 2)
    taken = broker.take_all(6)
    assert Counter(repo_of(key) for key in taken) == {"acme/busy": 2, "acme/calm": 2}
    assert broker.take() is None  # busy waits: nothing to run but more of it
    assert fair.waiting(redis_client) == {"acme/busy": 4}
    # Its two runs claim their issues, as deliveries do, then one ends.
    running = [IssueRef("acme/busy", int(key.rpartition("#")[2])) for key in taken if repo_of(key) == "acme/busy"]
    for issue in running:
        assert fair.admit(redis_client, issue)
        redis_client.set(issue.claim_key, "w-1:token", px=60_000)
    assert not fair.release(redis_client, broker)
    fair.leave(redis_client, running[0])
    redis_client.delete(running[0].claim_key)
    assert fair.release(redis_client, broker) == [IssueRef("acme/busy", 3)]


def test_a_dead_worker_s_run_stops_counting_when_its_claim_expires(redis_client: redis.Redis) -> None:
    publish(redis_client, {}, 1)
    dead, next_one = IssueRef("acme/busy", 1), IssueRef("acme/busy", 2)
    assert fair.admit(redis_client, dead)
    redis_client.set(dead.claim_key, "w-1:token", px=60_000)
    assert not fair.admit(redis_client, next_one)
    # The worker died mid-run: nothing calls leave(). Its claim expires; it was let in long ago.
    redis_client.zadd(fair.RUNS + "acme/busy", {dead.key: 0})
    redis_client.delete(dead.claim_key)
    assert fair.admit(redis_client, next_one)
    assert redis_client.zrange(fair.RUNS + "acme/busy", 0, -1) == [next_one.key.encode()]


def test_a_second_delivery_of_a_running_issue_does_not_take_a_second_place(redis_client: redis.Redis) -> None:
    publish(redis_client, {}, 1)
    running = IssueRef("acme/busy", 1)
    assert fair.admit(redis_client, running)
    assert fair.admit(redis_client, running)  # the same run: its claim will refuse the twin
    assert not fair.admit(redis_client, IssueRef("acme/busy", 2))


def test_what_cannot_be_sent_goes_back_to_the_head_of_its_line(redis_client: redis.Redis) -> None:
    class Down(Broker):
        def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None,
                      priority: int | None = None) -> object:
            raise OperationalError("the broker is away")

    broker = Broker(redis_client)
    queue(redis_client, broker, "acme/one", 3)  # the first in Celery, two in the line
    redis_client.delete(*celery_queue_lists())  # a worker took the first
    assert fair.release(redis_client, Down(redis_client)) == []
    assert fair.waiting(redis_client) == {"acme/one": 2}
    assert fair.release(redis_client, broker) == [IssueRef("acme/one", 2)]


def test_a_run_taken_out_of_its_line_by_a_process_that_died_before_sending_it_waits_again(
        redis_client: redis.Redis) -> None:
    class Killed(Broker):  # the process dies between taking the run out of its line and sending it
        def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None,
                      priority: int | None = None) -> object:
            raise SystemExit("killed")

    broker = Broker(redis_client)
    queue(redis_client, broker, "acme/one", 2)  # the first in Celery, the second in its line
    redis_client.delete(*celery_queue_lists())  # a worker took the first
    with pytest.raises(SystemExit):
        fair.release(redis_client, Killed(redis_client))
    assert fair.waiting(redis_client) == {} and redis_client.zcard(fair.SENDING) == 1
    assert fair.release(redis_client, broker) == [], "a send may still be under way: left alone for a while"
    [member] = redis_client.zrange(fair.SENDING, 0, -1)
    redis_client.zadd(fair.SENDING, {member: time.time() - fair.SENDING_GRACE_SECONDS - 1})  # that while passed
    assert fair.release(redis_client, broker) == [IssueRef("acme/one", 2)]
    assert redis_client.zcard(fair.SENDING) == 0


def test_a_pull_request_s_follow_up_is_released_as_its_own_task(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    queue(redis_client, broker, "acme/one", 1)
    assert enqueue(redis_client, broker, IssueRef("acme/one", 7), by="test", stale_after=600, task=PROCESS_PULL)
    broker.take()
    assert [(task, key) for task, key, _, _ in broker.sent] == [(PROCESS_ISSUE, "acme/one#1"),
                                                                (PROCESS_PULL, "acme/one#7")]
    marker = json.loads(redis_client.hget(QUEUED, "acme/one#7"))
    assert broker.sent[-1][2] == marker["task_id"]  # the id `enqueue` gave, as the scan printed it


def test_queuing_twice_waits_once_even_after_the_marker_grew_old(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    queue(redis_client, broker, "acme/one", 2)
    issue = IssueRef("acme/one", 2)
    assert enqueue(redis_client, broker, issue, by="test", stale_after=600) is None
    assert enqueue(redis_client, broker, issue, by="test", stale_after=0) is None  # still in its line: not lost
    assert fair.waiting(redis_client) == {"acme/one": 1}


def test_nothing_is_released_while_the_fleet_is_held(redis_client: redis.Redis) -> None:
    broker = Broker(redis_client)
    redis_client.set(PAUSED, "the model account is out of credit")
    queue(redis_client, broker, "acme/one", 2)
    assert broker.sent == [] and fair.waiting(redis_client) == {"acme/one": 2}
    redis_client.delete(PAUSED)
    assert fair.release(redis_client, broker) == [IssueRef("acme/one", 1)]


@pytest.mark.parametrize("weights", ["acme/api=0", "acme/api=-1", "acme/api=1.5", "acme/api=", "=3", "acme=3",
                                     "acme/api=3,acme/API=1", "acme/api=1001", "acme/api=3;acme/web=1",
                                     "acme/api=3=4", "../../etc=3"])
def test_malformed_weights_are_refused_naming_the_variable(weights: str) -> None:
    with pytest.raises(ConfigError, match="^ASM_REPO_WEIGHTS="):
        load_settings({"ASM_REPO_WEIGHTS": weights}, dotenv=None)


def test_a_delivery_over_the_limit_waits_at_the_head_of_its_line_and_touches_nothing(
        sandbox: Sandbox, work_issue) -> None:
    repo = sandbox.create_repo("acme/busy")
    running, over = IssueRef(repo, sandbox.add_issue(repo, "running")), IssueRef(repo, sandbox.add_issue(repo, "over"))
    client = redis.Redis.from_url(sandbox.redis_url)
    broker = Broker(client)
    publish(client, {}, 1)
    assert fair.admit(client, running)
    client.set(running.claim_key, "w-1:token", px=60_000)
    # Sent straight to Celery (a retry after the model's rest is): its delivery meets the limit.
    assert enqueue(client, broker, over, by="test", stale_after=600, countdown=0.0, priority=HIGH)
    client.delete(*celery_queue_lists())  # a worker took it
    result, _ = work_issue(repo, over.number)
    assert result.outcome == "waiting" and "ASM_MAX_RUNNING_PER_REPO" in result.summary
    assert fair.waiting(client) == {repo: 1} and not client.exists(over.claim_key)
    assert json.loads(client.hget(QUEUED, over.key))["priority"] == "high"  # `asm status` still shows it queued
    assert sandbox.labels(repo, over.number) == {"ready-for-dev"}
    fair.leave(client, running)
    client.delete(running.claim_key)
    assert fair.release(client, broker) == [over] and broker.sent[-1][3] == 0
