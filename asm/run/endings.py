"""The ways a run ends, as data: what it says on the issue, the label it leaves, what the fleet does next.

A run ends in exactly one of these. The words are templates filled with the run's facts (`{ready}`
is always the ready label); the comment is written first and the label set last, under the claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from asm.errors import (
    AsmError,
    BudgetExceeded,
    ModelRefused,
    SecretInChange,
    TimeLimitReached,
    TurnLimitReached,
)
from asm.github import AI_FAILED, IN_REVIEW, NEEDS_CLARIFICATION


@dataclass(frozen=True)
class Ending:
    """One way a run ends."""

    label: str | None  # the label it leaves; None: the ready label, the issue given back as it was
    headline: str  # the comment's first words ("" says nothing); also the summary's, unless `summary` is set
    details: str = ""  # the comment's body
    summary: str = ""  # the one-line result Flower shows, when not the headline
    completed: bool = False  # counts as an issue done on the status table
    requeue: bool = False  # the task queues the issue again, once the model API has rested
    asks: bool = False  # its comment asks questions: a trusted answer resumes the issue

    @property
    def outcome(self) -> str:
        """The word metrics and the status history count it under."""
        return self.label or "given-back"

    def summary_line(self, words: dict[str, object]) -> str:
        if self.summary:
            return self.summary.format(**words)
        headline = self.headline.format(**words)
        return f"{self.label}, {headline}" if self.label else f"given back, {headline}"


RETRY = "Label the issue `{ready}` to try again"

PULL_OPENED = Ending(IN_REVIEW, "opened {url}{merged}.", summary="{url}", completed=True)
QUESTIONS = Ending(NEEDS_CLARIFICATION, "needs answers before this can be implemented.", "{detail}",
                   summary=f"questions asked, labelled {NEEDS_CLARIFICATION}", completed=True, asks=True)
REJECTED = Ending(AI_FAILED, "the Product Owner rejected the change; no pull request.", "{detail}")
EXHAUSTED = Ending(AI_FAILED, "no approval after {revisions} revisions (ASM_MAX_REVISIONS); no pull request.",
                   "The Product Owner's last feedback:\n\n{detail}")
NO_CHANGE = Ending(AI_FAILED, "the team approved, but made no change to the code; no pull request.", "{detail}")
TOO_MANY_ATTEMPTS = Ending(AI_FAILED, "gave up after {attempts} attempts that stopped without finishing.",
                           "Each one was interrupted (a worker killed, or the hard time limit). "
                           f"{RETRY} once the cause is fixed.")
SPEND_CAP = Ending(AI_FAILED, "stopped at a spend cap; nothing was pushed.",
                   "{error}.\n\nRaise the cap, then label the issue `{ready}` again to retry "
                   "(the spend so far stays counted).")
OUT_OF_TURNS = Ending(AI_FAILED, "gave up: a role ran out of turns.", "{error} (ASM_MAX_TURNS).")
SECRET = Ending(AI_FAILED, "stopped: the team's change holds a secret of asm's; nothing was pushed.", "{error}")
TIME_LIMIT = Ending(AI_FAILED, "stopped: the run reached its time limit (ASM_TASK_TIME_LIMIT); {pushed}.",
                    f"It ran for {{seconds:.0f}}s. {RETRY}.")
MODEL_REFUSED = Ending(AI_FAILED, "stopped: the model declined to work on this issue; nothing was pushed.",
                       "Its reply ended in a refusal: {error}. Asking again will not change that; "
                       "reword the issue, or take it on by hand.")
SETUP_FAILED = Ending(AI_FAILED, "stopped: the repository's `.asm/setup.sh` failed ({reason}); the team did not start.",
                      "{details}\n\nFix the script on the default branch, then label the issue `{ready}` again.")
OTHERS_COMMITS = Ending(AI_FAILED, "did not start: `{branch}` holds {count} commit(s) asm did not write, which a new "
                        "run would replace.", "Not asm's: {shas}. asm never drops anyone's commits. To change the pull "
                        "request, review it or mention {mention} there; to start over, delete the branch and label "
                        "the issue `{ready}` again.", summary="ai-failed, the branch holds others' commits")
BRANCH_MOVED = Ending(AI_FAILED, "nothing was pushed: `{branch}` moved while the team worked.",
                      f"Someone pushed {{sha}} meanwhile, and asm never drops anyone's commits. {RETRY}.")
FAILED = Ending(AI_FAILED, "could not finish this issue.", "{error}")
INTERNAL_ERROR = Ending(AI_FAILED, "failed because of an internal error.",
                        "`{kind}` inside asm; the worker's log has the details.")
# Given back: the issue is not at fault, so it goes back as it was, to be picked up again.
MODEL_UNAVAILABLE = Ending(None, "the model API is unavailable right now ({error}); will retry later.",
                       summary="given back, model unavailable, retry in {rest:.0f}s", requeue=True)
FLEET_PAUSED = Ending(None, "", summary="given back, fleet paused: {error}")

# The errors that end a run on their own, most specific first, each named for the ending it gets; an issue's
# run and a follow-up on its pull request each have their own words for them.
ERROR_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (BudgetExceeded, "spend cap"),
    (TurnLimitReached, "out of turns"),
    (SecretInChange, "secret"),
    (TimeLimitReached, "time limit"),
    (ModelRefused, "model refused"),
    (AsmError, "failed"),
)
ERROR_ENDINGS = {"spend cap": SPEND_CAP, "out of turns": OUT_OF_TURNS, "secret": SECRET, "time limit": TIME_LIMIT,
                 "model refused": MODEL_REFUSED, "failed": FAILED, "internal": INTERNAL_ERROR}
# What the team's verdict ends in, when it is not an approval.
VERDICT_ENDINGS = {"clarification": QUESTIONS, "rejected": REJECTED, "exhausted": EXHAUSTED}


def error_kind(error: Exception) -> str:
    """Which ending an error that stopped a run gets; an error asm did not mean is an internal one."""
    return next((name for kind, name in ERROR_KINDS if isinstance(error, kind)), "internal")


def ending_for(error: Exception) -> Ending:
    return ERROR_ENDINGS[error_kind(error)]


@dataclass(frozen=True)
class DeliveryResult:
    """How one delivery of `asm.process_issue` ended, in one line, and whether to queue it again later."""

    summary: str
    outcome: str  # in-review, needs-clarification, ai-failed, given-back, skipped, paused, deferred, capped...
    completed: bool = False
    requeue_after: float | None = None
