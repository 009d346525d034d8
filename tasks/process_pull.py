"""asm.process_pull: a follow-up on a pull request of asm's; the work is `asm.run.pull_run.process_pull`."""

from __future__ import annotations

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from asm.celery_app import app, process_settings
from asm.fleet import worker
from asm.fleet.queue import PROCESS_PULL
from asm.keys import IssueRef
from asm.run.pull_run import process_pull as follow_up
from tasks.process_issue import finish, flower_progress


@app.task(name=PROCESS_PULL, bind=True)
def process_pull(self: Task, repo: str, number: int) -> str:
    """Follow up on pull request `repo#number` if this delivery wins its claim; the outcome in one line."""
    context = worker.current(process_settings())
    pull = IssueRef.parse(repo, number)
    result = follow_up(context.deps, context.status, pull, flower_progress(self, pull, context.status.worker),
                       time_up=(SoftTimeLimitExceeded,))
    return finish(self, pull, result, PROCESS_PULL)
