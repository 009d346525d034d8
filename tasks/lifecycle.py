"""Worker process signals: prepare the main process before the pool forks, build each pool process's
clients once, announce it, say goodbye; and around every task, let the next run in turn into the queue."""

from __future__ import annotations

from typing import Any

from billiard.process import current_process
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init, worker_process_shutdown

from asm.celery_app import app, process_settings
from asm.fleet import worker
from asm.fleet.fair import publish, release


@worker_init.connect
def prepare_main_process(sender: Any = None, **_: Any) -> None:
    worker.set_nodename(getattr(sender, "hostname", None) or "asm")
    worker.prepare_main(process_settings())


@worker_process_init.connect
def start_process(**_: Any) -> None:
    """Build the process's clients; make its fairness settings the fleet's, and fill the queue from the lines."""
    settings = process_settings()
    context = worker.start(settings, getattr(current_process(), "index", None))
    publish(context.deps.redis, settings.repo_weights, settings.max_running_per_repo)
    release(context.deps.redis, app)


@task_prerun.connect
def took_a_message(**_: Any) -> None:
    """A message left the Celery queue: its place goes to the next run in turn (asm.fleet.fair)."""
    release(worker.current(process_settings()).deps.redis, app)


@task_postrun.connect
def ended_a_task(**_: Any) -> None:
    """A task ended: a run's repository may be under its limit again, a scan may have queued more."""
    release(worker.current(process_settings()).deps.redis, app)


@worker_process_shutdown.connect
def stop_process(**_: Any) -> None:
    worker.stop()
