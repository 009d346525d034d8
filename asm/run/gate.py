"""Who asked for this run: the issue's text as someone trusted vouched for it, or Untrusted."""

from __future__ import annotations

import json

from asm.deps import Deps
from asm.guard.trust import IssueHistory, OperatorVouch, Vouched, vouch
from asm.keys import IssueRef, vouched_key

# A refused issue is told why once a day, however often someone puts the label back.
UNTRUSTED_TOLD_SECONDS = 24 * 3600


def vouched_text(deps: Deps, issue: IssueRef, history: IssueHistory | None = None) -> Vouched:
    """The issue's text as someone trusted asked for it (a label, or the operator's `asm enqueue`), from its
    `history` (read from GitHub unless given).

    Raises Untrusted when nobody trusted did. Each person's permission is asked once per run.
    """
    raw = deps.redis.get(vouched_key(issue))
    operator = OperatorVouch(**json.loads(raw)) if raw else None
    permissions: dict[str, str] = {}

    def permission_of(login: str) -> str:
        if login not in permissions:
            permissions[login] = deps.github.permission(issue.repo, login)
        return permissions[login]

    return vouch(history or deps.github.history(issue), deps.settings.ready_label, deps.github.whoami(), permission_of,
                 deps.settings.trusted_permission, operator)
