"""The tool-use loop: call the model, run every tool it asks for, answer with one user turn, repeat.

What comes after a reply depends on why it stopped (its `stop_reason`, as the Messages API documents it):
- `tool_use`: every tool it asked for runs, and one user turn carries all the results;
- `end_turn` (or `stop_sequence`): the role is done, unless it must still answer through its final tool;
- `max_tokens`: the reply was cut at the output limit. A tool call cut in the middle is not run (its
  result says why); a cut text is followed by a user turn that says so. The model goes on from there,
  within the turn and spend caps;
- `pause_turn`: the model paused a long turn; the conversation goes back as it is, and the next reply
  continues the same assistant turn;
- `refusal`: the model declined; the role stops (ModelRefused);
- `model_context_window_exceeded`: input and output filled the context window. That reply is dropped,
  the conversation trimmed below what overflowed, and the call made again, once.

Assistant turns go back exactly as the API returned them, thinking and redacted_thinking blocks and
their signatures included: models that bind thinking to the conversation refuse a request whose
blocks were dropped, moved or altered.

The context guard: before each call, a conversation that would not fit the model's context window
(about four characters a token, against the window less `max_tokens`) is trimmed in place. The oldest
tool results go first, each replaced by a note of how many characters were dropped. The first user turn
(the issue), the latest turn and every assistant block, thinking included, are never touched, and each
tool_use keeps its tool_result. Trimming edits earlier turns, which invalidates the thinking blocks
after the edit on those models; from then on every call says so to the model client, which asks the
API to drop those blocks rather than refuse the request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from asm.agents.tools import ToolResult
from asm.errors import AsmError, ModelRefused, PromptTooLong, TurnLimitReached
from asm.spend.cost import MAX_OUTPUT_TOKENS, Usage

if TYPE_CHECKING:  # the SDK takes seconds to import; `asm status` should not pay for it
    from anthropic.types import Message, MessageParam, TextBlockParam, ToolUnionParam

log = logging.getLogger(__name__)

CACHE = {"type": "ephemeral"}
THINKING = ("thinking", "redacted_thinking")
# The estimate the guard (and the sandbox's tokenizer stand-in) uses: about four characters a token.
CHARS_PER_TOKEN = 4
# After the API said a request overflowed, the retry is at least this much smaller than it was.
OVERFLOW_SHRINK = 0.75
# The API refuses an empty assistant turn in the history: an empty reply is kept as this text, which
# is never taken for what the role said.
NO_REPLY = "(no reply)"
TRIM_NOTE = "characters of this tool result were dropped to fit the model's context window]"
CUT_TEXT = ("Your last reply was cut off at the output limit (max_tokens). Go on from where it stopped, "
            "in shorter steps.")
CUT_CALL = ("Not run: your reply was cut off at the output limit (max_tokens) before this call's input was "
            "complete. Make the call again; split a large input (a long file) over several calls.")


class Meter(Protocol):
    """Stands between the agent and the model's bill: may refuse a call, records every charge."""

    def before_call(self, prompt_characters: int, max_output_tokens: int, model: str) -> None:
        """Raise (BudgetExceeded, ClaimLost, ...) when the next call, to `model`, must not happen."""

    def charge(self, usage: Usage, model: str) -> float:
        """Record what a call to `model` cost, the moment it is billed; its USD."""

    def call_failed(self) -> None:
        """The call raised and was not billed."""

    def check(self) -> None:
        """Raise when the run must stop (deadline, claim), without reserving anything."""


class Completer(Protocol):
    model: str  # the model's id: what its calls are priced as
    context_window: int  # tokens a request may hold, input and output together

    def create(self, *, system: Sequence[TextBlockParam], messages: Sequence[MessageParam],
               tools: Sequence[ToolUnionParam], checkpoint: Callable[[], None],
               history_edited: bool = False) -> Message: ...


Tool = Callable[[Mapping[str, Any]], ToolResult]
# Keeps a role's conversation so far (system prompt, messages), in place of what it kept before.
SaveConversation = Callable[[str, Sequence[Mapping[str, Any]]], None]


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
    final_tool: str | None = None
    final_input: Mapping[str, Any] = field(default_factory=dict)
    tool_seconds: float = 0.0


