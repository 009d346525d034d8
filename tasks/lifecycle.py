"""Worker process signals: build each pool process's clients once, announce it, say goodbye."""

from __future__ import annotations

from typing import Any

from billiard.process import current_process
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from asm.fleet import worker


@worker_init.connect
def prepare_main_process(sender: Any = None, **_: Any) -> None:
    worker.set_nodename(getattr(sender, "hostname", None) or "asm")
    worker.harden_main()


@worker_process_init.connect
def start_process(**_: Any) -> None:
    worker.start(getattr(current_process(), "index", None))


@worker_process_shutdown.connect
def stop_process(**_: Any) -> None:
    worker.stop()
