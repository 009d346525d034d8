"""Where a run is: its stage, revision and spend, told to the status table, Flower and the log."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from asm.agents.workflow import Step
from asm.keys import IssueRef
from asm.observe.status import WorkerStatus


@dataclass(frozen=True)
class Progress:
    """One report of where a run is."""

    issue: str
    stage: str
    revision: int
    spent_usd: float
    new_stage: bool = True  # False: the same stage, only the spend moved


Report = Callable[[Progress], None]


class Tracker:
    """Follows one run through its stages, timing each (stages repeat across revisions)."""

    def __init__(self, issue: IssueRef, status: WorkerStatus, report: Report, note: Callable[[str], None]) -> None:
        self.issue = issue
        self.status = status
        self.report = report
        self.note = note
        self.stage = "claimed"
        self.revision = 0
        self.spent = 0.0
        self.stage_started = time.monotonic()
        self.stage_seconds: dict[str, float] = {}

    def on_step(self, step: Step) -> None:
        """The workflow moved to another role (or round)."""
        self.revision = step.revision
        self.enter(step.role.name)

    def charged(self, issue_total_usd: float) -> None:
        """A model call was billed: the spend moved, the stage did not."""
        self.spent = issue_total_usd
        self.report(Progress(self.issue.key, self.stage, self.revision, self.spent, new_stage=False))

    def enter(self, stage: str) -> None:
        self.close_stage()
        self.stage = stage
        self.status.stage(self.issue, stage, self.revision)
        self.note(f"revision {self.revision}, ${self.spent:.4f} spent so far")
        self.report(Progress(self.issue.key, stage, self.revision, self.spent))

    def close_stage(self) -> dict[str, float]:
        """Add the time since the stage began to its total; the totals so far."""
        now = time.monotonic()
        self.stage_seconds[self.stage] = self.stage_seconds.get(self.stage, 0.0) + now - self.stage_started
        self.stage_started = now
        return self.stage_seconds
