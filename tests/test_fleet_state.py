"""The fleet's state, read once from a real Redis: the table `asm status` prints, the JSON scripts
read and the Prometheus gauges all come from the same `FleetState`."""

from __future__ import annotations

import json
import os

import redis
from prometheus_client import CollectorRegistry, generate_latest

from asm.config import load_settings
from asm.fleet.queue import enqueue
from asm.keys import PAUSED, IssueRef, fleet_day_spend_key, repo_day_spend_key, utc_day
from asm.observe.dashboard import render
from asm.observe.fleet_state import read_fleet_state
from asm.observe.prometheus import FleetCollector
from asm.observe.status import WorkerStatus

REPO = "acme/shop"


class Sender:
    """Sends nothing: `enqueue` only needs something that takes the task."""

    def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None,
                  priority: int | None = None) -> object:
        return task_id


def test_the_table_the_json_and_the_gauges_show_one_state(redis_client: redis.Redis) -> None:
    settings = load_settings({"ASM_REPOS": REPO, "ASM_MAX_COST_PER_DAY_USD": "50"}, dotenv=None)
    working = WorkerStatus(redis_client, "w@host-1", "host", os.getpid(), "bwrap (network off)")
    working.start()
    working.working(IssueRef(REPO, 1))
    idle = WorkerStatus(redis_client, "w@host-2", "host", os.getpid(), "off (unconfined)")
    idle.start()
    enqueue(redis_client, Sender(), IssueRef(REPO, 2), by="test", stale_after=600)
    redis_client.set(repo_day_spend_key(REPO, utc_day()), 0.25)
    redis_client.set(fleet_day_spend_key(utc_day()), 0.25)
    redis_client.set(PAUSED, "the model account is out of credit")

    state = read_fleet_state(redis_client, settings)
    registry = CollectorRegistry()
    registry.register(FleetCollector(lambda: settings, lambda: redis_client))
    gauges = generate_latest(registry).decode()
    shown = json.loads(json.dumps(state.as_json()))
    table = render(state)

    assert (state.workers_in("working"), state.workers_in("idle")) == (1, 1)
    assert 'asm_workers{state="working"} 1.0' in gauges and 'asm_workers{state="idle"} 1.0' in gauges
    assert shown["totals"]["working"] == 1 and "w@host-1" in table and f"{REPO}#1 [claimed]" in table
    assert list(state.queued) == [f"{REPO}#2"] == list(shown["queued"])
    assert "asm_queued_issues 1.0" in gauges and f"queued   {REPO}#2" in table
    assert list(state.running) == [f"{REPO}#1"] and "asm_running_issues 1.0" in gauges
    assert state.paused and "asm_paused 1.0" in gauges and "PAUSED: the model account" in table
    assert shown["spend"]["per_repo_today_usd"] == {REPO: 0.25}
    assert f'asm_spend_today_usd{{scope="{REPO}"}} 0.25' in gauges
    assert shown["spend"]["caps_usd"]["fleet_day"] == 50.0 and 'asm_spend_cap_usd{cap="fleet_day"} 50.0' in gauges
    assert state.unsandboxed == ["w@host-2"] == shown["unsandboxed"] and "UNSANDBOXED: w@host-2" in table
    working.stop()
    idle.stop()
