"""The agent's hands: Anthropic's `bash` and text editor tools, confined to one workspace.

Every tool returns a ToolResult; nothing here raises on a bad request from the model, because a
failed tool call is information for the model (`is_error: true`), not a reason to stop the run.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BASH_TOOL = {"type": "bash_20250124", "name": "bash"}
EDITOR_TOOL_NAME = "str_replace_based_edit_tool"
MAX_VIEW_CHARACTERS = 16_000
EDITOR_TOOL = {"type": "text_editor_20250728", "name": EDITOR_TOOL_NAME, "max_characters": MAX_VIEW_CHARACTERS}

COMMAND_TIMEOUT_SECONDS = 180
MAX_OUTPUT_CHARACTERS = 12_000
MAX_FILE_BYTES = 1 << 30
RUN_MARKER = "ASM_TOOL_RUN"
# What a tool command may inherit from the worker: enough to find programs and behave, no secret.
INHERITED_VARIABLES = ("PATH", "LANG", "LC_ALL", "TZ", "PYENV_ROOT", "VIRTUAL_ENV")


@dataclass(frozen=True)
class ToolResult:
    """What one tool call returns to the model."""

    content: str
    is_error: bool = False


def truncate(text: str, limit: int = MAX_OUTPUT_CHARACTERS) -> str:
    """Keep the head and the tail of long output, where errors and summaries are."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters cut ...]\n{text[-half:]}"


