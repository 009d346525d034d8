"""asm.scan: queue every ready (or orphaned) issue of ASM_REPOS; the work is `asm.scan.scan`."""

from __future__ import annotations

from asm import worker
from asm.celery_app import app
from asm.scan import scan as scan_repos


@app.task(name="asm.scan")
def scan() -> str:
    """One scan; returns what it queued in one line."""
    deps = worker.current().deps
    settings = deps.settings
    found = scan_repos(deps.github, deps.redis, app, settings.repos, settings.ready_label,
                       stale_after=settings.task_time_limit)
    queued = [str(item.issue) for item in found if item.task_id]
    return f"queued {len(queued)} of {len(found)} found" + (f": {', '.join(queued)}" if queued else "")
