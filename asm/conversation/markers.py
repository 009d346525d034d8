"""What asm remembers of a conversation, kept where the conversation is: in its own comments on GitHub.

Each reply asm writes on a pull request, its pull request's body and its questions on an issue end
with one HTML comment (hidden on GitHub, and always the last thing in the text) holding a small JSON
record: which remarks a run took up and which of those it did not finish, which commits asm pushed,
for which commits it ran a fix of the checks. The state survives Redis being emptied and a fleet
being rebuilt, and whoever reads it reads only comments by asm's own login: anyone can write a
comment that looks like asm's, nobody else can write one as asm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Only at the very end of a comment: asm writes its mark last, after any text a model wrote, so a mark
# a model was talked into writing (in notes, questions or a verdict) is never the one read.
_MARK = re.compile(r"<!-- asm-state: (\{[^\n]*\}) -->\s*\Z")


def mark(**state: object) -> str:
    """The hidden line that carries `state` (JSON values) at the end of asm's comment."""
    # `--` would end the HTML comment early; JSON of ids, shas and booleans never holds it, but be sure.
    return "<!-- asm-state: " + json.dumps(state, sort_keys=True).replace("--", "- -") + " -->"


def read_marks(body: str) -> list[dict[str, object]]:
    """The state record that ends one comment of asm's (a list of one), or none; what does not parse is ignored."""
    match = _MARK.search(body or "")
    if match is None:
        return []
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return []
    return [value] if isinstance(value, dict) else []


@dataclass(frozen=True)
class PullMemory:
    """What asm's own words on one pull request say it has done."""

    addressed: frozenset[str] = frozenset()  # remark keys a run of asm's took up ("review:12", "line:34")
    # Of those, the ones no run finished (it failed, stopped, or asked questions back): they start nothing
    # by themselves, and the next run a new request starts is given them again.
    owed: frozenset[str] = frozenset()
    pushed: frozenset[str] = frozenset()  # commits asm pushed to the branch
    ci_fixed: tuple[str, ...] = ()  # the head commits whose failing checks a fix run was made for, in order
    ci_stopped: frozenset[str] = frozenset()  # head commits where asm said it stops fixing checks
    replies: int = 0  # asm's replies on the pull request

    @classmethod
    def read(cls, bodies: Iterable[str]) -> PullMemory:
        """From the bodies of asm's own comments (and its pull request's body), oldest first."""
        addressed: set[str] = set()
        owed: set[str] = set()
        pushed: set[str] = set()
        fixed: list[str] = []
        stopped: set[str] = set()
        replies = 0
        for body in bodies:
            marks = read_marks(body)
            replies += bool(marks)
            for state in marks:
                taken = {str(key) for key in _list(state.get("addressed"))}
                unfinished = {str(key) for key in _list(state.get("owed"))} & taken
                addressed |= taken
                owed = (owed - taken) | unfinished  # a later run's ending is the word on what it took up
                pushed.update(str(sha) for sha in _list(state.get("pushed")))
                fixed.extend(str(sha) for sha in _list(state.get("ci_fix")))
                stopped.update(str(sha) for sha in _list(state.get("ci_stopped")))
        return cls(frozenset(addressed), frozenset(owed), frozenset(pushed), tuple(fixed), frozenset(stopped), replies)


def _list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