class Agent:
    """One role's run: a model, the tools it may use, and the meter every call goes through."""

    def __init__(self, model: Completer, tools: Mapping[str, Tool], tool_definitions: Sequence[dict[str, Any]],
                 meter: Meter, max_turns: int, transcript: SaveConversation | None = None) -> None:
        self.model = model
        self.tools = tools
        self.tool_definitions = list(tool_definitions)
        self.meter = meter
        self.max_turns = max_turns
        self.transcript = transcript
        self.tool_seconds = 0.0
        self.calls = 0  # model calls billed, with their tokens and USD: the role's share of the spend
        self.usage = Usage()
        self.usd = 0.0
        self.room = 0  # characters the conversation may take, set per run
        self.request_chars = 0  # the size of the latest request
        self.history_edited = False  # the guard has trimmed earlier turns of this run's conversation
        self.overflowed = False  # the latest call filled the context window

    def run(self, system: str, task: str, final_tools: Sequence[FinalTool] = ()) -> AgentResult:
        """Work on `task` until the model stops asking for tools (or calls a final tool)."""
        finals = {tool.name: tool for tool in final_tools}
        definitions = self.tool_definitions + [tool.definition for tool in final_tools]
        messages: list[dict[str, Any]] = [user_text(task)]
        self.room = (self.model.context_window - MAX_OUTPUT_TOKENS) * CHARS_PER_TOKEN  # characters
        self.history_edited = self.overflowed = False
        try:
            for _ in range(self.max_turns):
                result = self.step(system, messages, definitions, finals)
                self.save(system, messages)  # every turn: a worker killed mid-run leaves its conversation
                if result is not None:
                    return result
            raise TurnLimitReached(f"stopped after {self.max_turns} turns without finishing")
        finally:
            self.save(system, messages)

    def step(self, system: str, messages: list[dict[str, Any]], definitions: list[dict[str, Any]],
             finals: Mapping[str, FinalTool]) -> AgentResult | None:
        """One model call and what its stop reason asks for; the role's result once it is done."""
        try:
            reply = self.call(system, messages, definitions)
        except PromptTooLong as too_long:  # the guard's estimate was short of the API's count
            self.overflow(too_long.counted_tokens)
            return None
        if reply.stop_reason == "model_context_window_exceeded":
            usage = Usage.from_api(reply.usage)
            self.overflow(usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens)
            return None
        self.overflowed = False
        if reply.stop_reason == "pause_turn" and not reply.content:
            return None  # nothing to continue from: the same conversation goes back
        record(messages, reply)
        if reply.stop_reason == "refusal":
            raise ModelRefused(refusal_text(reply))
        if reply.stop_reason == "pause_turn":
            return None  # the paused turn goes back as it is, and the model continues it
        return self.respond(messages, finals, cut=reply.stop_reason == "max_tokens")

    def call(self, system: str, messages: list[dict[str, Any]], definitions: list[dict[str, Any]]) -> Message:
        request = self.fitted(system, messages, definitions)
        self.request_chars = len(json.dumps(request, default=str))
        self.meter.before_call(self.request_chars, MAX_OUTPUT_TOKENS, self.model.model)
        try:
            reply = self.model.create(**request, checkpoint=self.meter.check, history_edited=self.history_edited)
        except BaseException:
            self.meter.call_failed()
            raise
        usage = Usage.from_api(reply.usage)
        self.usd += self.meter.charge(usage, self.model.model)  # billed already, whatever the reply turns out to hold
        self.calls += 1
        self.usage += usage
        return reply

    def respond(self, messages: list[dict[str, Any]], finals: Mapping[str, FinalTool],
                cut: bool) -> AgentResult | None:
        """Answer the latest assistant turn with the next user turn; the role's result when it is done."""
        turn = messages[-1]["content"]
        uses = [block for block in turn if block.get("type") == "tool_use"]
        if not uses and not cut:
            return self.finish(turn, messages, finals)
        partial = turn[-1]["id"] if cut and turn[-1].get("type") == "tool_use" else None
        results, result = self.answer(uses, finals, partial, text_of(turn))
        if result is not None:
            return result
        if cut and partial is None:
            results.append({"type": "text", "text": CUT_TEXT})
        messages.append({"role": "user", "content": results})
        return None

    def finish(self, turn: list[dict[str, Any]], messages: list[dict[str, Any]],
               finals: Mapping[str, FinalTool]) -> AgentResult | None:
        required = [name for name, tool in finals.items() if tool.required]
        if required:
            messages.append(user_text(f"You have not finished: call {' or '.join(required)} to give your answer."))
            return None
        return AgentResult(text_of(turn), tool_seconds=self.tool_seconds)

    def answer(self, uses: list[dict[str, Any]], finals: Mapping[str, FinalTool], partial: str | None,
               summary: str) -> tuple[list[dict[str, Any]], AgentResult | None]:
        """A result for every tool call, or the role's result when a final tool was validly called."""
        results: list[dict[str, Any]] = []
        for use in uses:
            final = finals.get(use["name"])
            if use["id"] == partial:
                outcome = ToolResult(CUT_CALL, is_error=True)
            elif final is None:
                outcome = self.execute(use["name"], use["input"])
            else:
                problem = final.validate(use["input"])
                if problem is None:
                    return results, AgentResult(summary, final.name, dict(use["input"]), self.tool_seconds)
                outcome = ToolResult(problem, is_error=True)
            results.append(tool_result(use["id"], outcome))
        return results, None

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

    # -- the context guard ----------------------------------------------------------------------------

    def fitted(self, system: str, messages: list[dict[str, Any]],
               definitions: list[dict[str, Any]]) -> dict[str, Any]:
        """The request, once the conversation fits the context window (trimmed in place if it had to be)."""
        request = build_request(system, messages, definitions)
        excess = len(json.dumps(request, default=str)) - self.room
        if excess <= 0:
            return request
        if trim_tool_results(messages, excess):
            self.history_edited = True
            request = build_request(system, messages, definitions)
        if len(json.dumps(request, default=str)) > self.room:
            raise AsmError(f"the conversation no longer fits the model's context window "
                           f"({self.model.context_window:,} tokens), even with every earlier tool result dropped")
        log.info("trimmed earlier tool results to fit the model's context window")
        return request

    def overflow(self, counted: int | None) -> None:
        """The API counted more than the guard estimated (a reply stopped at the window, or a 400 for the
        prompt): aim below what overflowed, scaled by the API's own count of that request when it gave
        one, and let the next call try again (once)."""
        if self.overflowed:
            raise AsmError(f"the model's context window ({self.model.context_window:,} tokens) filled up again "
                           "right after the conversation was trimmed to fit it")
        self.overflowed = True
        room_tokens = self.model.context_window - MAX_OUTPUT_TOKENS
        scale = min(room_tokens / counted, OVERFLOW_SHRINK) if counted else OVERFLOW_SHRINK
        self.room = min(self.room, int(self.request_chars * scale))
        log.warning("the reply filled the model's context window; trimming to %d characters and retrying", self.room)

    def save(self, system: str, messages: list[dict[str, Any]]) -> None:
        """Keep the whole conversation, for a person to read after the run (`asm transcript`)."""
        if self.transcript is not None:
            self.transcript(system, messages)


