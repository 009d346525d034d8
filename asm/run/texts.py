"""The words asm writes on GitHub: issue comments and the pull request body, always with the spend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from asm.github import COMMENT_PREFIX
from asm.keys import IssueRef
from asm.observe.display import duration_text
from asm.spend.ledger import Spend

if TYPE_CHECKING:
    from asm.agents.workflow import Outcome

NOTE_LIMIT = 8_000  # characters of one role's notes in a PR body (4 roles + verdict stay far below 65,536)
FILES_LIMIT = 200


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


def comment(headline: str, facts: RunFacts, details: str = "") -> str:
    """An issue comment: what happened, why, and what it cost so far."""
    parts = [f"{COMMENT_PREFIX} {headline}"]
    if details:
        parts.append(details.strip())
    parts.append(f"<sub>{facts.line()} · worker `{facts.worker}`</sub>")
    return "\n\n".join(parts)


def clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 30].rstrip() + "\n\n[... cut for length ...]"


def pull_body(issue: IssueRef, outcome: Outcome, facts: RunFacts, files: list[str]) -> str:
    """The pull request body: Closes #N, what each role did, the verdict and the spend.

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
        f"<sub>{facts.line()} · worker `{facts.worker}`</sub>\n"
    )
