"""What a conversation asks of asm: pure decisions on what the threads hold, trusted people only.

A pull request of asm's asks for a follow-up run when someone trusted requests changes in a review,
or mentions asm (ASM_MENTION) in a review, a line comment or a comment, and no run of asm's has
answered that yet; or when the checks on a commit asm pushed have all finished and one failed.
An issue waiting for answers asks to be resumed when someone trusted replies after asm's questions.
Nothing said by asm itself, or by someone without ASM_TRUSTED_PERMISSION, asks anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from asm.conversation.markers import read_marks
from asm.conversation.threads import Check, PullThread, Remark
from asm.guard.sanitize import sanitize

Trusted = Callable[[str], bool]  # login -> whether they have ASM_TRUSTED_PERMISSION on the repository

# What a mention inside code or a quote is not: someone quoting a request, or showing how to make one.
_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n.*?(^ {0,3}\1[`~]*[ \t]*$|\Z)", re.S | re.M)
_INDENTED = re.compile(r"(?:^|\n\s*\n)(?:(?: {4}|\t)[^\n]*(?:\n|\Z))+")  # an indented code block
_INLINE_CODE = re.compile(r"(`+)(?!`)[^\n]+?(?<!`)\1(?!`)")
_QUOTED = re.compile(r"^ {0,3}>.*$", re.M)


def mentions(body: str, mention: str) -> bool:
    """Whether `body` mentions `mention` (`@asm`) as a word people see, outside code and quoted lines."""
    # What GitHub hides goes first, as the sanitiser reads Markdown: a `<!--` inside code hides nothing.
    text = _FENCED.sub("", sanitize(body or ""))
    text = _QUOTED.sub("", _INLINE_CODE.sub("", _INDENTED.sub("\n\n", text)))
    return re.search(rf"(?<![\w@/.-]){re.escape(mention)}(?![\w-])", text, re.I) is not None


@dataclass(frozen=True)
class FollowUp:
    """A run a pull request asks for: answering remarks, fixing failing checks, or saying it stops fixing them."""

    kind: Literal["review", "ci", "ci-stop"]
    # review: every trusted remark not answered yet, oldest first, with asm's questions back on any of them
    remarks: tuple[Remark, ...] = ()
    checks: tuple[Check, ...] = ()  # ci, ci-stop: the failed checks on the head
    fixes_done: int = 0  # ci runs made on this pull request before

    @property
    def label(self) -> str:
        return {"review": "review", "ci": "checks fix", "ci-stop": "checks, stopping"}[self.kind]


def is_request(remark: Remark, mention: str) -> bool:
    """A remark that asks asm to act: changes requested in a review, or a mention of asm."""
    own_review = remark.key.startswith("review:") and remark.review_state == "CHANGES_REQUESTED"
    return own_review or mentions(remark.body, mention)


def unanswered(thread: PullThread, me: str, trusted: Trusted) -> tuple[Remark, ...]:
    """Trusted remarks by others that no run of asm's has answered, oldest first: new ones, and those an
    earlier run took up without finishing, with asm's questions back since the first of those."""
    memory = thread.memory
    owed_since = next((index for index, remark in enumerate(thread.remarks) if remark.key in memory.owed), None)
    return tuple(remark for index, remark in enumerate(thread.remarks)
                 if remark.author and remark.author != me and trusted(remark.author)
                 and (remark.key not in memory.addressed or remark.key in memory.owed)
                 or owed_since is not None and index > owed_since and asks_questions(remark, me))


def checks_failed(checks: Sequence[Check]) -> tuple[Check, ...]:
    """The failed checks, once every check has finished; () while any is pending or none failed."""
    if not checks or any(check.state == "pending" for check in checks):
        return ()
    return tuple(check for check in checks if check.state == "failure")


def follow_up(thread: PullThread, me: str, mention: str, trusted: Trusted, max_ci_fixes: int) -> FollowUp | None:
    """The run this pull request asks for now, if any. Remarks come first: their run pushes a new head."""
    if not thread.is_asms(me):
        return None
    candidates = [remark for remark in thread.remarks
                  if remark.author and remark.author != me and remark.key not in thread.memory.addressed]
    # Permissions cost a request each: only remarks that would ask something are checked first.
    if any(is_request(remark, mention) and trusted(str(remark.author)) for remark in candidates):
        return FollowUp("review", unanswered(thread, me, trusted))
    failed = checks_failed(thread.checks)
    memory = thread.memory
    if not failed or thread.head_sha not in memory.pushed:
        return None  # green, pending, or a commit asm did not push: not asm's to fix
    if thread.head_sha in memory.ci_fixed or thread.head_sha in memory.ci_stopped:
        return None  # this head was worked on (or given up on) already
    done = len(set(memory.ci_fixed))
    return FollowUp("ci" if done < max_ci_fixes else "ci-stop", checks=failed, fixes_done=done)


@dataclass(frozen=True)
class Round:
    """asm's questions on an issue, and the trusted replies that came after them."""

    questions: str
    answers: tuple[Remark, ...]


def answer_rounds(comments: Sequence[Remark], me: str, trusted: Trusted) -> tuple[Round, ...]:
    """Each time asm asked questions on the issue, with the trusted replies before its next questions."""
    rounds: list[Round] = []
    for remark in comments:
        if asks_questions(remark, me):
            rounds.append(Round(remark.body, ()))
        elif rounds and remark.author and remark.author != me and trusted(remark.author):
            rounds[-1] = Round(rounds[-1].questions, rounds[-1].answers + (remark,))
    return tuple(rounds)


def answered(comments: Sequence[Remark], me: str, trusted: Trusted) -> Round | None:
    """asm's latest questions once someone trusted replied to them; None while they wait (or none were asked)."""
    latest = next((index for index in range(len(comments) - 1, -1, -1) if asks_questions(comments[index], me)), None)
    if latest is None:
        return None
    rounds = answer_rounds(comments[latest:], me, trusted)
    return rounds[-1] if rounds and rounds[-1].answers else None


def asks_questions(remark: Remark, me: str) -> bool:
    """asm's own comment of questions (its hidden state says so; a look-alike by anyone else is not)."""
    return remark.is_own(me) and any(state.get("questions") for state in read_marks(remark.body))
