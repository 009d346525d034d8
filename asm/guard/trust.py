"""Who asked: the permission gate on an issue, and the text of it someone trusted vouched for.

asm acts only for users with ASM_TRUSTED_PERMISSION or more on the repository. For an issue that
means: the last person to apply the ready label (asm's own label moves aside) has that permission,
or the operator queued it with `asm enqueue`. The text given to the model is the text as it stood
then, plus later edits by trusted users, never an edit by someone below that permission: an
author cannot change the request after a maintainer approved it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from asm.config import PERMISSIONS
from asm.errors import Untrusted

LEVELS = ("none", *PERMISSIONS)  # weakest first: none, read, triage, write, maintain, admin


def permits(permission: str, least: str) -> bool:
    """Whether a repository permission is at least `least` (unknown ones count as none)."""
    rank = LEVELS.index(permission) if permission in LEVELS else 0
    return rank >= LEVELS.index(least)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Version:
    """One version of an issue's title or body: the text, when it was saved and by whom."""

    text: str | None  # None: GitHub no longer shows it (a deleted revision)
    at: str  # GitHub's ISO timestamp, which sorts as text
    by: str | None  # None: a deleted account
    original: bool = False  # as the issue was opened, before any label could be applied


@dataclass(frozen=True)
class Labelled:
    """One application of a label."""

    label: str
    at: str
    by: str | None


@dataclass(frozen=True)
class IssueHistory:
    """What GitHub says was done to an issue's text and labels, oldest first."""

    titles: tuple[Version, ...]
    bodies: tuple[Version, ...]
    labels: tuple[Labelled, ...]


@dataclass(frozen=True)
class OperatorVouch:
    """`asm enqueue`: the operator vouched for the issue's text as it was when they queued it."""

    title_digest: str
    body_digest: str


@dataclass(frozen=True)
class Vouched:
    """The issue as someone trusted asked for it, and whose later edits were left out."""

    title: str
    body: str
    by: str
    left_out: tuple[str, ...] = ()


def vouch(history: IssueHistory, ready_label: str, me: str, permission_of: Callable[[str], str], least: str,
          operator: OperatorVouch | None = None) -> Vouched:
    """The title and body a trusted user stands behind; Untrusted, saying why, when there are none."""
    applied = [event for event in history.labels if event.label.lower() == ready_label.lower() and event.by != me]
    last = applied[-1] if applied else None
    labelled_at = None
    if last is not None and last.by is not None and permits(permission_of(last.by), least):
        labelled_at = last.at
    if labelled_at is None and operator is None:
        raise Untrusted(_who_may_label(last, ready_label, permission_of, least))

    def trusted(version: Version, operator_digest: str | None) -> bool:
        if version.text is None:
            return False
        if labelled_at is not None and (version.original or version.at < labelled_at):
            return True  # in the text the labeller saw (an edit in the same second is not)
        if operator_digest is not None and digest(version.text) == operator_digest:
            return True
        return version.by is not None and permits(permission_of(version.by), least)

    title = _newest(history.titles, lambda v: trusted(v, operator.title_digest if operator else None))
    body = _newest(history.bodies, lambda v: trusted(v, operator.body_digest if operator else None))
    if title is None or body is None:
        raise Untrusted("the issue's text was changed after it was labelled, by someone without "
                        f"`{least}` permission, and GitHub no longer shows the text as it was labelled. "
                        f"Someone with `{least}` permission can check it and apply `{ready_label}` again.")
    # Every version newer than the one used was left out: none of them is trusted.
    left_out = {version.by or "a deleted account" for versions, used in ((history.titles, title),
                                                                         (history.bodies, body))
                for version in versions[versions.index(used) + 1:]}
    by = f"@{last.by}" if labelled_at is not None and last is not None else "the operator (asm enqueue)"
    return Vouched(title.text or "", body.text or "", by, tuple(sorted(left_out)))


def _newest(versions: tuple[Version, ...], trusted: Callable[[Version], bool]) -> Version | None:
    return next((version for version in reversed(versions) if trusted(version)), None)


def _who_may_label(last: Labelled | None, ready_label: str, permission_of: Callable[[str], str], least: str) -> str:
    why = (f"asm works an issue only when someone with `{least}` permission or more on the repository "
           f"(ASM_TRUSTED_PERMISSION) applies `{ready_label}`: the label lets the issue's text steer agents "
           "that change this repository's code.")
    if last is None or last.by is None:
        return f"`{ready_label}` was not applied by anyone asm can act for. {why}"
    return (f"`{ready_label}` was applied by @{last.by}, who has `{permission_of(last.by)}` permission. {why} "
            f"Someone with `{least}` permission can apply `{ready_label}` again to start it.")
