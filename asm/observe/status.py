"""What each worker is doing, kept in Redis so `asm status` can show the fleet from anywhere."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from asm.keys import HISTORY, PAUSED, QUEUED, RUNNING, WORKERS, IssueRef, worker_key

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
LOST_AFTER_SECONDS = 30.0
HISTORY_LENGTH = 1000


class WorkerStatus:
    """One worker slot's status hash, with a heartbeat thread while the process lives."""

    def __init__(self, client: redis.Redis[bytes], worker: str, host: str, pid: int, sandbox: str = "") -> None:
        self.client = client
        self.worker = worker
        self.key = worker_key(worker)
        self.host = host
        self.pid = pid
        self.sandbox = sandbox  # how its tool commands are confined, in words
        self._stop = threading.Event()
        self.running_entry: dict[str, Any] = {}  # this slot's issue in the RUNNING hash

    def start(self) -> None:
        """Announce the worker (keeping its earlier totals) and start beating."""
        now = time.time()
        pipe = self.client.pipeline()
        pipe.sadd(WORKERS, self.worker)
        pipe.hset(self.key, mapping={"state": "idle", "issue": "", "stage": "", "host": self.host,
                                     "pid": self.pid, "started_at": now, "heartbeat": now, "sandbox": self.sandbox})
        pipe.hsetnx(self.key, "completed", 0)
        pipe.hsetnx(self.key, "cost_usd", 0)
        pipe.execute()
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.client.hset(self.key, "heartbeat", time.time())
            except redis.RedisError as problem:  # Redis away for a moment: the next beat will do
                log.debug("heartbeat failed: %s", problem)

    def working(self, issue: IssueRef) -> None:
        now = time.time()
        self.running_entry = {"worker": self.worker, "stage": "claimed", "revision": 0, "started_at": now}
        pipe = self.client.pipeline()
        pipe.hset(self.key, mapping={"state": "working", "issue": issue.key, "stage": "claimed", "heartbeat": now})
        pipe.hset(RUNNING, issue.key, json.dumps(self.running_entry))
        pipe.execute()

    def entered_stage(self, issue: IssueRef, stage: str, revision: int) -> None:
        self.running_entry.update(stage=stage, revision=revision)
        pipe = self.client.pipeline()
        pipe.hset(self.key, mapping={"stage": stage, "heartbeat": time.time()})
        pipe.hset(RUNNING, issue.key, json.dumps(self.running_entry))
        pipe.execute()

    def finished(self, issue: IssueRef, summary: str, completed: bool, seconds: float, cost_usd: float,
                 stage_seconds: dict[str, float]) -> None:
        """The run ended: back to idle, its one-line summary added to the history."""
        now = time.time()
        # "outcome" is the history's name for the summary line (`asm status --json` shows it so).
        record = {"issue": issue.key, "worker": self.worker, "outcome": summary, "completed": completed,
                  "started_at": now - seconds, "finished_at": now, "seconds": seconds, "cost_usd": cost_usd,
                  "stage_seconds": {stage: round(value, 3) for stage, value in stage_seconds.items()}}
        pipe = self.client.pipeline()
        pipe.hset(self.key, mapping={"state": "idle", "issue": "", "stage": "",
                                     "heartbeat": now, "last_issue": issue.key})
        if completed:
            pipe.hincrby(self.key, "completed", 1)
        pipe.hdel(RUNNING, issue.key)
        pipe.lpush(HISTORY, json.dumps(record))
        pipe.ltrim(HISTORY, 0, HISTORY_LENGTH - 1)
        pipe.execute()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.client.hset(self.key, mapping={"state": "stopped", "issue": "", "stage": ""})
        except redis.RedisError:
            pass


@dataclass(frozen=True)
class WorkerView:
    worker: str
    state: str
    issue: str
    stage: str
    completed: int
    cost_usd: float
    started_at: float
    heartbeat: float
    host: str
    sandbox: str = ""

    @property
    def unconfined(self) -> bool:
        """Whether its tool commands run without a sandbox (ASM_SANDBOX=off)."""
        return self.sandbox.startswith("off")

    def shown_state(self, now: float) -> str:
        """`lost` when a live-looking worker stopped beating."""
        if self.state not in ("stopped",) and now - self.heartbeat > LOST_AFTER_SECONDS:
            return "lost"
        return self.state


def read_workers(client: redis.Redis[bytes]) -> list[WorkerView]:
    ids = sorted(member.decode() for member in client.smembers(WORKERS))
    pipe = client.pipeline()
    for worker in ids:
        pipe.hgetall(worker_key(worker))
    views = []
    for worker, raw in zip(ids, pipe.execute(), strict=True):
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        if not fields:
            continue
        views.append(WorkerView(
            worker=worker, state=fields.get("state", "?"), issue=fields.get("issue", ""),
            stage=fields.get("stage", ""), completed=int(fields.get("completed", 0)),
            cost_usd=float(fields.get("cost_usd", 0)), started_at=float(fields.get("started_at", 0)),
            heartbeat=float(fields.get("heartbeat", 0)), host=fields.get("host", ""),
            sandbox=fields.get("sandbox", ""),
        ))
    return views


def read_hash_of_json(client: redis.Redis[bytes], key: str) -> dict[str, dict[str, Any]]:
    return {k.decode(): json.loads(v) for k, v in client.hgetall(key).items()}


def read_queued(client: redis.Redis[bytes]) -> dict[str, dict[str, Any]]:
    return read_hash_of_json(client, QUEUED)


def read_running(client: redis.Redis[bytes]) -> dict[str, dict[str, Any]]:
    return read_hash_of_json(client, RUNNING)


def read_history(client: redis.Redis[bytes], limit: int = HISTORY_LENGTH) -> list[dict[str, Any]]:
    """Finished runs, newest first."""
    return [json.loads(raw) for raw in client.lrange(HISTORY, 0, limit - 1)]


def paused_reason(client: redis.Redis[bytes]) -> str | None:
    value = client.get(PAUSED)
    return value.decode() if value else None
