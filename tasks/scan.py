"""asm.scan: queue every ready (or orphaned) issue of ASM_REPOS; the work is `asm.fleet.scan.scan`."""

from __future__ import annotations

from asm.celery_app import app, process_settings
from asm.fleet import worker
from asm.fleet.fair import publish
from asm.fleet.scan import FollowRules
from asm.fleet.scan import scan as scan_repos


@app.task(name="asm.scan")
def scan() -> str:
    """One scan; returns what it queued in one line."""
    deps = worker.current(process_settings()).deps
    settings = deps.settings
    publish(deps.redis, settings.repo_weights, settings.max_running_per_repo)
    result = scan_repos(deps.github, deps.redis, app, settings.repos, settings.ready_label,
                        stale_after=settings.task_time_limit, rules=FollowRules.of(settings),
                        interval=settings.scan_interval)
    if result.held:
        return f"queued nothing: {result.held}"
    queued = [str(item.issue) for item in result.found if item.task_id]
    summary = f"queued {len(queued)} of {len(result.found)} found" + (f": {', '.join(queued)}" if queued else "")
    summary += f"; {len(result.unchanged)} repositories unchanged (every answer a 304)"
    if result.paced:
        summary += f"; paced, {len(result.skipped)} left for the next scan: {result.paced}"
    failed = "; ".join(f"{repo}: {why}" for repo, why in result.failed.items())
    return summary + (f"; could not scan {failed}" if failed else "")
