"""Claude Sonnet 5.5, as the scripted model server plays it: signed thinking blocks, and the API's checks on them.

Sonnet 5.5 thinks adaptively by default. Its reasoning, and its notes between tool calls, come back as
`thinking` blocks (their text empty at the default `display: "omitted"`), now and then as
`redacted_thinking`; each carries a signature (`data` for a redacted one) that ties it to the
conversation before it. Here a signature is an HMAC, under the server's secret, of the reply and the
block's place in it, the thinking block before it in the conversation, a digest of everything before it
(system, tools, every earlier block but thinking ones, `cache_control` left out) and its text.

What a request is refused for, in the API's words:
- a block whose text, signature or data changed: "Invalid `signature` in `thinking` block" (or
  "Invalid `data` in `redacted_thinking` block");
- anything of the latest assistant turn's thinking changed, dropped or moved: "`thinking` or
  `redacted_thinking` blocks in the latest assistant message cannot be modified...";
- a block whose conversation before it is not the one it was made in (an earlier turn edited, a
  thinking block between others dropped or moved): "...The block is bound to a different conversation",
  unless the request sets `thinking.block_binding.prefix_mismatch_behavior: "drop_block"` under the
  `thinking-binding-controls-2026-08-01` beta: such blocks are then dropped, with the rest of their
  turn's consecutive thinking, and listed in `input_transformations`. Dropping a leading run of
  thinking blocks (the oldest first) invalidates nothing;
- forced tool use (`tool_choice` any or tool), a non-default `temperature`, `top_p` or `top_k`, thinking
  `disabled` or `enabled`, and `cache_control` on a thinking block.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

BETA = "thinking-binding-controls-2026-08-01"
THINKING = ("thinking", "redacted_thinking")
MODIFIED = ("`thinking` or `redacted_thinking` blocks in the latest assistant message cannot be modified. "
            "These blocks must remain as they were in the original response.")
BOUND = ("The block is bound to a different conversation. Remove the block, or set "
         "`thinking.block_binding.prefix_mismatch_behavior` to \"drop_block\".")
NEEDS_BETA = f" That setting requires the `{BETA}` value in the `anthropic-beta` header."


@dataclass(frozen=True)
class Spot:
    """A thinking block where a request holds it, and a digest of the conversation before it."""

    i: int
    j: int
    block: Mapping[str, Any]
    before: str

    @property
    def path(self) -> str:
        return f"messages.{self.i}.content.{self.j}"

    def invalid(self) -> str:
        where = "`signature` in `thinking`" if self.block.get("type") == "thinking" else "`data` in `redacted_thinking`"
        return f"{self.path}: Invalid {where} block"


@dataclass
class Verdict:
    """A request's thinking, checked: the 400 it earns, or the blocks to drop (as (message, block) places)."""

    problem: str | None = None
    dropped: list[tuple[int, int]] = field(default_factory=list)


