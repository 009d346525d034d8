"""`asm status`: the fleet's state as the table people read."""

from __future__ import annotations

from datetime import datetime, timezone

from asm.observe.display import duration_text
from asm.observe.fleet_state import FleetState

ICONS = {"working": "🔵", "idle": "⚪", "failed": "🔴", "stopped": "⚫", "lost": "❓"}
RULE = "=" * 100


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{duration_text(seconds)} ago"


def render(state: FleetState) -> str:
    """The status table, in the shape of the original guide's, with stage, uptime and heartbeat."""
    lines = [RULE, f"ASM FLEET STATUS - {state.time_text[11:19]} UTC", RULE]
    if state.paused:
        lines.append(f"⏸  PAUSED: {state.paused}  (clear with `asm resume`)")
    if state.unsandboxed:
        lines.append(f"⚠  UNSANDBOXED: {', '.join(state.unsandboxed)} run the agents' tool commands "
                     "unconfined (ASM_SANDBOX=off)")
    if not state.workers:
        lines.append("no workers have reported yet (start one: celery -A asm worker -c 5)")
    for w in state.workers:
        doing = f"{w.issue} [{w.stage}]" if w.issue else "-"
        lines.append(
            f"{ICONS.get(w.state, '?')} {w.worker:<24} | {w.state:<8} | {doing:<34} | "
            f"done {w.completed:>3} | ${w.cost_usd:>8.4f} | up {duration_text(w.uptime_seconds or 0):>8} | "
            f"beat {_age(w.heartbeat_age_seconds)} | sandbox {w.sandbox or '?'}"
        )
    lines.append(RULE)
    for key, entry in sorted(state.running.items()):
        lines.append(f"running  {key:<30} {entry.get('worker', '?'):<24} stage {entry.get('stage', '?')}"
                     f" (revision {entry.get('revision', 0)})")
    for key, entry in sorted(state.queued.items(), key=lambda item: item[1].get("queued_at", 0)):
        lines.append(f"queued   {key:<30} by {entry.get('by', '?')}")
    spend = state.spend
    repo_text = ", ".join(f"{repo} ${usd:.4f}/{spend.cap_per_repo_day:.2f}"
                          for repo, usd in spend.per_repo_usd.items()) or "-"
    lines += [
        f"workers {len(state.workers)} ({state.workers_in('working')} working) | completed {state.completed} | "
        f"queued {len(state.queued)} | running {len(state.running)} | cost ${state.cost_usd:.4f}",
        f"today ({spend.day} UTC): fleet ${spend.fleet_usd:.4f} of ${spend.cap_fleet_day:.2f} cap | "
        f"per repo: {repo_text} | per issue cap ${spend.cap_per_issue:.2f}",
        rate_limit_text(state),
        RULE,
    ]
    return "\n".join(lines)


def rate_limit_text(state: FleetState) -> str:
    """GitHub's budgets left and when they come back, as the last scan saw them."""
    if not state.rate_limits:
        return "GitHub rate limit: not seen yet (the scan records it)"
    parts = []
    for resource, budget in sorted(state.rate_limits.items()):
        if not budget.current(state.at):
            parts.append(f"{resource} {budget.limit:,} (reset since seen: whole again)")
            continue
        at = datetime.fromtimestamp(budget.reset, timezone.utc).strftime("%H:%M UTC")
        parts.append(f"{resource} {budget.remaining:,} of {budget.limit:,} left, resets {at} "
                     f"(in {duration_text(budget.seconds_to_reset(state.at))})")
    seen = max(budget.seen_at for budget in state.rate_limits.values())
    return f"GitHub rate limit: {' | '.join(parts)} | seen {_age(state.at - seen)}"
