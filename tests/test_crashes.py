"""Crashes at the worst moments of a run, and two beats by mistake, with real `celery worker` processes:
the issue is still finished with exactly one pull request, and the approved work is not redone."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fault_fleet import REPO, fleet, one_pull_each, settle, started

from asm.conversation.markers import read_marks
from asm.sandbox.fleet import wait_for
from asm.sandbox.redis_server import RedisServer


@pytest.mark.parametrize("moment", ["after the push, before the PR", "after the PR, before the labels"])
def test_a_crash_at_the_worst_moment_is_finished_without_a_second_pull_request(
        tmp_path: Path, redis_server: RedisServer, moment: str) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.0) as box:
        [number] = box.add_sample_issues(1)
        branch = f"ai-feature/issue-{number}"
        if moment.startswith("after the push"):
            box.github.inject_delay(30, path_contains="/pulls", method="POST")
            def crashed() -> bool:
                return box.github.branch_sha(REPO, branch) is not None
        else:
            box.github.inject_delay(30, path_contains=f"/issues/{number}/labels/in-progress", method="DELETE")
            def crashed() -> bool:
                return "in-review" in box.labels(REPO, number)
        worker = box.start_worker(1, name="first")
        box.start_beat()  # it queues the ready issue, and the orphan once the claim lapses
        assert wait_for(crashed, 60), worker.log()[-3000:]
        box.start_worker(1, name="second")  # idle while the first holds the claim
        worker.stop(signal.SIGKILL)
        calls_before = box.model.calls
        settle(box, [number])
        one_pull_each(box, [number])
        assert box.model.calls == calls_before, "the retry must finish the approved work, not redo it"


def test_two_beats_by_mistake_still_run_each_issue_once(tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.05) as box:
        numbers = box.add_sample_issues(3)
        worker = box.start_worker(3, name="w")
        box.start_beat("beat-1")
        box.start_beat("beat-2")
        started(box, worker, 3)
        settle(box, numbers)
        one_pull_each(box, numbers)
        for number in numbers:
            comments = box.github.issue(REPO, number).comments
            assert sum("picked up" in c for c in comments) == 1


def test_a_follow_up_killed_between_its_push_and_its_reply_is_answered_once_without_working_again(
        tmp_path: Path, redis_server: RedisServer) -> None:
    with fleet(tmp_path, redis_server.url, latency=0.0) as box:
        [number] = box.add_sample_issues(1)
        worker = box.start_worker(1, name="first")
        box.start_beat()
        settle(box, [number])
        [pull] = box.github.pulls(REPO)
        first_head = box.github.branch_sha(REPO, pull.head)
        box.github.add_user("maintainer")
        box.github.grant(REPO, "maintainer", "write")
        # The reply hangs; the worker is killed once its commit is out.
        box.github.inject_delay(120, path_contains=f"/issues/{pull.number}/comments", method="POST")
        box.github.add_comment(REPO, pull.number, "@asm add a docstring", author="maintainer")
        assert wait_for(lambda: box.github.branch_sha(REPO, pull.head) != first_head, 60), worker.log()[-3000:]
        pushed = box.github.branch_sha(REPO, pull.head)
        box.start_worker(1, name="second")
        worker.stop(signal.SIGKILL)
        calls_before = box.model.calls

        def replies() -> list[str]:
            return [c for c in box.github.issue(REPO, pull.number).comments if read_marks(c)]

        assert wait_for(lambda: bool(replies()), 90)
        [reply] = replies()
        assert f"pushed {str(pushed)[:12]}" in reply
        assert box.github.branch_sha(REPO, pull.head) == pushed, "no second commit"
        assert box.model.calls == calls_before, "the retry posts the reply; it does not work the remarks again"
