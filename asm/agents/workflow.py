"""The scrum state machine: Architect -> Security -> Tester -> Product Owner, with revisions.

`next_step` is a pure function of where we are and what the last role said; `run_workflow`
drives it with whatever performs a role (the team of agents in production, anything in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from asm.agents.roles import ARCHITECT, PRODUCT_OWNER, TEAM, Role

OutcomeKind = Literal["approved", "rejected", "exhausted", "clarification"]


@dataclass(frozen=True)
class Step:
    """Which role works next, in which revision round (0 is the first), with the PO's feedback."""

    role: Role
    revision: int = 0
    feedback: str = ""


@dataclass(frozen=True)
class RoleOutput:
    """What one role's run produced, as far as the workflow cares."""

    summary: str
    decision: str | None = None
    feedback: str = ""
    questions: str = ""


@dataclass(frozen=True)
class Outcome:
    """How the workflow ended."""

    kind: OutcomeKind
    detail: str
    revisions: int
    notes: tuple[tuple[str, str], ...] = ()


def next_step(step: Step, output: RoleOutput, max_revisions: int) -> Step | Outcome:
    """Where the workflow goes after `step` produced `output`."""
    if step.role is ARCHITECT and output.questions:
        return Outcome("clarification", output.questions, step.revision)
    if step.role is not PRODUCT_OWNER:
        return Step(TEAM[TEAM.index(step.role) + 1], step.revision, step.feedback)
    if output.decision == "APPROVE":
        return Outcome("approved", output.feedback, step.revision)
    if output.decision == "REJECT":
        return Outcome("rejected", output.feedback, step.revision)
    if step.revision >= max_revisions:
        return Outcome("exhausted", output.feedback, step.revision)
    return Step(ARCHITECT, step.revision + 1, output.feedback)


Perform = Callable[[Step, tuple[tuple[str, str], ...]], RoleOutput]


def run_workflow(perform: Perform, max_revisions: int, on_step: Callable[[Step], None] = lambda _: None) -> Outcome:
    """Run roles until an outcome; each role sees the notes of the roles before it in its round."""
    step = Step(ARCHITECT)
    notes: tuple[tuple[str, str], ...] = ()
    while True:
        on_step(step)
        output = perform(step, notes)
        notes += ((step.role.title, output.summary),)
        following = next_step(step, output, max_revisions)
        if isinstance(following, Outcome):
            return Outcome(following.kind, following.detail, following.revisions, notes)
        if following.revision != step.revision:
            notes = ()
        step = following
