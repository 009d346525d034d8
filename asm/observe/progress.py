"""Where a run is: its stage, revision and spend, told to the status table, Flower and the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from asm.agents.workflow import Step
from asm.keys import IssueRef
from asm.observe.status import WorkerStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """Where a run is now: one update for whoever watches it."""

    issue: str
    stage: str
    revision: int
    spent_usd: float
    new_stage: bool = True  # False: the same stage, only the spend moved


OnProgress = Callable[[Progress], None]
"""Told every update of a run's progress (the Celery task shows it in Flower)."""


class ProgressTracker:
    """Follows one run through its stages, timing each (stages repeat across revisions)."""

    def __init__(self, issue: IssueRef, status: WorkerStatus, on_progress: OnProgress) -> None:
        self.issue = issue
        self.status = status
        self.on_progress = on_progress
        self.stage = "claimed"
        self.revision = 0
        self.spent_usd = 0.0
        self.stage_started = time.monotonic()
        self.stage_seconds: dict[str, float] = {}

    def note(self, message: str) -> None:
        """One log line for one step: issue, worker, stage, what happened (the log handler redacts secrets)."""
        log.info("%s [%s] %s: %s", self.issue, self.status.worker, self.stage, message)

    def on_step(self, step: Step) -> None:
        """The workflow moved to another role (or round)."""
        self.revision = step.revision
        self.enter(step.role.name)

    def charged(self, issue_total_usd: float) -> None:
        """A model call was billed: the spend moved, the stage did not."""
        self.spent_usd = issue_total_usd
        self.on_progress(Progress(self.issue.key, self.stage, self.revision, self.spent_usd, new_stage=False))

    def enter(self, stage: str) -> None:
        self.close_stage()
        self.stage = stage
        self.status.entered_stage(self.issue, stage, self.revision)
        self.note(f"revision {self.revision}, ${self.spent_usd:.4f} spent so far")
        self.on_progress(Progress(self.issue.key, stage, self.revision, self.spent_usd))

    def close_stage(self) -> dict[str, float]:
        """Add the time since the stage began to its total; the totals so far."""
        now = time.monotonic()
        self.stage_seconds[self.stage] = self.stage_seconds.get(self.stage, 0.0) + now - self.stage_started
        self.stage_started = now
        return self.stage_seconds
