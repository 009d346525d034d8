"""The tool-use loop: call the model, run every tool it asks for, answer with one user turn, repeat."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from asm.agents.tools import ToolResult
from asm.errors import TurnLimitReached
from asm.spend.cost import MAX_OUTPUT_TOKENS, Usage

if TYPE_CHECKING:  # the SDK takes seconds to import; `asm status` should not pay for it
    from anthropic.types import Message

log = logging.getLogger(__name__)

CACHE = {"type": "ephemeral"}


class Meter(Protocol):
    """Stands between the agent and the model's bill: may refuse a call, records every charge."""

    def before_call(self, prompt_characters: int, max_output_tokens: int) -> None:
        """Raise (BudgetExceeded, ClaimLost, ...) when the next call must not happen."""

    def charge(self, usage: Usage) -> None:
        """Record what a call cost, the moment it is billed."""

    def call_failed(self) -> None:
        """The call raised and was not billed."""

    def check(self) -> None:
        """Raise when the run must stop (deadline, claim), without reserving anything."""


class Completer(Protocol):
    def create(self, *, system: Sequence[dict[str, Any]], messages: Sequence[dict[str, Any]],
               tools: Sequence[dict[str, Any]], checkpoint: Callable[[], None]) -> Message: ...


Tool = Callable[[Mapping[str, Any]], ToolResult]


@dataclass(frozen=True)
class FinalTool:
    """A tool whose valid call ends the run with its input as the answer (the PO's decision)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    validate: Callable[[Mapping[str, Any]], str | None] = lambda _: None
    required: bool = False  # the run may only end through this tool

    @property
    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


@dataclass(frozen=True)
class AgentResult:
    """How a run ended: the last words, or the final tool's input."""

    summary: str
    turns: int
    usage: Usage
    final_tool: str | None = None
    final_input: Mapping[str, Any] = field(default_factory=dict)
    tool_seconds: float = 0.0


class Agent:
    """One role's run: a model, the tools it may use, and the meter every call goes through."""

    def __init__(self, model: Completer, tools: Mapping[str, Tool], tool_definitions: Sequence[dict[str, Any]],
                 meter: Meter, max_turns: int, transcript: Path | None = None,
                 redact: Callable[[str], str] = lambda text: text) -> None:
        self.model = model
        self.tools = tools
        self.tool_definitions = list(tool_definitions)
        self.meter = meter
        self.max_turns = max_turns
        self.transcript = transcript
        self.redact = redact
        self.tool_seconds = 0.0

    def run(self, system: str, task: str, final_tools: Sequence[FinalTool] = ()) -> AgentResult:
        """Work on `task` until the model stops asking for tools (or calls a final tool)."""
        finals = {tool.name: tool for tool in final_tools}
        definitions = self.tool_definitions + [tool.definition for tool in final_tools]
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": task}]}]
        usage = Usage()
        try:
            for turn in range(1, self.max_turns + 1):
                request = {"system": [{"type": "text", "text": system, "cache_control": CACHE}],
                           "messages": with_rolling_cache_point(messages), "tools": with_cache_point(definitions)}
                self.meter.before_call(len(json.dumps(request, default=str)), MAX_OUTPUT_TOKENS)
                try:
                    reply = self.model.create(**request, checkpoint=self.meter.check)
                except BaseException:
                    self.meter.call_failed()
                    raise
                turn_usage = Usage.from_api(reply.usage)
                self.meter.charge(turn_usage)  # billed already, whatever the reply turns out to hold
                usage += turn_usage
                # The API refuses an empty assistant turn in the history; a reply with nothing in it
                # (it happens) is kept as a placeholder text.
                content = [as_param(block) for block in reply.content] or [{"type": "text", "text": "(no reply)"}]
                messages.append({"role": "assistant", "content": content})
                uses = [block for block in reply.content if block.type == "tool_use"]
                if not uses:
                    required = [name for name, tool in finals.items() if tool.required]
                    if required:
                        names = " or ".join(required)
                        messages.append(user_text(f"You have not finished: call {names} to give your answer."))
                        continue
                    return AgentResult(text_of(reply), turn, usage, tool_seconds=self.tool_seconds)
                results = []
                for use in uses:
                    final = finals.get(use.name)
                    if final is not None:
                        problem = final.validate(use.input)
                        if problem is None:
                            return AgentResult(text_of(reply), turn, usage, final.name, dict(use.input),
                                               self.tool_seconds)
                        results.append(tool_result(use.id, ToolResult(problem, is_error=True)))
                    else:
                        results.append(tool_result(use.id, self.execute(use.name, use.input)))
                messages.append({"role": "user", "content": results})
            raise TurnLimitReached(f"stopped after {self.max_turns} turns without finishing")
        finally:
            self.save(system, messages)

    def execute(self, name: str, tool_input: Mapping[str, Any]) -> ToolResult:
        tool = self.tools.get(name)
        if tool is None:
            return ToolResult(f"there is no tool named {name!r}", is_error=True)
        if not isinstance(tool_input, Mapping):
            return ToolResult("the tool input must be an object", is_error=True)
        log.debug("tool %s %s", name, tool_input.get("command", ""))
        started = time.monotonic()
        try:
            return tool(tool_input)
        finally:
            self.tool_seconds += time.monotonic() - started

    def save(self, system: str, messages: list[dict[str, Any]]) -> None:
        """Keep the whole conversation on disk, for a person to read after the run: redacted, owner-only."""
        if self.transcript is None:
            return
        write_private(self.transcript, self.redact(json.dumps({"system": system, "messages": messages}, indent=1,
                                                              default=str)))


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, in directories only its owner may enter."""
    for directory in reversed((path.parent, *path.parent.parents)):
        if not directory.exists():
            directory.mkdir(mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def as_param(block: Any) -> dict[str, Any]:
    """A reply block as the dict the next request must carry."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(exclude_none=True)


def tool_result(tool_use_id: str, result: ToolResult) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": result.content, "is_error": result.is_error}


def user_text(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def text_of(reply: Message) -> str:
    return "\n".join(block.text for block in reply.content if block.type == "text").strip()


def with_cache_point(definitions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the end of the tool list, so tools (the start of the prefix) are read from the cache."""
    marked = [dict(definition) for definition in definitions]
    if marked:
        marked[-1]["cache_control"] = CACHE
    return marked


def with_rolling_cache_point(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the newest block, so each turn reads every earlier turn from the cache and adds one write."""
    marked = list(messages)
    last = dict(marked[-1])
    content = [dict(block) for block in last["content"]]
    content[-1]["cache_control"] = CACHE
    last["content"] = content
    marked[-1] = last
    return marked
