"""The ways a follow-up on a pull request ends, as data, and the reply asm writes on the pull request.

A follow-up never moves the issue's labels (its pull request stays in review); it ends in one
reply: what happened, what it answered, what it cost (this run, and the issue so far), each role's
share in a collapsed block, and asm's memory of the conversation in a hidden line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from asm.conversation.markers import mark
from asm.conversation.threads import Remark
from asm.github import COMMENT_PREFIX
from asm.guard.sanitize import strip_invisible
from asm.observe.display import duration_text
from asm.run.endings import error_kind
from asm.spend.cost import Usage
from asm.spend.ledger import Spend


@dataclass(frozen=True)
class FollowUpEnding:
    """One way a follow-up ends: its reply's first words and body (templates of the run's facts)."""

    outcome: str  # the word metrics and the status history count it under
    headline: str
    details: str = ""
    completed: bool = False
    # The remarks it took up are done with: the team changed the code for them, or decided not to. Any other
    # ending leaves them owed, given again to the next run a new request starts.
    settles: bool = False
    asks: bool = False  # its reply asks questions: the next run is given them beside the answers


AGAIN = "Mention {mention} on the pull request to try again."

PUSHED = FollowUpEnding("pushed", "pushed {sha} to `{branch}`.", "{detail}", completed=True, settles=True)
NO_CHANGE = FollowUpEnding("answered", "the team made no change to the code.", "{detail}", completed=True,
                           settles=True)
QUESTIONS = FollowUpEnding("questions", "the team has questions before it changes anything.",
                           "{detail}\n\nAnswer here and mention {mention}: the next follow-up reads the answers, "
                           "with these questions and what they are about.", completed=True, asks=True)
REJECTED = FollowUpEnding("rejected", "the Product Owner decided against changing the code; {pushed}.",
                          "{detail}", completed=True, settles=True)
EXHAUSTED = FollowUpEnding("exhausted", "no approval after {revisions} revisions (ASM_MAX_REVISIONS); {pushed}.",
                           "The Product Owner's last feedback:\n\n{detail}\n\n" + AGAIN)
CHECKS_STOPPED = FollowUpEnding("checks-stopped", "the checks still fail after {fixes} fix runs (ASM_MAX_CI_FIXES); "
                                "asm stops fixing them on this pull request.",
                                "{checks}\n\nA person needs to look. " + AGAIN)
BRANCH_MOVED = FollowUpEnding("branch-moved", "nothing was pushed: `{branch}` moved while the team worked.",
                              "Someone pushed {sha} meanwhile, and asm never overwrites a commit. " + AGAIN)
SETUP_FAILED = FollowUpEnding("setup-failed", "stopped: the repository's `.asm/setup.sh` failed ({reason}); the team "
                              "did not start.", "{details}\n\nFix the script on the default branch, then mention "
                              "{mention} again.")
TOO_MANY_ATTEMPTS = FollowUpEnding("ai-failed", "gave up after {attempts} attempts that stopped without finishing.",
                                   "Each one was interrupted (a worker killed, or the hard time limit). " + AGAIN)
SPEND_CAP = FollowUpEnding("ai-failed", "stopped at a spend cap; {pushed}.",
                           "{error}.\n\nRaise the cap, then mention {mention} again (the spend so far stays counted).")
OUT_OF_TURNS = FollowUpEnding("ai-failed", "gave up: a role ran out of turns; {pushed}.",
                              "{error} (ASM_MAX_TURNS). " + AGAIN)
SECRET = FollowUpEnding("ai-failed", "stopped: the team's change holds a secret of asm's; {pushed}.",
                        "{error}")
TIME_LIMIT = FollowUpEnding("ai-failed", "stopped: the run reached its time limit (ASM_TASK_TIME_LIMIT); {pushed}.",
                            "It ran for {seconds:.0f}s. " + AGAIN)
MODEL_REFUSED = FollowUpEnding("ai-failed", "stopped: the model declined this request; {pushed}.",
                               "Its reply ended in a refusal: {error}.")
FAILED = FollowUpEnding("ai-failed", "could not finish this request; {pushed}.", "{error}\n\n" + AGAIN)
INTERNAL_ERROR = FollowUpEnding("ai-failed", "failed because of an internal error; {pushed}.",
                                "`{kind}` inside asm; the worker's log has the details. " + AGAIN)

# The same kinds of error as an issue's run (asm.run.endings.ERROR_KINDS), in a follow-up's words.
ERROR_ENDINGS = {"spend cap": SPEND_CAP, "out of turns": OUT_OF_TURNS, "secret": SECRET, "time limit": TIME_LIMIT,
                 "model refused": MODEL_REFUSED, "failed": FAILED, "internal": INTERNAL_ERROR}
VERDICT_ENDINGS = {"clarification": QUESTIONS, "rejected": REJECTED, "exhausted": EXHAUSTED}


def ending_for(error: Exception) -> FollowUpEnding:
    return ERROR_ENDINGS[error_kind(error)]


def spent_since(before: Spend, after: Spend) -> Spend:
    """What was spent between two readings of an issue's ledger: one run's share."""
    usage = Usage(*(getattr(after.usage, name) - getattr(before.usage, name) for name in Usage.__dataclass_fields__))
    return Spend(usage, after.usd - before.usd, after.calls - before.calls, after.saved_usd - before.saved_usd)


def answered_list(remarks: Sequence[Remark]) -> str:
    """The remarks a run answered, one line each, so people see that theirs was read."""
    lines = []
    for remark in remarks:
        where = f" on `{strip_invisible(remark.path)}`" + (f" line {remark.line}" if remark.line else "") \
            if remark.path else ""
        # In a code span: an excerpt must not open a block in asm's reply, nor mention anyone again.
        first = " ".join(strip_invisible(remark.body).split())[:100].replace("`", "'")
        lines.append(f"- @{remark.author}{where}: `{first}`" if first else f"- @{remark.author}{where}")
    return "\n".join(lines)


def reply(headline: str, details: str, run: Spend, issue_total: float, seconds: float, revisions: int,
          worker: str, roles: str = "", issue: str = "", **state: object) -> str:
    """A reply on the pull request: what happened, its cost (this run; the issue so far), roles, memory."""
    usage = run.usage
    plural = "" if revisions == 1 else "s"
    cost = (f"<sub>this run: {usage.total_tokens:,} tokens (input {usage.input_tokens:,} · output "
            f"{usage.output_tokens:,} · cache write {usage.cache_write_tokens:,} · cache read "
            f"{usage.cache_read_tokens:,}) · **${run.usd:.4f}** · {run.calls} turns · {duration_text(seconds)} · "
            f"{revisions} revision{plural} · worker `{worker}` · the issue so far: **${issue_total:.4f}**"
            + (f" · every role's whole conversation: `asm transcript {issue}`" if issue else "") + "</sub>")
    parts = [f"{COMMENT_PREFIX} {headline}", details.strip(), cost, roles.strip(), mark(**state) if state else ""]
    return "\n\n".join(part for part in parts if part)
