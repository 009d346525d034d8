"""The issue on GitHub as one run sees it: its one asm label, and comments that carry the spend.

Everything here happens under the run's claim (checked before each write), so a run that lost
its claim never touches the issue again.
"""

from __future__ import annotations

from collections.abc import Callable

from asm.fleet.claim import Claim
from asm.github import AI_FAILED, IN_PROGRESS, IN_REVIEW, NEEDS_CLARIFICATION, GitHub
from asm.guard.redaction import redact
from asm.keys import IssueRef
from asm.run.texts import RunFacts, comment

FINAL_LABELS = (IN_REVIEW, NEEDS_CLARIFICATION, AI_FAILED)


class Board:
    """Labels and comments of one issue, written by one run."""

    def __init__(self, github: GitHub, claim: Claim, issue: IssueRef, ready_label: str, labels: frozenset[str],
                 secrets: tuple[str, ...], facts: Callable[[], RunFacts], note: Callable[[str], None]) -> None:
        self.github = github
        self.claim = claim
        self.issue = issue
        self.ready_label = ready_label
        self.labels = labels  # as the issue carries them now; kept up to date by every move
        self.secrets = secrets
        self.facts = facts
        self.note = note  # the run's log line for each thing said

    @property
    def asm_labels(self) -> set[str]:
        """The labels asm moves; an issue carries at most one of them."""
        return {IN_PROGRESS, *FINAL_LABELS, self.ready_label}

    def set_label(self, label: str) -> None:
        """Make `label` the issue's one asm label."""
        self.claim.check()
        self.github.move_labels(self.issue, label, self.asm_labels - {label}, self.labels)
        self.labels = (self.labels - self.asm_labels) | {label}

    def drop_label(self, label: str) -> None:
        """Remove one label (a stray `in-progress` beside an end label), adding none."""
        self.claim.check()
        self.github.move_labels(self.issue, None, (label,), self.labels)
        self.labels -= {label}

    def say(self, headline: str, details: str = "", remembers: str = "") -> None:
        """One comment: what happened, why, and what was spent so far (and asm's hidden mark, last)."""
        self.note(headline)
        self.claim.check()
        self.github.comment(self.issue, redact(comment(headline, self.facts(), details, remembers), self.secrets))
