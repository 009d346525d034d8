"""Who may ask asm for something: a person's permission on the repository, asked of GitHub.

A run asks afresh (once per person per run): it is about to act. The scan, which only decides
whether to queue a run, may remember an answer in Redis for a few minutes, so a busy pull request
does not cost a request per comment per scan; the run it queues checks again.
"""

from __future__ import annotations

from typing import Protocol

import redis

from asm.conversation.asks import Trusted
from asm.guard.trust import permits
from asm.keys import PREFIX

SCAN_MEMORY_SECONDS = 300


class Permissions(Protocol):
    def permission(self, repo: str, login: str) -> str: ...


def trusted_people(github: Permissions, repo: str, least: str, memory: redis.Redis[bytes] | None = None) -> Trusted:
    """Whether a login has `least` permission or more on `repo`; asked once per login (and remembered a
    few minutes in Redis when `memory` is given)."""
    known: dict[str, bool] = {}

    def trusted(login: str) -> bool:
        if login not in known:
            known[login] = permits(_permission(github, repo, login, memory), least)
        return known[login]

    return trusted


def _permission(github: Permissions, repo: str, login: str, memory: redis.Redis[bytes] | None) -> str:
    if memory is None:
        return github.permission(repo, login)
    key = f"{PREFIX}permission:{repo.lower()}:{login.lower()}"
    remembered = memory.get(key)
    if remembered is not None:
        return remembered.decode()
    permission = github.permission(repo, login)
    memory.set(key, permission, ex=SCAN_MEMORY_SECONDS)
    return permission