def tool_identity(user: str) -> tuple[int, int] | None:
    """(uid, gid) of the user named by ASM_TOOL_USER, or None to run tools as the worker itself."""
    if not user:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def tool_environment(home: Path, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for tool commands: an allow-list, never the worker's secrets."""
    source = os.environ if inherited is None else inherited
    env = {name: source[name] for name in INHERITED_VARIABLES if name in source}
    # The worker's own Python comes first: `python` is then a real interpreter, not a version
    # manager's shim that costs a tenth of a second per call, and it has a known version.
    interpreter_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(filter(None, [interpreter_dir, env.get("PATH", os.defpath)]))
    env.update(
        HOME=str(home),
        TERM="dumb",
        PAGER="cat",
        GIT_PAGER="cat",
        GIT_TERMINAL_PROMPT="0",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        # The working tree may belong to ASM_TOOL_USER while .git stays the worker's: let git read it.
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="safe.directory",
        GIT_CONFIG_VALUE_0="*",
    )
    env.setdefault("LANG", "C.UTF-8")
    return env


class Workspace:
    """The directory tools may touch, and the resolution of paths the model gives.

    `ready` blocks until the directory exists: asm clones while the model thinks about its first turn.
    """

    def __init__(self, root: Path, home: Path, ready: Callable[[], object] = lambda: None,
                 owner: tuple[int, int] | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.home = home
        self.ready = ready
        self.owner = owner  # (uid, gid) tool commands run as, when not the worker's own

    def identity(self) -> dict[str, Any]:
        """Popen arguments that run a tool command as the workspace's owner."""
        if self.owner is None:
            return {}
        return {"user": self.owner[0], "group": self.owner[1], "extra_groups": []}

    def hand_over(self, path: Path) -> None:
        """Give a file the editor wrote (and the directories it made) to the owner tool commands run as."""
        if self.owner is None:
            return
        for part in (path, *path.parents):
            if part == self.root or self.root not in part.parents:
                break
            os.lchown(part, *self.owner)

    def resolve(self, path: str) -> Path:
        """An absolute path inside the workspace, or ValueError; symlinks are followed before checking."""
        if not path or "\x00" in path:
            raise ValueError("a path is required")
        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            raise ValueError(f"{path} is outside the repository at {self.root}; only paths inside it are allowed")
        if ".git" in real.relative_to(self.root).parts[:1]:
            raise ValueError("the .git directory is managed by asm and cannot be edited")
        return real


class BashTool:
    """Runs one shell command in the workspace, with a timeout, a clean environment and truncated output.

    Everything the command starts is killed when it returns: its process group, and any process
    that left the group (`setsid`, `nohup`) but still carries this run's marker in its environment.
    """

    definition = BASH_TOOL

    def __init__(self, workspace: Workspace, timeout: float = COMMAND_TIMEOUT_SECONDS) -> None:
        self.workspace = workspace
        self.timeout = timeout
        self.env = tool_environment(workspace.home)

    def __call__(self, tool_input: Mapping[str, Any]) -> ToolResult:
        if tool_input.get("restart"):
            # Each command runs in a fresh shell, so there is no session to restart.
            return ToolResult("The shell was restarted. Commands run from the repository root.")
        command = tool_input.get("command")
        if not isinstance(command, str) or not command.strip():
            return ToolResult("`command` is required", is_error=True)
        self.workspace.ready()
        return self.run(command)

    def run(self, command: str) -> ToolResult:
        marker = secrets.token_hex(8)
        # Output goes to a file, not a pipe: a background process keeping the pipe open would
        # otherwise hold the call until the timeout, and a chatty one would fill our memory.
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                # `ulimit -f` first: no file the command writes (its output included) grows past
                # MAX_FILE_BYTES. Set in the shell, not by a preexec_fn, which would make every
                # spawn a full fork of this (large) worker process.
                ["bash", "-c", f"ulimit -f {MAX_FILE_BYTES // 1024}\n{command}"],
                cwd=self.workspace.root,
                env={**self.env, RUN_MARKER: marker},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one process group to kill at the end
                **self.workspace.identity(),
            )
            timed_out = False
            try:
                process.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(process.pid)
                _kill_marked(marker)
                process.wait()
            text = read_head_and_tail(output)
        if timed_out:
            return ToolResult(f"{text}\n[timed out after {self.timeout:g}s and was killed]", is_error=True)
        if process.returncode != 0:
            return ToolResult(f"{text or '(no output)'}\n[exit code {process.returncode}]", is_error=True)
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


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_marked(marker: str) -> None:
    """Kill what escaped the process group but still carries this run's marker (best effort:
    a process that scrubbed its environment can only be contained by a pid namespace)."""
    needle = f"{RUN_MARKER}={marker}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone, or not ours to read


class EditorTool:
    """Anthropic's text editor (`text_editor_20250728`): view, create, str_replace, insert."""

    definition = EDITOR_TOOL

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def __call__(self, tool_input: Mapping[str, Any]) -> ToolResult:
        command = tool_input.get("command")
        handler = {
            "view": self.view,
            "create": self.create,
            "str_replace": self.str_replace,
            "insert": self.insert,
        }.get(command)  # type: ignore[arg-type]
        if handler is None:
            return ToolResult(f"unknown command {command!r}; use view, create, str_replace or insert", is_error=True)
        self.workspace.ready()
        try:
            path = self.workspace.resolve(str(tool_input.get("path", "")))
            return handler(path, tool_input)
        except (ValueError, TypeError, OSError, UnicodeDecodeError) as problem:
            return ToolResult(str(problem), is_error=True)

    def _shown(self, path: Path) -> str:
        return str(path.relative_to(self.workspace.root)) or "."

    def view(self, path: Path, tool_input: Mapping[str, Any]) -> ToolResult:
        if path.is_dir():
            entries = []
            for entry in sorted(path.rglob("*")):
                relative = entry.relative_to(path)
                if len(relative.parts) > 2 or any(part.startswith(".") for part in relative.parts):
                    continue
                entries.append(f"{self._shown(entry)}{'/' if entry.is_dir() else ''}")
            return ToolResult(truncate("\n".join(entries) or "(empty directory)", MAX_VIEW_CHARACTERS))
        lines = path.read_text().splitlines()
        start, end = 1, len(lines)
        view_range = tool_input.get("view_range")
        if view_range:
            if not (isinstance(view_range, list) and len(view_range) == 2):
                raise ValueError("view_range must be [start, end]")
            start, end = int(view_range[0]), int(view_range[1])
            end = len(lines) if end == -1 else end
            if not 1 <= start <= max(end, 1) or end > len(lines):
                raise ValueError(f"view_range {view_range} is outside the file's {len(lines)} lines")
        numbered = "\n".join(f"{number}: {lines[number - 1]}" for number in range(start, end + 1))
        return ToolResult(truncate(numbered or "(empty file)", MAX_VIEW_CHARACTERS))

    def create(self, path: Path, tool_input: Mapping[str, Any]) -> ToolResult:
        text = tool_input.get("file_text")
        if not isinstance(text, str):
            raise ValueError("file_text is required")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.workspace.hand_over(path)
        return ToolResult(f"Created {self._shown(path)}")

    def str_replace(self, path: Path, tool_input: Mapping[str, Any]) -> ToolResult:
        old, new = tool_input.get("old_str"), tool_input.get("new_str", "")
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise ValueError("old_str (non-empty) and new_str are required")
        text = path.read_text()
        count = text.count(old)
        if count != 1:
            where = "no match" if count == 0 else f"{count} matches"
            raise ValueError(f"old_str must match exactly once in {self._shown(path)}; found {where}")
        path.write_text(text.replace(old, new, 1))
        return ToolResult(f"Edited {self._shown(path)}")

    def insert(self, path: Path, tool_input: Mapping[str, Any]) -> ToolResult:
        # The model sends `insert_text`; older documentation said `new_str`. Accept both.
        text = tool_input.get("insert_text", tool_input.get("new_str"))
        line = tool_input.get("insert_line")
        if not isinstance(text, str) or not isinstance(line, int):
            raise ValueError("insert_line (a number) and insert_text are required")
        lines = path.read_text().splitlines(keepends=True)
        if not 0 <= line <= len(lines):
            raise ValueError(f"insert_line {line} is outside 0..{len(lines)}")
        if lines and not lines[-1].endswith("\n") and line == len(lines):
            lines[-1] += "\n"
        lines.insert(line, text if text.endswith("\n") else text + "\n")
        path.write_text("".join(lines))
        return ToolResult(f"Inserted after line {line} of {self._shown(path)}")
