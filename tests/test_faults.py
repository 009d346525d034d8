"""The faults where a process dies, caused for real: a worker process killed mid-workflow, a whole host
stopping, Redis restarted mid-run. Real `celery worker` processes run the issues; every test asserts
the outcome on the sandbox GitHub: exactly one pull request per issue.

Crashes at the worst moments and two beats are in test_crashes.py; the faults no process has to die
for (GitHub and model errors, the time limit) in test_api_faults.py.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from fault_fleet import REPO, client_of, fleet, one_pull_each, queue, settle, stage_of, started

from asm.keys import IssueRef, worker_key
from asm.sandbox.fleet import wait_for
from asm.sandbox.redis_server import RedisServer


def test_a_worker_process_killed_mid_workflow_is_finished_by_another(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url) as box:
        [number] = box.add_sample_issues(1)
        worker = box.start_worker(2, name="a")
        box.start_beat()  # it queues the ready issue, and the orphan once the claim lapses
        started(box, worker, 2)
        assert wait_for(lambda: stage_of(box, number) in ("tester", "po"), 60, interval=0.05)
        holder = client_of(box).get(IssueRef(REPO, number).claim_key).decode().rsplit(":", 1)[0]
        pid = int(client_of(box).hget(worker_key(holder), "pid"))
        os.kill(pid, signal.SIGKILL)
        settle(box, [number])
        one_pull_each(box, [number])
        assert any("resumed the interrupted run" in c for c in box.github.issue(REPO, number).comments)


def test_a_whole_host_stopping_is_recovered_by_another_host(tmp_path: Path, redis_server: RedisServer) -> None:
    # Model calls slow enough that both runs are past the Architect at once, whatever else the machine does.
    with fleet(tmp_path, redis_server.url, latency=0.3) as box:
        numbers = box.add_sample_issues(2)
        host_a = box.start_worker(2, name="host-a")
        started(box, host_a, 2)
        queue(box, numbers)
        assert wait_for(lambda: all(stage_of(box, n) for n in numbers), 60)  # host-a holds both
        host_b = box.start_worker(2, name="host-b")  # idle: nothing is left for it, for now
        box.start_beat()
        assert wait_for(lambda: all(stage_of(box, n) in ("security", "tester", "po") for n in numbers), 60,
                        interval=0.05)
        host_a.stop(signal.SIGKILL)  # every process of the host, at once
        settle(box, numbers)
        one_pull_each(box, numbers)
        assert "host-b" in host_b.log() and "succeeded" in host_b.log()


def test_redis_restarted_mid_run_loses_and_doubles_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url) as box:
        numbers = box.add_sample_issues(3)
        worker = box.start_worker(2, name="w")
        started(box, worker, 2)
        queue(box, numbers)
        assert wait_for(lambda: any(stage_of(box, n) in ("architect", "security") for n in numbers), 60)
        redis_server.restart(down_for=1.0)
        box.start_beat()  # re-queues whatever the restart lost
        settle(box, numbers, timeout=120)
        one_pull_each(box, numbers)
