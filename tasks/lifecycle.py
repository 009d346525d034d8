"""Worker process signals: prepare the main process before the pool forks, build each pool process's
clients once, announce it, say goodbye."""

from __future__ import annotations

from typing import Any

from billiard.process import current_process
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from asm.celery_app import process_settings
from asm.fleet import worker


@worker_init.connect
def prepare_main_process(sender: Any = None, **_: Any) -> None:
    worker.set_nodename(getattr(sender, "hostname", None) or "asm")
    worker.prepare_main(process_settings())


@worker_process_init.connect
def start_process(**_: Any) -> None:
    worker.start(process_settings(), getattr(current_process(), "index", None))


@worker_process_shutdown.connect
def stop_process(**_: Any) -> None:
    worker.stop()