def blocks_of(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def canonical(value: Any) -> bytes:
    if isinstance(value, Mapping):
        value = {k: v for k, v in value.items() if k != "cache_control"}  # moving breakpoints changes nothing
    return json.dumps(value, sort_keys=True, default=str).encode()


def walk(request: Mapping[str, Any]) -> Iterator[Spot]:
    """Every thinking block of the request, in order, with the digest of what precedes it."""
    digest = hashlib.sha256()
    system = request.get("system") or []
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system:
        digest.update(canonical(block))
    for tool in request.get("tools") or []:
        digest.update(canonical(tool))
    for i, message in enumerate(request["messages"]):
        digest.update(f"\n{message['role']}\n".encode())
        for j, block in enumerate(blocks_of(message)):
            if block.get("type") in THINKING:
                yield Spot(i, j, block, digest.hexdigest())
            else:
                digest.update(canonical(block))


def token_of(block: Mapping[str, Any]) -> str:
    return str(block.get("signature") if block.get("type") == "thinking" else block.get("data"))


def text_hash(block: Mapping[str, Any]) -> str:
    text = block.get("thinking", "") if block.get("type") == "thinking" else ""
    return hashlib.sha256(str(text).encode()).hexdigest()[:32]


def ident(payload: Mapping[str, Any]) -> str:
    return f"{payload['r']}.{payload['i']}"


def parameter_problem(request: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """What Sonnet 5.5 refuses in a request's parameters, in the API's words where they are documented."""
    if (request.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return 'tool_choice: type "tool" and "any" are not supported for this model.'
    for name, default in (("temperature", 1), ("top_p", 1), ("top_k", None)):
        if request.get(name) is not None and request[name] != default:
            return f"`{name}` is deprecated for this model."
    thinking = request.get("thinking") or {}
    if thinking.get("type") in ("disabled", "enabled"):
        return (f'thinking.type: "{thinking["type"]}" is not supported for this model. Use "adaptive", '
                'or "between_tools" to turn off up-front thinking.')
    if thinking.get("block_binding") is not None and BETA not in headers.get("anthropic-beta", ""):
        return f"thinking.block_binding: requires the `{BETA}` value in the `anthropic-beta` header."
    for i, message in enumerate(request["messages"]):
        for j, block in enumerate(blocks_of(message)):
            if block.get("type") in THINKING and "cache_control" in block:
                return f"messages.{i}.content.{j}.{block['type']}.cache_control: Extra inputs are not permitted"
    return None


class SonnetThinking:
    """Signs the thinking blocks of replies, and checks the ones requests send back."""

    def __init__(self) -> None:
        self.secret = secrets.token_bytes(32)
        self.lock = threading.Lock()
        self.issued: dict[str, tuple[str, int]] = {}  # tool_use id -> (its reply, thinking blocks in that reply)

    # -- signatures -------------------------------------------------------------------------------

    def seal(self, payload: Mapping[str, Any]) -> str:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        mac = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()
        return base64.b64encode(json.dumps({**payload, "mac": mac}).encode()).decode()

    def open(self, token: str) -> dict[str, Any] | None:
        """The payload of a signature this server made, or None for anything else."""
        try:
            payload = json.loads(base64.b64decode(token, validate=True))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("mac"), str):
            return None
        mac = payload.pop("mac")
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        good = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()
        return payload if hmac.compare_digest(mac, good) else None

    def authentic(self, block: Mapping[str, Any]) -> dict[str, Any] | None:
        payload = self.open(token_of(block))
        if payload is None or payload.get("k") != block.get("type") or payload.get("h") != text_hash(block):
            return None
        return payload

    # -- a request's thinking --------------------------------------------------------------------

    def check(self, request: Mapping[str, Any], headers: Mapping[str, str]) -> Verdict:
        """The request's thinking blocks against their signatures, the latest turn, and their conversation."""
        messages = request["messages"]
        latest = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        answering = latest >= 0 and (latest == len(messages) - 1 or
                                     any(b.get("type") == "tool_use" for b in blocks_of(messages[latest])))
        problem = self.latest_problem(latest, blocks_of(messages[latest])) if answering else None
        if problem:
            return Verdict(problem)
        binding = (request.get("thinking") or {}).get("block_binding") or {}
        dropping = binding.get("prefix_mismatch_behavior") == "drop_block"
        verdict, previous, last = Verdict(), None, (-1, -1)
        for spot in walk(request):
            payload = self.authentic(spot.block)
            if payload is None:
                return Verdict(f"{spot.path}: {MODIFIED}" if spot.i == latest and answering else spot.invalid())
            chained = previous is None or payload["prev"] == previous
            previous = ident(payload)
            with_dropped = last == (spot.i, spot.j - 1)  # the rest of a dropped block's run of thinking goes too
            if payload["p"] == spot.before and chained and not with_dropped:
                continue
            if not dropping:
                hint = "" if BETA in headers.get("anthropic-beta", "") else NEEDS_BETA
                return Verdict(f"{spot.invalid()}. {BOUND}{hint}")
            verdict.dropped.append((spot.i, spot.j))
            last = (spot.i, spot.j)
        return verdict

    def latest_problem(self, i: int, content: list[Mapping[str, Any]]) -> str | None:
        """The latest assistant turn must hold every thinking block of its replies, unchanged, in order."""
        runs: dict[str, list[int]] = {}  # reply -> the places of its blocks, as this turn holds them
        where: dict[str, int] = {}  # reply -> the first of its blocks (or its tool call) in this turn
        counts: dict[str, int] = {}  # reply -> how many thinking blocks it had
        for j, block in enumerate(content):
            if block.get("type") in THINKING:
                payload = self.authentic(block)
                if payload is None:
                    return f"messages.{i}.content.{j}: {MODIFIED}"
                reply, place, count = payload["r"], payload["i"], payload["n"]
            elif block.get("type") == "tool_use":
                with self.lock:
                    reply, count = self.issued.get(str(block.get("id")), ("", 0))
                place = None
            else:
                continue
            if count:
                where.setdefault(reply, j)
                counts[reply] = count
                runs.setdefault(reply, []).extend([] if place is None else [place])
        broken = next((reply for reply, places in runs.items() if places != list(range(counts[reply]))), None)
        return f"messages.{i}.content.{where[broken]}: {MODIFIED}" if broken is not None else None

    # -- a reply's thinking ----------------------------------------------------------------------

    def sign(self, request: Mapping[str, Any], reply: list[dict[str, Any]], reply_id: str) -> list[dict[str, Any]]:
        """The reply with a signature on each of its thinking blocks (their place holders filled)."""
        messages = list(request["messages"])
        offset = 0
        if messages[-1]["role"] == "assistant":  # the rest of a paused turn: its blocks come first
            offset = len(blocks_of(messages[-1]))
            messages[-1] = {"role": "assistant", "content": [*blocks_of(messages[-1]), *reply]}
        else:
            messages.append({"role": "assistant", "content": reply})
        count = sum(1 for block in reply if block["type"] in THINKING)
        signed, previous, index = [dict(block) for block in reply], "", 0
        for spot in walk({**request, "messages": messages}):
            if spot.i < len(messages) - 1 or spot.j < offset:
                payload = self.open(token_of(spot.block))
                previous = ident(payload) if payload else previous
                continue
            block = signed[spot.j - offset]
            payload = {"r": reply_id, "i": index, "n": count, "prev": previous, "p": spot.before,
                       "k": block["type"], "h": text_hash(block)}
            block["signature" if block["type"] == "thinking" else "data"] = self.seal(payload)
            previous, index = ident(payload), index + 1
        with self.lock:
            self.issued.update((block["id"], (reply_id, count)) for block in signed if block["type"] == "tool_use")
        return signed


def dress(content: list[dict[str, Any]], stop_reason: str, step: int, continuing: bool,
          display: str | None) -> list[dict[str, Any]]:
    """A reply as Sonnet 5.5 gives it: thinking first (a progress note between tool calls), sometimes
    partly redacted; a paused turn is thinking only, its continuation none; a refusal is empty."""
    if stop_reason == "refusal" or continuing:
        return content
    note = "Next: " + ("answer." if content and content[-1]["type"] == "text" else "call a tool.")
    thinking = [{"type": "thinking", "thinking": note if display == "summarized" else "", "signature": ""}]
    if stop_reason == "pause_turn":
        return thinking
    if step % 3 == 1:
        thinking.insert(0, {"type": "redacted_thinking", "data": ""})
    return thinking + content
