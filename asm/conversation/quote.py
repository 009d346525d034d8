"""What the team is told of a conversation: remarks, answers, failed checks and the diff, as quoted data.

Everything here was written by people or programs outside the team, so each text is sanitised as
the issue is (what GitHub does not show is removed) and clipped, and asm's own framing (who said
it, where) is built from fields GitHub fills in, never from the text itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from asm.conversation.asks import Round
from asm.conversation.threads import CheckReport, Remark
from asm.guard.sanitize import sanitize, strip_invisible
from asm.quoting import clip, code_block

REMARK_LIMIT = 4_000  # characters of one remark
REMARKS_LIMIT = 30_000  # of all of them
DIFF_LIMIT = 40_000
LOG_LIMIT = 6_000  # of one check's log, from its end
REPORT_LIMIT = 10_000  # of one check's output
CHECKS_LIMIT = 30_000


def remark_text(remark: Remark) -> str:
    """One remark with who made it, where, and in what kind of review."""
    where = ""
    if remark.path:
        where = f" on `{strip_invisible(remark.path)}`" + (f" line {remark.line}" if remark.line else "")
        where += " of an earlier version of the diff" if remark.outdated else ""
    kind = {"review": "review", "line": "comment", "comment": "comment"}[remark.key.split(":", 1)[0]]
    if remark.key.startswith("review:") and remark.review_state == "CHANGES_REQUESTED":
        kind = "review requesting changes"
    body = clip(sanitize(remark.body), REMARK_LIMIT) or "(no text)"
    return f"#### {kind} by @{remark.author}{where} ({remark.key})\n\n{body}"


def remarks_text(remarks: Sequence[Remark]) -> str:
    """The remarks, oldest first; past the limit the oldest are left out whole, so the newest request is read."""
    kept: list[str] = []
    size = 0
    for text in reversed([remark_text(remark) for remark in remarks]):
        if kept and size + len(text) > REMARKS_LIMIT:
            break
        kept.append(text)
        size += len(text) + 2
    left_out = len(remarks) - len(kept)
    note = [f"[{left_out} earlier remark{'s' if left_out != 1 else ''} left out for length]"] if left_out else []
    return clip("\n\n".join(note + kept[::-1]), REMARKS_LIMIT + 100, keep_end=True)


def answers_text(rounds: Sequence[Round]) -> str:
    """Each round of the team's questions and the trusted answers to it."""
    parts = []
    for number, round_ in enumerate(rounds, 1):
        answers = "\n\n".join(f"Answer by @{answer.author}:\n\n{clip(sanitize(answer.body), REMARK_LIMIT)}"
                              for answer in round_.answers) or "(not answered)"
        parts.append(f"### Questions, round {number}\n\n{clip(sanitize(round_.questions), REMARK_LIMIT)}\n\n{answers}")
    return clip("\n\n".join(parts), REMARKS_LIMIT)


def checks_text(reports: Sequence[CheckReport]) -> str:
    """What each failed check reported: its output, annotations and the end of its log."""
    parts = []
    for report in reports:
        lines = [f"### {strip_invisible(report.name)}: {report.conclusion}"]
        output = "\n\n".join(part for part in (report.title, report.summary, report.text) if part.strip())
        if output:
            lines.append(clip(sanitize(output), REPORT_LIMIT))
        if report.annotations:  # a message may span lines, fences and all: a block it cannot end holds them
            notes = "\n".join(strip_invisible(note) for note in report.annotations)
            lines.append("Annotations:\n\n" + code_block(clip(notes, REPORT_LIMIT)))
        if report.log_tail.strip():
            lines.append("The end of its log:\n\n" + code_block(clip(strip_invisible(report.log_tail), LOG_LIMIT,
                                                                 keep_end=True)))
        parts.append("\n\n".join(lines))
    return clip("\n\n".join(parts), CHECKS_LIMIT) or "(GitHub gave no details of the failures)"


def diff_text(diff: str) -> str:
    return code_block(clip(diff, DIFF_LIMIT), "diff") if diff.strip() else "(no difference from the base branch)"
