"""The fleet at one moment, read from Redis: the one view `asm status` renders, `asm status --json`
prints and the Prometheus collector turns into gauges."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from asm.config import Settings
from asm.keys import fleet_day_spend_key, repo_day_spend_key, utc_day
from asm.observe.status import paused_reason, read_history, read_queued, read_running, read_workers
from asm.ratelimit import RateLimit, read_limits

RECENT_RUNS = 50


@dataclass(frozen=True)
class WorkerRow:
    """One worker slot as people see it."""

    worker: str
    state: str  # idle, working, stopped, or lost (no heartbeat lately)
    issue: str
    stage: str
    completed: int
    cost_usd: float
    uptime_seconds: float | None
    heartbeat_age_seconds: float | None
    host: str
    sandbox: str  # how its tool commands are confined, in words

    @property
    def unconfined(self) -> bool:
        """Its tool commands run without a sandbox (ASM_SANDBOX=off), and it is still about."""
        return self.sandbox.startswith("off") and self.state not in ("stopped", "lost")


@dataclass(frozen=True)
class SpendToday:
    """Today's spend (UTC) against the caps."""

    day: str
    fleet_usd: float
    per_repo_usd: Mapping[str, float]
    cap_per_issue: float
    cap_per_repo_day: float
    cap_fleet_day: float

    @property
    def caps(self) -> dict[str, float]:
        return {"per_issue": self.cap_per_issue, "per_repo_day": self.cap_per_repo_day,
                "fleet_day": self.cap_fleet_day}


@dataclass(frozen=True)
class FleetState:
    """Workers, queued and running issues, recent runs and today's spend, as of `at`."""

    at: float
    paused: str | None
    workers: tuple[WorkerRow, ...]
    queued: Mapping[str, Mapping[str, Any]]  # issue key -> {task_id, queued_at, by}
    running: Mapping[str, Mapping[str, Any]]  # issue key -> {worker, stage, revision, started_at}
    recent: tuple[Mapping[str, Any], ...]  # finished runs, newest first
    spend: SpendToday
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)  # GitHub's budgets as the scan last saw them

    @property
    def time_text(self) -> str:
        return datetime.fromtimestamp(self.at, timezone.utc).isoformat(timespec="seconds")

    @property
    def unsandboxed(self) -> list[str]:
        return sorted(w.worker for w in self.workers if w.unconfined)

    def workers_in(self, state: str) -> int:
        return sum(1 for w in self.workers if w.state == state)

    @property
    def completed(self) -> int:
        return sum(w.completed for w in self.workers)

    @property
    def cost_usd(self) -> float:
        return round(sum(w.cost_usd for w in self.workers), 6)

    def as_json(self) -> dict[str, Any]:
        """The shape `asm status --json` prints for scripts."""
        workers = [{
            "worker": w.worker, "state": w.state, "issue": w.issue, "stage": w.stage, "completed": w.completed,
            "cost_usd": w.cost_usd, "uptime_seconds": w.uptime_seconds,
            "heartbeat_age_seconds": w.heartbeat_age_seconds, "host": w.host, "sandbox": w.sandbox,
        } for w in self.workers]
        return {
            "time": self.time_text,
            "paused": self.paused,
            "workers": workers,
            "queued": dict(self.queued),
            "running": dict(self.running),
            "recent": list(self.recent),
            "spend": {
                "day": self.spend.day,
                "fleet_today_usd": self.spend.fleet_usd,
                "per_repo_today_usd": dict(self.spend.per_repo_usd),
                "per_worker_usd": {w.worker: w.cost_usd for w in self.workers},
                "caps_usd": self.spend.caps,
            },
            "unsandboxed": self.unsandboxed,
            "github_rate_limit": {resource: {
                "limit": budget.limit, "remaining": budget.remaining, "used": budget.used,
                "reset": budget.reset, "reset_at": _iso(budget.reset), "seen_at": _iso(budget.seen_at),
                "current": budget.current(self.at),
            } for resource, budget in sorted(self.rate_limits.items())},
            "totals": {"workers": len(self.workers), "working": self.workers_in("working"),
                       "completed": self.completed, "cost_usd": self.cost_usd},
        }


def read_fleet_state(client: redis.Redis[bytes], settings: Settings, now: float | None = None) -> FleetState:
    """Everything `asm status` knows, read from Redis now."""
    now = time.time() if now is None else now
    day = utc_day()
    workers = tuple(WorkerRow(
        worker=view.worker, state=view.shown_state(now), issue=view.issue, stage=view.stage,
        completed=view.completed, cost_usd=round(view.cost_usd, 6),
        uptime_seconds=round(now - view.started_at, 1) if view.started_at else None,
        heartbeat_age_seconds=round(now - view.heartbeat, 1) if view.heartbeat else None,
        host=view.host, sandbox=view.sandbox,
    ) for view in read_workers(client))
    repos = sorted(set(settings.repos))
    repo_spend = [float(v or 0) for v in client.mget([repo_day_spend_key(r, day) for r in repos])] if repos else []
    spend = SpendToday(
        day=day, fleet_usd=round(float(client.get(fleet_day_spend_key(day)) or 0), 6),
        per_repo_usd={repo: round(usd, 6) for repo, usd in zip(repos, repo_spend, strict=True)},
        cap_per_issue=settings.max_cost_usd, cap_per_repo_day=settings.max_cost_per_repo_day_usd,
        cap_fleet_day=settings.max_cost_per_day_usd,
    )
    return FleetState(at=now, paused=paused_reason(client), workers=workers, queued=read_queued(client),
                      running=read_running(client), recent=tuple(read_history(client, RECENT_RUNS)), spend=spend,
                      rate_limits=read_limits(client))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds")
