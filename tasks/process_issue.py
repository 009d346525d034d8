"""asm.process_issue: one issue, one delivery; the work is `asm.run.issue_run.process_issue`."""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import BackendError, SoftTimeLimitExceeded
from kombu.exceptions import KombuError
from redis import RedisError

from asm.celery_app import app, process_settings
from asm.fleet import worker
from asm.fleet.queue import PROCESS_ISSUE, enqueue
from asm.keys import IssueRef
from asm.observe.progress import OnProgress, Progress
from asm.run.endings import DeliveryResult
from asm.run.issue_run import process_issue as work_issue

log = logging.getLogger(__name__)


@app.task(name="asm.process_issue", bind=True)
def process_issue(self: Task, repo: str, number: int) -> str:
    """Work `repo#number` if this delivery wins the claim; returns the outcome in one line."""
    context = worker.current(process_settings())
    issue = IssueRef.parse(repo, number)
    result = work_issue(context.deps, context.status, issue, flower_progress(self, issue, context.status.worker),
                        time_up=(SoftTimeLimitExceeded,))
    return finish(self, issue, result, PROCESS_ISSUE)


def flower_progress(task: Task, ref: IssueRef, slot: str) -> OnProgress:
    """What a run's progress does in Flower: a task event per update, the stage in the result backend."""

    def show_in_flower(progress: Progress) -> None:
        # What Flower shows is a view: the broker or the result backend failing for a moment (a Redis
        # restart outlasts their few retries) must not end the run, which rides it out on its own clients.
        try:
            send_progress(progress)
        except (KombuError, BackendError, RedisError, OSError) as problem:
            log.warning("%s: progress not shown in Flower (%s)", ref, problem)

    def send_progress(progress: Progress) -> None:
        # Field names must not shadow Flower's own task fields (`worker` is an object there).
        meta = {"issue": progress.issue, "stage": progress.stage, "revision": progress.revision,
                "spent_usd": round(progress.spent_usd, 4), "slot": slot}
        # Flower shows the stage as the task's state, and, until the real result replaces it, the
        # progress line in its Result column (Flower's API only passes on Celery's own task fields).
        progress_line = (f"{progress.issue}: {progress.stage}, revision {progress.revision}, "
                         f"${progress.spent_usd:.4f} so far")
        task.send_event(f"task-{progress.stage}", result=progress_line, **meta)
        # The result backend keeps the stage for `AsyncResult`, written once a stage, not once a call.
        if progress.new_stage:
            task.update_state(state=progress.stage.upper(), meta=meta)

    return show_in_flower


def finish(task: Task, ref: IssueRef, result: DeliveryResult, name: str) -> str:
    """Queue the delivery again when it asked to wait (the model API resting); its one-line summary."""
    if result.requeue_after is not None:
        deps = worker.current(process_settings()).deps
        enqueue(deps.redis, app, ref, by=f"retry of {task.request.id}", stale_after=deps.settings.task_time_limit,
                countdown=result.requeue_after, task=name)
    return result.summary
