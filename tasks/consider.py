"""asm.consider: look again at a pull request or issue a webhook said changed; the work is `asm.webhook.intake.look`."""

from __future__ import annotations

from asm.celery_app import app, process_settings
from asm.errors import AsmError
from asm.fleet import worker
from asm.keys import IssueRef
from asm.webhook.events import Target
from asm.webhook.intake import CONSIDER, look


@app.task(name=CONSIDER)
def consider(repo: str, number: int, is_pull: bool) -> str:
    """Queue the run `repo#number` asks for now, if any, as the scan would; what came of it in one line."""
    deps = worker.current(process_settings()).deps
    target = Target(IssueRef.parse(repo, number), bool(is_pull))
    try:
        return look(deps.github, deps.redis, app, deps.settings, target)
    except AsmError as problem:  # the scan looks again within ASM_SCAN_INTERVAL
        return f"{target.ref}: could not look ({problem}); the scan will"
