"""A run's conversations as a person reads them (`asm transcript`), and as JSON for scripts.

Each turn's text is shown whole; tool calls with their input and tool results are clipped to their head and
tail, thinking is a marker (its text stays in `--json`), and so is the system prompt, the same for every run of
a role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from asm.keys import IssueRef
from asm.observe.transcripts import Conversation, RunRecord

TASK_LIMIT = 8_000  # characters of a user turn's text: the first holds the issue, which GitHub caps at 65,536
INPUT_LIMIT = 4_000  # of a tool call's input (a file the editor creates)
RESULT_LIMIT = 2_000  # of a tool result (the tools cut theirs at 12,000-16,000 already)
RULE = "=" * 3


def clipped(text: str, limit: int) -> str:
    """Head and tail of a long text, with how much was left out between them."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half:,} characters not shown ...]\n{text[-half:]}"


def started_text(record: RunRecord) -> str:
    return datetime.fromtimestamp(record.started_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(issue: IssueRef, runs: Sequence[tuple[RunRecord, Sequence[Conversation]]], total_runs: int) -> str:
    """The runs, each role by role, turn by turn."""
    return "\n\n".join(render_run(issue, record, conversations, total_runs) for record, conversations in runs)


def render_run(issue: IssueRef, record: RunRecord, conversations: Sequence[Conversation], total_runs: int) -> str:
    head = (f"{issue} · run {record.run} of {total_runs} · {record.label} · worker {record.worker} · "
            f"started {started_text(record)}")
    if not conversations:
        return f"{head}\n\n(no conversation kept: it expired, or the run stopped before its first turn)"
    return "\n\n".join([head, *(render_conversation(conversation) for conversation in conversations)])


def render_conversation(conversation: Conversation) -> str:
    parts = [f"{RULE} {conversation.step}. {conversation.role}, round {conversation.revision + 1}, "
             f"{conversation.model} {RULE}",
             f"[system prompt: {len(conversation.system):,} characters; --json shows it]"]
    if conversation.left_out:
        parts.append(f"[{conversation.left_out}]")
    tools: dict[str, str] = {}  # tool_use id -> the tool's name, for the results that answer it
    for message in conversation.messages:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        lines = [render_block(block, tools) for block in blocks if isinstance(block, Mapping)]
        parts.append(f"--- {message.get('role')}\n" + "\n".join(line for line in lines if line))
    return "\n\n".join(parts)


def render_block(block: Mapping[str, Any], tools: dict[str, str]) -> str:
    kind = block.get("type")
    if kind == "text":
        return clipped(str(block.get("text", "")), TASK_LIMIT)
    if kind == "thinking":
        return "[thinking]"
    if kind == "redacted_thinking":
        return "[redacted thinking]"
    if kind == "tool_use":
        name = str(block.get("name"))
        tools[str(block.get("id"))] = name
        tool_input = block.get("input")
        return f"> {name}: {input_text(name, tool_input)}"
    if kind == "tool_result":
        name = tools.get(str(block.get("tool_use_id")), "a tool")
        verdict = " (error)" if block.get("is_error") else ""
        return f"< {name}{verdict}:\n{clipped(result_text(block.get('content')), RESULT_LIMIT)}"
    return f"[{kind}]"


def input_text(name: str, tool_input: Any) -> str:
    """A tool call's input: a bash command as a command line; otherwise its short fields as JSON, and each
    text of several lines (a file the editor writes, a text it replaces) below them as it is."""
    if not isinstance(tool_input, Mapping):
        return clipped(json.dumps(tool_input, ensure_ascii=False), INPUT_LIMIT)
    if name == "bash" and set(tool_input) == {"command"} and isinstance(tool_input["command"], str):
        return f"$ {clipped(tool_input['command'], INPUT_LIMIT)}"
    texts = {key: value for key, value in tool_input.items() if isinstance(value, str) and "\n" in value}
    fields = {key: value for key, value in tool_input.items() if key not in texts}
    shown = [clipped(json.dumps(fields, ensure_ascii=False), INPUT_LIMIT)]
    shown += [f"  {key}:\n{clipped(value, INPUT_LIMIT)}" for key, value in texts.items()]
    return "\n".join(shown)


def result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) if part.get("type") == "text" else f"[{part.get('type')}]"
                         for part in content if isinstance(part, Mapping))
    return ""


def as_json(issue: IssueRef, runs: Sequence[tuple[RunRecord, Sequence[Conversation]]]) -> dict[str, Any]:
    """The same runs as data: every block as stored, thinking and system prompts included."""
    return {"issue": issue.key, "runs": [
        {"run": record.run, "label": record.label, "worker": record.worker,
         "started_at": datetime.fromtimestamp(record.started_at, timezone.utc).isoformat(),
         "steps": [{"step": c.step, "role": c.role, "revision": c.revision, "model": c.model, "system": c.system,
                    "messages": c.messages, **({"left_out": c.left_out} if c.left_out else {})}
                   for c in conversations]}
        for record, conversations in runs]}
