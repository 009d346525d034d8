"""Anthropic's text editor tool (`text_editor_20250728`), confined to the issue's working tree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from asm.agents.tools import (
    EDITOR_TOOL,
    MAX_VIEW_CHARACTERS,
    ToolResult,
    WorkingTree,
    truncate,
)
from asm.guard.treefs import ConfinedTree, TreeRefused

Handler = Callable[[str, Mapping[str, Any]], str]


class EditorTool:
    """Anthropic's text editor (`text_editor_20250728`): view, create, str_replace, insert.

    Every file access goes through a ConfinedTree, so links, special files and paths outside the
    tree are refused even when the tree changes under the call; every refusal is an error result.
    """

    definition = EDITOR_TOOL

    def __init__(self, tree: WorkingTree) -> None:
        self.tree = tree
        self.files = ConfinedTree(tree.root, tree.shown_root, tree.owner)

    def __call__(self, tool_input: Mapping[str, Any]) -> ToolResult:
        command = tool_input.get("command")
        handlers: dict[str, Handler] = {"view": self.view, "create": self.create,
                                        "str_replace": self.str_replace, "insert": self.insert}
        handler = handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return ToolResult(f"unknown command {command!r}; use view, create, str_replace or insert", is_error=True)
        # Not caught: a tree that could not be made (a failed clone) ends the run, it is not the model's to fix.
        self.tree.ready()
        try:
            path = self.files.relative(tool_input.get("path"))
        except TreeRefused as refusal:
            return ToolResult(str(refusal), is_error=True)
        try:
            return ToolResult(handler(path, tool_input))
        except (TreeRefused, ValueError) as refusal:
            return ToolResult(str(refusal), is_error=True)
        except OSError as problem:  # the disk's answer (full, read-only, permission), not a refusal
            return ToolResult(f"{command} `{path}` failed: {problem.strerror or problem}", is_error=True)

    def view(self, path: str, tool_input: Mapping[str, Any]) -> str:
        """A directory's listing (two levels), or a file's numbered lines, all or `view_range`."""
        if self.files.is_directory(path):
            return truncate("\n".join(self.files.listing(path)) or "(empty directory)", MAX_VIEW_CHARACTERS)
        lines = self.files.read_text(path).splitlines()
        start, end = _line_range(tool_input.get("view_range"), len(lines))
        numbered = "\n".join(f"{number}: {lines[number - 1]}" for number in range(start, end + 1))
        return truncate(numbered or "(empty file)", MAX_VIEW_CHARACTERS)

    def create(self, path: str, tool_input: Mapping[str, Any]) -> str:
        """Write `file_text` to `path`, making missing directories; an existing file is overwritten."""
        text = tool_input.get("file_text")
        if not isinstance(text, str):
            raise ValueError("file_text is required")
        self.files.write_text(path, text)
        return f"Created {path}"

    def str_replace(self, path: str, tool_input: Mapping[str, Any]) -> str:
        """Replace the one occurrence of `old_str` with `new_str` (empty when absent)."""
        old, new = tool_input.get("old_str"), tool_input.get("new_str", "")
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise ValueError("old_str (non-empty) and new_str are required")

        def replace(text: str) -> str:
            count = text.count(old)
            if count != 1:
                where = "no match" if count == 0 else f"{count} matches"
                raise ValueError(f"old_str must match exactly once in {path}; found {where}")
            return text.replace(old, new, 1)

        self.files.edit_text(path, replace)
        return f"Edited {path}"

    def insert(self, path: str, tool_input: Mapping[str, Any]) -> str:
        """Insert `insert_text` after line `insert_line` (0: at the top)."""
        # The model sends `insert_text`; older documentation said `new_str`. Accept both.
        text = tool_input.get("insert_text", tool_input.get("new_str"))
        line = tool_input.get("insert_line")
        if not isinstance(text, str) or not _is_number(line):
            raise ValueError("insert_line (a number) and insert_text are required")

        def insert(content: str) -> str:
            lines = content.splitlines(keepends=True)
            if not 0 <= line <= len(lines):
                raise ValueError(f"insert_line {line} is outside 0..{len(lines)}")
            if lines and not lines[-1].endswith("\n") and line == len(lines):
                lines[-1] += "\n"
            lines.insert(line, text if text.endswith("\n") else text + "\n")
            return "".join(lines)

        self.files.edit_text(path, insert)
        return f"Inserted after line {line} of {path}"


def _line_range(view_range: object, count: int) -> tuple[int, int]:
    """First and last line numbers (1-based, inclusive) that `view_range` asks for, or ValueError."""
    if not view_range:
        return 1, count
    if not (isinstance(view_range, list) and len(view_range) == 2 and all(map(_is_number, view_range))):
        raise ValueError("view_range must be [start, end], two line numbers (end -1: to the last line)")
    start, end = view_range
    end = count if end == -1 else end
    if not 1 <= start <= max(end, 1) or end > count:
        raise ValueError(f"view_range {view_range} is outside the file's {count} lines")
    return start, end


def _is_number(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
