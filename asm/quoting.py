"""Text from outside asm, quoted in what asm writes: clipped to a size, and in code blocks it cannot end."""

from __future__ import annotations

import re


def clip(text: str, limit: int, keep_end: bool = False) -> str:
    """At most about `limit` characters, saying how many were cut (a log keeps its end, where the error is)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = f"[... {len(text) - limit:,} characters cut ...]"
    return f"{cut}\n{text[-limit:]}" if keep_end else f"{text[:limit]}\n{cut}"


def code_block(text: str, language: str = "") -> str:
    """A fenced code block the text cannot end: its fence is longer than any run of backticks in the text."""
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence}{language}\n{text}\n{fence}"
