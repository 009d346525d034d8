"""The fleet at a glance: a snapshot of Redis for `asm status --json`, and the table people read."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import redis

from asm.config import Settings
from asm.keys import fleet_day_spend_key, repo_day_spend_key, utc_day
from asm.observe.display import duration_text
from asm.observe.status import (
    paused_reason,
    read_history,
    read_queued,
    read_running,
    read_workers,
)

ICONS = {"working": "🔵", "idle": "⚪", "failed": "🔴", "stopped": "⚫", "lost": "❓"}
RULE = "=" * 100


def snapshot(client: redis.Redis, settings: Settings, now: float | None = None) -> dict[str, Any]:
    """Everything `asm status` knows, as plain data."""
    now = time.time() if now is None else now
    day = utc_day()
    workers = []
    for view in read_workers(client):
        workers.append({
            "worker": view.worker, "state": view.shown_state(now), "issue": view.issue, "stage": view.stage,
            "completed": view.completed, "cost_usd": round(view.cost_usd, 6),
            "uptime_seconds": round(now - view.started_at, 1) if view.started_at else None,
            "heartbeat_age_seconds": round(now - view.heartbeat, 1) if view.heartbeat else None,
            "host": view.host, "sandbox": view.sandbox,
        })
    repos = sorted(set(settings.repos))
    repo_spend = [float(v or 0) for v in client.mget([repo_day_spend_key(r, day) for r in repos])] if repos else []
    history = read_history(client, 50)
    return {
        "time": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "paused": paused_reason(client),
        "workers": workers,
        "queued": read_queued(client),
        "running": read_running(client),
        "recent": history,
        "spend": {
            "day": day,
            "fleet_today_usd": round(float(client.get(fleet_day_spend_key(day)) or 0), 6),
            "per_repo_today_usd": {repo: round(usd, 6) for repo, usd in zip(repos, repo_spend)},
            "per_worker_usd": {w["worker"]: w["cost_usd"] for w in workers},
            "caps_usd": {"per_issue": settings.max_cost_usd, "per_repo_day": settings.max_cost_per_repo_day_usd,
                         "fleet_day": settings.max_cost_per_day_usd},
        },
        "unsandboxed": sorted(w["worker"] for w in workers
                              if w["sandbox"].startswith("off") and w["state"] not in ("stopped", "lost")),
        "totals": {
            "workers": len(workers),
            "working": sum(1 for w in workers if w["state"] == "working"),
            "completed": sum(w["completed"] for w in workers),
            "cost_usd": round(sum(w["cost_usd"] for w in workers), 6),
        },
    }


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{duration_text(seconds)} ago"


def render(snap: dict[str, Any]) -> str:
    """The status table, in the shape of the original guide's, with stage, uptime and heartbeat."""
    clock = snap["time"][11:19]
    lines = [RULE, f"ASM FLEET STATUS - {clock} UTC", RULE]
    if snap["paused"]:
        lines.append(f"⏸  PAUSED: {snap['paused']}  (clear with `asm resume`)")
    if snap["unsandboxed"]:
        lines.append(f"⚠  UNSANDBOXED: {', '.join(snap['unsandboxed'])} run the agents' tool commands "
                     "unconfined (ASM_SANDBOX=off)")
    if not snap["workers"]:
        lines.append("no workers have reported yet (start one: celery -A asm worker -c 5)")
    for w in snap["workers"]:
        doing = f"{w['issue']} [{w['stage']}]" if w["issue"] else "-"
        lines.append(
            f"{ICONS.get(w['state'], '?')} {w['worker']:<24} | {w['state']:<8} | {doing:<34} | "
            f"done {w['completed']:>3} | ${w['cost_usd']:>8.4f} | up {duration_text(w['uptime_seconds'] or 0):>8} | "
            f"beat {_age(w['heartbeat_age_seconds'])} | sandbox {w['sandbox'] or '?'}"
        )
    lines.append(RULE)
    for key, entry in sorted(snap["running"].items()):
        lines.append(f"running  {key:<30} {entry.get('worker', '?'):<24} stage {entry.get('stage', '?')}"
                     f" (revision {entry.get('revision', 0)})")
    for key, entry in sorted(snap["queued"].items(), key=lambda item: item[1].get("queued_at", 0)):
        lines.append(f"queued   {key:<30} by {entry.get('by', '?')}")
    spend, totals = snap["spend"], snap["totals"]
    caps = spend["caps_usd"]
    repo_text = ", ".join(f"{repo} ${usd:.4f}/{caps['per_repo_day']:.2f}"
                          for repo, usd in spend["per_repo_today_usd"].items()) or "-"
    lines += [
        f"workers {totals['workers']} ({totals['working']} working) | completed {totals['completed']} | "
        f"queued {len(snap['queued'])} | running {len(snap['running'])} | cost ${totals['cost_usd']:.4f}",
        f"today ({spend['day']} UTC): fleet ${spend['fleet_today_usd']:.4f} of ${caps['fleet_day']:.2f} cap | "
        f"per repo: {repo_text} | per issue cap ${caps['per_issue']:.2f}",
        RULE,
    ]
    return "\n".join(lines)
