"""asm.process_issue: one issue, one delivery; the work is `asm.run.issue_run.process_issue`."""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import BackendError, SoftTimeLimitExceeded
from kombu.exceptions import KombuError
from redis import RedisError

from asm.celery_app import app, process_settings
from asm.fleet import worker
from asm.fleet.queue import enqueue
from asm.keys import IssueRef
from asm.observe.progress import Progress
from asm.run.issue_run import process_issue as work_issue

log = logging.getLogger(__name__)


@app.task(name="asm.process_issue", bind=True)
def process_issue(self: Task, repo: str, number: int) -> str:
    """Work `repo#number` if this delivery wins the claim; returns the outcome in one line."""
    context = worker.current(process_settings())
    issue = IssueRef.parse(repo, number)

    def show_in_flower(progress: Progress) -> None:
        # What Flower shows is a view: the broker or the result backend failing for a moment (a Redis
        # restart outlasts their few retries) must not end the run, which rides it out on its own clients.
        try:
            send_progress(progress)
        except (KombuError, BackendError, RedisError, OSError) as problem:
            log.warning("%s: progress not shown in Flower (%s)", issue, problem)

    def send_progress(progress: Progress) -> None:
        # Field names must not shadow Flower's own task fields (`worker` is an object there).
        meta = {"issue": progress.issue, "stage": progress.stage, "revision": progress.revision,
                "spent_usd": round(progress.spent_usd, 4), "slot": context.status.worker}
        # Flower shows the stage as the task's state, and, until the real result replaces it, the
        # progress line in its Result column (Flower's API only passes on Celery's own task fields).
        progress_line = (f"{progress.issue}: {progress.stage}, revision {progress.revision}, "
                         f"${progress.spent_usd:.4f} so far")
        self.send_event(f"task-{progress.stage}", result=progress_line, **meta)
        # The result backend keeps the stage for `AsyncResult`, written once a stage, not once a call.
        if progress.new_stage:
            self.update_state(state=progress.stage.upper(), meta=meta)

    result = work_issue(context.deps, context.status, issue, show_in_flower, time_up=(SoftTimeLimitExceeded,))
    if result.requeue_after is not None:
        settings = context.deps.settings
        enqueue(context.deps.redis, app, issue, by=f"retry of {self.request.id}",
                stale_after=settings.task_time_limit, countdown=result.requeue_after)
    return result.summary
