"""The scrum state machine: the pure next-step table, and the driver run with a plain `perform` function."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asm.agents.roles import ARCHITECT, PRODUCT_OWNER, SECURITY, TEAM, TESTER
from asm.agents.workflow import Outcome, RoleOutput, Step, next_step, run_workflow

DONE = RoleOutput("did my part")


# -- next_step ---------------------------------------------------------------------------------------


def test_the_team_works_in_order() -> None:
    assert TEAM == (ARCHITECT, SECURITY, TESTER, PRODUCT_OWNER)
    assert next_step(Step(ARCHITECT), DONE, 3) == Step(SECURITY)
    assert next_step(Step(SECURITY), DONE, 3) == Step(TESTER)
    assert next_step(Step(TESTER), DONE, 3) == Step(PRODUCT_OWNER)


def test_the_round_and_feedback_carry_through_the_team() -> None:
    step = Step(SECURITY, revision=2, feedback="document it")

    assert next_step(step, DONE, 3) == Step(TESTER, 2, "document it")


def test_approve_ends_approved() -> None:
    outcome = next_step(Step(PRODUCT_OWNER, 1), RoleOutput("ok", "APPROVE", "ship it"), 3)

    assert outcome == Outcome("approved", "ship it", 1)


def test_reject_ends_rejected_even_with_revisions_left() -> None:
    outcome = next_step(Step(PRODUCT_OWNER), RoleOutput("no", "REJECT", "out of scope"), 3)

    assert outcome == Outcome("rejected", "out of scope", 0)


def test_revise_sends_the_feedback_back_to_the_architect() -> None:
    following = next_step(Step(PRODUCT_OWNER, 0), RoleOutput("close", "REVISE", "add docs"), 3)

    assert following == Step(ARCHITECT, 1, "add docs")


def test_revise_in_the_last_allowed_round_still_revises() -> None:
    assert next_step(Step(PRODUCT_OWNER, 2), RoleOutput("", "REVISE", "again"), 3) == Step(ARCHITECT, 3, "again")


def test_revise_at_max_revisions_is_exhausted() -> None:
    outcome = next_step(Step(PRODUCT_OWNER, 3), RoleOutput("", "REVISE", "still not right"), 3)

    assert outcome == Outcome("exhausted", "still not right", 3)


def test_no_revisions_allowed_means_the_first_revise_is_exhausted() -> None:
    assert next_step(Step(PRODUCT_OWNER), RoleOutput("", "REVISE", "fix"), 0) == Outcome("exhausted", "fix", 0)


def test_architect_questions_end_in_clarification() -> None:
    outcome = next_step(Step(ARCHITECT), RoleOutput("", questions="- which module?"), 3)

    assert outcome == Outcome("clarification", "- which module?", 0)


def test_architect_questions_in_a_revision_round_end_in_clarification() -> None:
    outcome = next_step(Step(ARCHITECT, 2, "fix"), RoleOutput("", questions="- what?"), 3)

    assert outcome == Outcome("clarification", "- what?", 2)


@pytest.mark.parametrize("role", [SECURITY, TESTER])
def test_only_the_architect_can_stop_for_questions(role) -> None:
    assert isinstance(next_step(Step(role), RoleOutput("", questions="?"), 3), Step)


# -- run_workflow ------------------------------------------------------------------------------------


class Scripted:
    """A `perform` that records every step it is given and answers the PO's turns from a list."""

    def __init__(self, decisions: list[str], questions: str = "") -> None:
        self.decisions: Iterator[str] = iter(decisions)
        self.questions = questions
        self.seen: list[tuple[str, int, str, tuple[tuple[str, str], ...]]] = []

    def __call__(self, step: Step, notes: tuple[tuple[str, str], ...]) -> RoleOutput:
        self.seen.append((step.role.name, step.revision, step.feedback, notes))
        summary = f"{step.role.name} round {step.revision}"
        if step.role is PRODUCT_OWNER:
            decision = next(self.decisions)
            return RoleOutput(summary, decision, f"{decision.lower()} feedback {step.revision}")
        if step.role is ARCHITECT and self.questions:
            return RoleOutput(summary, questions=self.questions)
        return RoleOutput(summary)


def test_approve_on_the_first_round() -> None:
    perform = Scripted(["APPROVE"])

    outcome = run_workflow(perform, max_revisions=3)

    assert [role for role, *_ in perform.seen] == ["architect", "security", "tester", "po"]
    assert (outcome.kind, outcome.detail, outcome.revisions) == ("approved", "approve feedback 0", 0)


def test_revise_then_approve_runs_the_team_twice_with_the_feedback() -> None:
    perform = Scripted(["REVISE", "APPROVE"])

    outcome = run_workflow(perform, max_revisions=3)

    assert [(role, revision) for role, revision, *_ in perform.seen] == [
        ("architect", 0), ("security", 0), ("tester", 0), ("po", 0),
        ("architect", 1), ("security", 1), ("tester", 1), ("po", 1),
    ]
    assert [feedback for _, _, feedback, _ in perform.seen[4:]] == ["revise feedback 0"] * 4
    assert outcome.kind == "approved"
    assert outcome.revisions == 1


def test_notes_grow_within_a_round_and_reset_each_round() -> None:
    perform = Scripted(["REVISE", "APPROVE"])

    outcome = run_workflow(perform, max_revisions=3)

    notes = [seen_notes for *_, seen_notes in perform.seen]
    assert notes[0] == ()
    assert notes[1] == (("Architect", "architect round 0"),)
    assert notes[3] == (("Architect", "architect round 0"), ("Security reviewer", "security round 0"),
                        ("Tester", "tester round 0"))
    assert notes[4] == ()  # the new round starts clean: the PO's feedback travels in the step
    assert notes[5] == (("Architect", "architect round 1"),)
    assert outcome.notes == (("Architect", "architect round 1"), ("Security reviewer", "security round 1"),
                             ("Tester", "tester round 1"), ("Product Owner", "po round 1"))


def test_revisions_run_out() -> None:
    perform = Scripted(["REVISE"] * 10)

    outcome = run_workflow(perform, max_revisions=2)

    assert outcome.kind == "exhausted"
    assert outcome.revisions == 2
    assert [role for role, *_ in perform.seen].count("po") == 3


def test_reject_stops_after_the_first_round() -> None:
    perform = Scripted(["REJECT"])

    outcome = run_workflow(perform, max_revisions=3)

    assert (outcome.kind, outcome.detail) == ("rejected", "reject feedback 0")
    assert len(perform.seen) == 4


def test_questions_stop_before_anyone_else_works() -> None:
    perform = Scripted([], questions="- which module?")

    outcome = run_workflow(perform, max_revisions=3)

    assert [role for role, *_ in perform.seen] == ["architect"]
    assert (outcome.kind, outcome.detail) == ("clarification", "- which module?")


def test_on_step_sees_every_step_before_it_runs() -> None:
    perform = Scripted(["REVISE", "APPROVE"])
    announced: list[Step] = []

    run_workflow(perform, max_revisions=3, on_step=announced.append)

    assert [(s.role.name, s.revision) for s in announced] == [(r, v) for r, v, *_ in perform.seen]


def test_an_error_in_a_role_propagates() -> None:
    def perform(step: Step, notes: tuple[tuple[str, str], ...]) -> RoleOutput:
        if step.role is TESTER:
            raise RuntimeError("tests exploded")
        return DONE

    with pytest.raises(RuntimeError, match="tests exploded"):
        run_workflow(perform, max_revisions=3)