def trim_tool_results(messages: list[dict[str, Any]], excess: int) -> int:
    """Replace the oldest tool results by a note of their size until `excess` characters are gone; what went.

    Neither the first user turn (the issue) nor the latest turn is touched (when that is a paused assistant
    turn, nor the user turn it answers), and blocks stay where they are, so every tool_use keeps its
    tool_result."""
    dropped = 0
    kept = 2 if messages[-1]["role"] == "assistant" else 1
    for message in messages[1:-kept]:
        blocks = message["content"] if message["role"] == "user" else []
        for block in blocks:
            content = block.get("content", "") if block.get("type") == "tool_result" else ""
            if dropped >= excess:
                return dropped
            if isinstance(content, str) and content.endswith(TRIM_NOTE):
                continue  # trimmed already
            size = len(content) if isinstance(content, str) else len(json.dumps(content))
            note = f"[{size:,} {TRIM_NOTE}"
            saved = len(json.dumps(content)) - len(json.dumps(note))
            if saved > 0:
                block["content"] = note
                dropped += saved
    return dropped


def record(messages: list[dict[str, Any]], reply: Message) -> None:
    """Add the reply to the conversation: a new assistant turn, or the rest of a paused one."""
    content = [as_param(block) for block in reply.content]
    if messages[-1]["role"] == "assistant":
        messages[-1]["content"].extend(content)
    else:
        # The API refuses an empty assistant turn in the history; a reply with nothing in it (it happens)
        # is kept as a placeholder text.
        messages.append({"role": "assistant", "content": content or [{"type": "text", "text": NO_REPLY}]})


def as_param(block: Any) -> dict[str, Any]:
    """A reply block as the dict the next request must carry: exactly as the API sent it, every field it
    set (a thinking block's empty text and signature, opaque data, a text's citations, a tool call's
    caller) and nothing it did not."""
    param: dict[str, Any] = block.to_dict()
    return param


def refusal_text(reply: Message) -> str:
    """Why the model declined, as the API put it (a comment quotes it after "Its reply ended in a refusal: ")."""
    details = getattr(reply, "stop_details", None)
    category, explanation = (details.category, details.explanation) if details is not None else (None, None)
    reason = f'"{explanation.rstrip(".")}"' if explanation else "no reason given"
    return f"policy area `{category}`, {reason}" if category else reason


def tool_result(tool_use_id: str, result: ToolResult) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "content": result.content, "is_error": result.is_error}


def user_text(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def text_of(turn: Sequence[Mapping[str, Any]]) -> str:
    """What the turn says, without the placeholder asm put in for an empty reply."""
    return "\n".join(block["text"] for block in turn if block.get("type") == "text" and block["text"] != NO_REPLY
                     ).strip()


def build_request(system: str, messages: Sequence[dict[str, Any]],
                  definitions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"system": [{"type": "text", "text": system, "cache_control": CACHE}],
            "messages": with_rolling_cache_point(messages), "tools": with_cache_point(definitions)}


def with_cache_point(definitions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the end of the tool list, so tools (the start of the prefix) are read from the cache."""
    marked = [dict(definition) for definition in definitions]
    if marked:
        marked[-1]["cache_control"] = CACHE
    return marked


def with_rolling_cache_point(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the newest block that may carry a breakpoint, so each turn reads every earlier turn from the
    cache and adds one write. Thinking blocks may not (and must go back unchanged): a paused turn of only
    thinking leaves the mark on the turn before. The conversation itself is not changed."""
    marked = list(messages)
    for index in range(len(marked) - 1, -1, -1):
        content = marked[index]["content"]
        spots = [k for k, block in enumerate(content) if block.get("type") not in THINKING]
        if spots:
            blocks = list(content)
            blocks[spots[-1]] = {**content[spots[-1]], "cache_control": CACHE}
            marked[index] = {**marked[index], "content": blocks}
            break
    return marked
