"""The Celery app and its configuration; no business logic (tasks live in the top-level `tasks`)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click
from celery import Celery, signals

from asm.config import Settings, load_settings
from asm.errors import ConfigError
from asm.fleet.fair import PRIORITY_SEP, PRIORITY_STEPS

# asm checks ASM_TASK_TIME_LIMIT itself before every model call and stops cleanly. Celery's soft
# limit is the backstop for a run stuck inside one call; the hard limit kills what ignores even that
# (the scan then re-queues the orphan, at most MAX_ATTEMPTS times).
SOFT_LIMIT_GRACE_SECONDS = 120
HARD_LIMIT_GRACE_SECONDS = 240
# Unacked messages come back after this; it must exceed the hard limit or a live run gets a twin.
VISIBILITY_MARGIN_SECONDS = 300


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long, exactly-once workflows that Flower can watch."""
    hard_limit = settings.task_time_limit + HARD_LIMIT_GRACE_SECONDS
    # A list per priority step (asm.fleet.fair): a message with the priority:high label is taken first.
    transport = {"visibility_timeout": int(hard_limit + VISIBILITY_MARGIN_SECONDS),
                 "priority_steps": list(PRIORITY_STEPS), "sep": PRIORITY_SEP}
    schedule = importlib.import_module("beat_schedule").beat_schedule(settings.scan_interval)
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"retry_policy": {"timeout": 10.0}},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_time_limit + SOFT_LIMIT_GRACE_SECONDS,
        "task_time_limit": hard_limit,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
        "timezone": "UTC",
        "beat_schedule": schedule,
        "worker_hijack_root_logger": False,
    }


_settings: Settings | None = None


def use_settings(settings: Settings) -> None:
    """Make settings already loaded (by the `asm` command) this process's, and configure the app from them."""
    global _settings
    _settings = settings
    if app.configured:
        app.conf.update(celery_config(settings))


def process_settings() -> Settings:
    """This process's settings, loaded once: those handed to `use_settings`, else the environment's.

    A worker's pool processes are forked from its main process, and inherit what it loaded.
    A bad setting stops the process with one line naming the variable.
    """
    global _settings
    if _settings is None:
        try:
            _settings = load_settings()
        except ConfigError as problem:
            print(f"asm: {problem}", file=sys.stderr)
            raise SystemExit(2) from None
    return _settings


app = Celery("asm", include=["tasks.scan", "tasks.process_issue", "tasks.process_pull", "tasks.consider",
                                  "tasks.lifecycle"])
app.add_defaults(lambda: celery_config(process_settings()))


@app.on_after_configure.connect
def _expose_metrics(**_: Any) -> None:
    """Put asm's metrics into this process's Prometheus registry: Flower's /metrics serves it.

    Only a collector is registered (inert until scraped); Redis is reached at scrape time.
    """
    from functools import cache

    from asm.deps import redis_client
    from asm.observe.prometheus import install

    install(process_settings, cache(lambda: redis_client(process_settings().redis_url, patient=False)))


@signals.import_modules.connect
def _lock_flower(sender: Any = None, **_: Any) -> None:
    """`celery -A asm flower` serves nothing without a login, /metrics included.

    The login is Flower's own (--basic-auth, FLOWER_BASIC_AUTH, OAuth) when it has one, else
    ASM_FLOWER_AUTH, taken from asm's settings so that it never has to be on a command line. Flower
    imports the app's modules (this signal) while it builds its web app: after reading its options,
    before it listens. Celery re-raises what a receiver of this signal raises, so a failure here
    stops Flower rather than letting it start open.
    """
    context = click.get_current_context(silent=True)
    if sender is not app or context is None or context.info_name != "flower":
        return
    from flower.options import default_options as flower
    from flower.views.monitor import Metrics
    from tornado.web import authenticated

    settings = process_settings()
    if not any(flower.basic_auth or ()) and settings.flower_auth:
        flower.basic_auth = [settings.flower_auth]
    logins = [login.partition(":") for login in flower.basic_auth or () if login]
    if not all(user and password for user, _, password in logins):
        problem = "its basic auth is not user:password (a comma in it starts another login)"
    elif not (logins or flower.auth):
        problem = "set ASM_FLOWER_AUTH=user:password"
    else:
        problem = ""
    if problem:
        print(f"asm: Flower will not start without a login: {problem}", file=sys.stderr)
        raise SystemExit(2)
    # Flower exempts /metrics from its login so that Prometheus need not log in; asm's series there
    # name repositories and their spend, so asm's Flower asks the scraper for the login too.
    Metrics.get = authenticated(Metrics.get)
