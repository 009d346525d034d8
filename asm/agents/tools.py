"""The agent's hands: Anthropic's `bash` tool, and what every tool shares (results, the working tree).

Every tool returns a ToolResult; nothing here raises on a bad request from the model, because a
failed tool call is information for the model (`is_error: true`), not a reason to stop the run.
The editor tool lives in `asm.agents.editor`; where commands run, in `asm.guard.jail`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from asm.guard.jail import Jail, tool_environment

BASH_TOOL = {"type": "bash_20250124", "name": "bash"}
EDITOR_TOOL_NAME = "str_replace_based_edit_tool"
MAX_VIEW_CHARACTERS = 16_000
EDITOR_TOOL = {"type": "text_editor_20250728", "name": EDITOR_TOOL_NAME, "max_characters": MAX_VIEW_CHARACTERS}

COMMAND_TIMEOUT_SECONDS = 180
MAX_OUTPUT_CHARACTERS = 12_000


@dataclass(frozen=True)
class ToolResult:
    """What one tool call returns to the model."""

    content: str
    is_error: bool = False


@dataclass(frozen=True)
class WorkingTree:
    """The issue's working tree as the agents' tools see it.

    `root` is where it lives on this machine; `shown_root` is the path tool commands and the model
    use for it (`/workspace` inside the sandbox, `root` itself without one). `scratch` is the issue's
    own /tmp inside the sandbox. `owner` is the (uid, gid) that files written for the agents must
    belong to, when tool commands run as another user. `ready` blocks until the tree exists: asm
    clones while the model thinks about its first turn.
    """

    root: Path
    shown_root: str
    scratch: Path | None = None  # the editor does without; bash needs it
    owner: tuple[int, int] | None = None
    ready: Callable[[], object] = lambda: None


def truncate(text: str, limit: int = MAX_OUTPUT_CHARACTERS) -> str:
    """Keep the head and the tail of long output, where errors and summaries are."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


class BashTool:
    """Runs one shell command in the working tree, in the sandbox, with a timeout and truncated output.

    Each command runs in a fresh sandbox: nothing it starts outlives the call.
    """

    definition = BASH_TOOL

    def __init__(self, tree: WorkingTree, jail: Jail, timeout: float = COMMAND_TIMEOUT_SECONDS) -> None:
        if tree.scratch is None:
            raise ValueError("bash needs the working tree's scratch directory")
        self.tree = tree
        self.scratch = tree.scratch
        self.jail = jail
        self.timeout = timeout
        self.env = tool_environment()

    def __call__(self, tool_input: Mapping[str, Any]) -> ToolResult:
        if tool_input.get("restart"):
            # Each command runs in a fresh shell, so there is no session to restart.
            return ToolResult("The shell was restarted. Commands run from the repository root.")
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip():
            return ToolResult("`command` is required", is_error=True)
        self.tree.ready()
        return self.run(command)

    def run(self, command: str) -> ToolResult:
        # Output goes to a file, not a pipe: a chatty command would otherwise fill our memory.
        with tempfile.TemporaryFile() as output:
            finished = self.jail.run(command, self.tree.root, self.scratch, self.env, output,
                                     timeout=self.timeout)
            text = read_head_and_tail(output)
        text += "".join(f"\n[{note}]" for note in finished.notes)
        if finished.stopped:
            return ToolResult(f"{text}\n[{finished.stopped}]", is_error=True)
        if finished.exit_code != 0:
            return ToolResult(f"{text or '(no output)'}\n[exit code {finished.exit_code}]", is_error=True)
        return ToolResult(text or "(no output)")


def read_head_and_tail(output: IO[bytes], limit: int = MAX_OUTPUT_CHARACTERS) -> str:
    """The start and the end of a command's output, without reading the middle into memory."""
    size = output.seek(0, os.SEEK_END)
    half = limit // 2
    if size <= limit:
        output.seek(0)
        return output.read().decode(errors="replace")
    output.seek(0)
    head = output.read(half).decode(errors="replace")
    output.seek(size - half)
    tail = output.read().decode(errors="replace")
    return f"{head}\n[... {size - limit} bytes cut ...]\n{tail}"
