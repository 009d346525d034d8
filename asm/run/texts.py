"""The words asm writes on GitHub: issue comments and the pull request body, always with the spend."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asm.github import COMMENT_PREFIX
from asm.keys import IssueRef
from asm.observe.display import duration_text
from asm.quoting import clip
from asm.spend.ledger import Spend

if TYPE_CHECKING:
    from asm.agents.team import RoleReport
    from asm.agents.workflow import Outcome

NOTE_LIMIT = 8_000  # characters of one role's notes in a PR body (4 roles + verdict stay far below 65,536)
FILES_LIMIT = 200
ROLE_SUMMARY_LIMIT = 300  # characters of each role's summary in the per-role block; its notes are above it


@dataclass(frozen=True)
class RunFacts:
    """The numbers every comment and PR body carries."""

    spend: Spend
    revisions: int
    seconds: float
    worker: str

    def line(self) -> str:
        usage = self.spend.usage
        plural = "" if self.revisions == 1 else "s"
        return (
            f"{usage.total_tokens:,} tokens (input {usage.input_tokens:,} · output {usage.output_tokens:,} · "
            f"cache write {usage.cache_write_tokens:,} · cache read {usage.cache_read_tokens:,}) · "
            f"**${self.spend.usd:.4f}** · {self.spend.calls} turns · {duration_text(self.seconds)} · "
            f"{self.revisions} revision{plural}"
        )


def comment(headline: str, facts: RunFacts, details: str = "", remembers: str = "") -> str:
    """An issue comment: what happened, why, and what it cost so far; asm's hidden mark (`remembers`) last."""
    parts = [f"{COMMENT_PREFIX} {headline}"]
    if details:
        parts.append(details.strip())
    parts.append(f"<sub>{facts.line()} · worker `{facts.worker}`</sub>")
    if remembers:
        parts.append(remembers)
    return "\n\n".join(parts)


def per_role(reports: Sequence[RoleReport]) -> str:
    """Each role step's model, turns, tokens, cost and time, and its summary in brief: a collapsed block."""
    turns, usd = sum(r.turns for r in reports), sum(r.usd for r in reports)
    rows = [f"| {r.role} | {r.revision + 1} | `{r.model}` | {r.turns} | {r.usage.total_tokens:,} | ${r.usd:.4f} | "
            f"{duration_text(r.seconds)} |" for r in reports]
    said = [f"- **{r.role}** (round {r.revision + 1}): {in_brief(r.summary)}" for r in reports]
    return "\n".join([
        f"<details><summary>Per role: {turns} turns, ${usd:.4f}</summary>", "",
        "| role | round | model | turns | tokens | cost | time |", "| --- | --- | --- | --- | --- | --- | --- |",
        *rows, "", *said, "", "</details>"])


def in_brief(text: str) -> str:
    """A summary on one line, clipped, as plain text: nothing in it can close the block or start a table."""
    line = re.sub(r"\s+", " ", text).strip().replace("<", "&lt;")
    return line if len(line) <= ROLE_SUMMARY_LIMIT else line[:ROLE_SUMMARY_LIMIT - 1].rstrip() + "…"


def pull_body(issue: IssueRef, outcome: Outcome, facts: RunFacts, files: list[str],
              reports: Sequence[RoleReport] = ()) -> str:
    """The pull request body: Closes #N, what each role did, the verdict, the spend, and the per-role block.

    Each part is clipped so the whole stays well under GitHub's 65,536-character limit.
    """
    work = "\n\n".join(f"### {who}\n{clip(text, NOTE_LIMIT) or '(no notes)'}" for who, text in outcome.notes)
    listed = [f"- `{name}`" for name in files[:FILES_LIMIT]]
    if len(files) > FILES_LIMIT:
        listed.append(f"- ... and {len(files) - FILES_LIMIT} more")
    changed = "\n".join(listed) or "- (none)"
    saved = facts.spend.saved_usd
    verdict = f": {clip(outcome.detail, NOTE_LIMIT)}" if outcome.detail.strip() else ""
    return (
        f"Closes #{issue.number}\n\n"
        f"## What was done\n\n{work}\n\n"
        f"## Files changed\n\n{changed}\n\n"
        f"## Product Owner's verdict\n\n**APPROVE**{verdict}\n\n"
        f"## Cost\n\n"
        f"| revisions | turns | tokens | cost (USD) | caching saved | duration |\n"
        f"| --- | --- | --- | --- | --- | --- |\n"
        f"| {facts.revisions} | {facts.spend.calls} | {facts.spend.usage.total_tokens:,} | "
        f"${facts.spend.usd:.4f} | ${saved:.4f} | {duration_text(facts.seconds)} |\n\n"
        f"<sub>{facts.line()} · worker `{facts.worker}` · every role's whole conversation: "
        f"`asm transcript {issue.key}`</sub>\n"
        + (f"\n{per_role(reports)}\n" if reports else "")
    )
