"""A worker process's life: its identity, its clients and its status, built once when it starts.

The settings come from the caller (the Celery app loads them once per process); the clients are
built by `asm.deps`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from asm.config import SECRET_VARIABLES, Settings
from asm.deps import Deps, build, import_model_sdk, tool_jail
from asm.errors import SandboxUnavailable
from asm.guard.redaction import RedactingFilter
from asm.observe.status import WorkerStatus

log = logging.getLogger(__name__)
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class WorkerContext:
    """What a worker process works issues with: its clients and its slot's status."""

    deps: Deps
    status: WorkerStatus


_current: WorkerContext | None = None
_nodename = f"asm@{socket.gethostname()}"


def set_nodename(nodename: str) -> None:
    """The Celery node name (`-n`), learnt in the parent before the pool forks."""
    global _nodename
    _nodename = nodename


def worker_id(slot: int | None) -> str:
    """`<node>-<slot>`: one id per concurrency slot, stable across restarts, unique in the fleet."""
    return f"{_nodename}-{(slot or 0) + 1}"


def harden_process() -> None:
    """Keep other processes of this user (tool commands included) out of /proc/<pid>/environ and memory."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


def prepare_main(settings: Settings) -> None:
    """In the worker's main process, before the pool forks: the same protection, the sandbox check,
    and the model SDK imported once for every pool process to inherit.

    A worker that cannot confine tool commands does not start, unless ASM_SANDBOX=off says so.
    """
    harden_process()
    dotenv = Path(".env")
    if dotenv.is_file() and dotenv.stat().st_mode & 0o077:
        log.warning(".env can be read by other users: chmod 600 .env")
    check_sandbox(settings)
    import_model_sdk()


def check_sandbox(settings: Settings) -> None:
    """Stop the worker (exit status 2, one line) when tool commands cannot be confined as set."""
    confinement = tool_jail(settings)
    if not confinement.confined:
        log.warning("ASM_SANDBOX=off: the agents' tool commands run UNCONFINED on this machine, as %s, with "
                    "its network, its processes and every file that user can read; `asm status` shows it",
                    confinement.tool_user or "the worker's own user")
        return
    try:
        confinement.check()
    except SandboxUnavailable as problem:
        print(f"asm: the worker will not start: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if not confinement.network and shutil.which("slirp4netns") is None:
        # Not a reason to stop: most repositories have no setup script, and one that has says why it failed.
        log.warning("slirp4netns is not installed: a repository's .asm/setup.sh, which runs with the network, "
                    "will fail on this machine (Debian/Ubuntu: apt-get install slirp4netns)")
    log.info("tool commands run in %s", confinement.describe())


def configure_logging(level: str, secrets: tuple[str, ...]) -> None:
    """asm's level, quiet HTTP clients, and no secret in any line, whoever logs it."""
    logging.getLogger("asm").setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "urllib3", "github"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    redaction = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redaction)


def start(settings: Settings, slot: int | None) -> WorkerContext:
    """Build this process's clients and announce it; called once per pool process."""
    global _current
    harden_process()
    configure_logging(settings.log_level, settings.secrets)
    deps = build(settings)
    # The clients hold what they need; no child process (git, a tool command) inherits a secret.
    for variable in SECRET_VARIABLES:
        os.environ.pop(variable, None)
    status = WorkerStatus(deps.redis, worker_id(slot), socket.gethostname(), os.getpid(), deps.jail.describe())
    status.start()
    _current = WorkerContext(deps, status)
    log.info("worker %s ready", status.worker)
    return _current


def current(settings: Settings) -> WorkerContext:
    """This process's context, started on first use (the solo and threads pools have no process init)."""
    return _current or start(settings, None)


def stop() -> None:
    if _current is not None:
        _current.status.stop()
