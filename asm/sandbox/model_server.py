"""A Messages API server on loopback whose replies follow the script, for the real `anthropic` client.

It checks requests the way the API does where asm could get them wrong (the key, alternating
turns, every tool_use answered by a tool_result), bills usage with prompt caching simulated
from the request's cache breakpoints, takes `latency` seconds per call like a real model, and
can be told to fail the next calls (429, 529, a spent credit balance; with `retry-after`,
`retry-after-ms` and `x-should-retry` as asked) or to end the next replies with a stop reason
(`stop_next`; an issue's `stop=` directive does the same for one step), for fault tests.

It answers in one of two styles, chosen when it starts: `default`, plain text and tool calls; or
`sonnet-5-5`, the way Claude Sonnet 5.5 does, with signed thinking blocks it checks on the way
back, Sonnet 5.5's refusals of forced tool use and sampling parameters, and its context window
(`context_window` tokens, counted at `chars_per_token`: a longer prompt is a 400, one whose
`max_tokens` would overrun the window stops with `model_context_window_exceeded`). See `sonnet_style`.

Every call is logged in `requests` (the model it named, its system prompt, its first user turn, the role
the script read, the usage billed), for tests to see which role asked which model for what. The model's
name changes neither the script nor the bill.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from asm.sandbox.scripted_model import ROLE_PATTERN, STOP_REASONS, Action, ScriptStep, next_step
from asm.sandbox.sonnet_style import BETA, SonnetThinking, blocks_of, dress, parameter_problem

CACHE_LIFETIME_SECONDS = 300
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
CREDIT_MESSAGE = ("Your credit balance is too low to access the Anthropic API. "
                  "Please go to Plans & Billing to upgrade or purchase credits.")
DEFAULT, SONNET_5_5 = "default", "sonnet-5-5"
STYLES = (DEFAULT, SONNET_5_5)
CUTS = ("max_tokens", "model_context_window_exceeded")  # a reply stopped in the middle
REFUSAL = {"type": "refusal", "category": "cyber",
           "explanation": "This request was declined because it could enable cyber harm."}


def tokens(value: Any, chars_per_token: float = 4.0) -> int:
    """A stable stand-in for a tokenizer: about four characters a token, unless told otherwise (code and
    JSON run nearer three on a real tokenizer)."""
    return max(1, int(len(json.dumps(value, sort_keys=True)) / chars_per_token))


@dataclass
class Failure:
    status: int
    message: str
    retry_after: float | None = None
    retry_after_ms: float | None = None
    should_retry: bool | None = None

    def headers(self) -> dict[str, str]:
        extra = {"retry-after": self.retry_after, "retry-after-ms": self.retry_after_ms}
        headers = {name: f"{value:g}" for name, value in extra.items() if value is not None}
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        return headers


@dataclass(frozen=True)
class Asked:
    """One call as the server read it."""

    model: str
    system: str  # the system prompt's text
    first_user: str  # the first user turn's text: the task, with the issue
    role: str  # the role the script read from the system prompt ("" when none)
    usage: Mapping[str, int] | None  # what it billed; None for a call answered with an error

    @classmethod
    def of(cls, request: Mapping[str, Any], usage: Mapping[str, int] | None) -> Asked:
        system = request.get("system") or ""
        if not isinstance(system, str):
            system = "\n".join(str(block.get("text", "")) for block in system if isinstance(block, dict))
        messages = request.get("messages") or [{}]
        first = messages[0].get("content", "") if isinstance(messages[0], dict) else ""
        if not isinstance(first, str):
            first = "\n".join(str(block.get("text", "")) for block in first
                               if isinstance(block, dict) and block.get("type") == "text")
        role = ROLE_PATTERN.search(system)
        return cls(str(request.get("model", "")), system, first, role.group(1) if role else "", usage)


class ScriptedModelServer:
    """The server and its books: calls made, tokens billed, failures queued."""

    def __init__(self, api_key: str, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 style: str = DEFAULT, context_window: int = 1_000_000, chars_per_token: float = 4.0) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
        self.api_key = api_key
        self.latency = latency
        self.style = style
        self.context_window = context_window  # tokens, in the sonnet-5-5 style
        self.chars_per_token = chars_per_token  # how densely it counts tokens, for billing and the window
        self.thinking = SonnetThinking()
        self.lock = threading.Lock()
        self.calls = 0
        self.requests: list[Asked] = []  # every call, in the order they were answered
        self.failures: deque[Failure] = deque()
        self.stops: deque[str] = deque()  # stop reasons the next replies end with
        self.cut: set[str] = set()  # marks of the blocks of replies that stopped in the middle
        self.spent: set[tuple[str, str]] = set()  # (step, stop reason) of directives already played
        self.thinking_dropped = 0  # blocks dropped for a prefix mismatch (drop_block), all requests together
        self.cache: dict[str, float] = {}
        self.usage_total: dict[str, int] = {"input_tokens": 0, "output_tokens": 0,
                                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        self.output_tokens_per_call: int | None = None
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        """Forget what earlier callers asked for and left behind: queued failures and stop reasons, the
        prompt cache, the call count (one running server serves many tests)."""
        with self.lock:
            self.failures.clear()
            self.stops.clear()
            self.cache.clear()
            self.cut.clear()
            self.spent.clear()
            self.calls = 0
            self.requests.clear()
            self.thinking_dropped = 0

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        assert isinstance(host, str)  # an AF_INET socket's address: never bytes
        return f"http://{host}:{port}"

    def start(self) -> ScriptedModelServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="scripted-model", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def fail_next(self, status: int, count: int = 1, message: str = "", retry_after: float | None = None,
                  retry_after_ms: float | None = None, should_retry: bool | None = None) -> None:
        """The next `count` calls answer `status` (529 overloaded, 429 rate limit, 400 + CREDIT_MESSAGE...),
        with `retry-after` (seconds), `retry-after-ms` and `x-should-retry` headers when given."""
        default = {429: "Rate limited", 529: "Overloaded", 400: CREDIT_MESSAGE}.get(status, "Internal error")
        failure = Failure(status, message or default, retry_after, retry_after_ms, should_retry)
        with self.lock:
            self.failures.extend(failure for _ in range(count))

    def stop_next(self, reason: str, count: int = 1) -> None:
        """The next `count` replies end with `reason`: max_tokens or model_context_window_exceeded (cut in
        the middle, a tool call's input incomplete), pause_turn or refusal."""
        if reason not in STOP_REASONS:
            raise ValueError(f"reason must be one of {', '.join(STOP_REASONS)}, not {reason!r}")
        with self.lock:
            self.stops.extend([reason] * count)

    # -- one call ---------------------------------------------------------------------------

    def answer(self, headers: Mapping[str, str], request: Mapping[str, Any],
               arrived: float | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, extra headers, JSON body) for one POST /v1/messages, logged in `requests`."""
        status, extra, body = self.respond(headers, request, arrived)
        with self.lock:
            self.requests.append(Asked.of(request, body.get("usage") if status == 200 else None))
        return status, extra, body

    def respond(self, headers: Mapping[str, str], request: Mapping[str, Any],
                arrived: float | None) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, extra headers, JSON body) for one POST /v1/messages.

        A successful call takes `latency` seconds from arrival, the server's own work included, so
        what a client measures beyond `latency` is its own overhead, not the sandbox's.
        """
        arrived = time.monotonic() if arrived is None else arrived
        with self.lock:
            self.calls += 1
            failure = self.failures.popleft() if self.failures else None
        if self.api_key not in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer ")):
            return _error(401, "invalid x-api-key")
        if failure is not None:
            status, _, body = _error(failure.status, failure.message)
            return status, failure.headers(), body
        problem = validate(request)
        seen, transformations = request, None  # what the model reads, once the API dropped what it drops
        if not problem and self.style == SONNET_5_5:
            problem, seen, transformations = self.read_as_sonnet(request, headers)
        if problem:
            return _error(400, problem)
        body = self.reply(request, seen, next_step(request, self.was_cut))
        if transformations is not None and BETA in headers.get("anthropic-beta", ""):
            body["input_transformations"] = transformations
        time.sleep(max(0.0, arrived + self.latency - time.monotonic()))
        return 200, {"request-id": f"req_{secrets.token_hex(8)}"}, body

    def read_as_sonnet(self, request: Mapping[str, Any], headers: Mapping[str, str]
                       ) -> tuple[str | None, Mapping[str, Any], list[dict[str, str]]]:
        """Sonnet 5.5's checks: (the 400's message or None, the request as the model reads it, what was dropped)."""
        verdict = self.thinking.check(request, headers)
        problem = parameter_problem(request, headers) or verdict.problem
        seen = without(request, verdict.dropped)
        dropped = [{"type": "thinking_dropped", "path": f"messages.{i}.content.{j}",
                    "reason": "prefix_binding_mismatch"} for i, j in verdict.dropped]
        prompt = sum(tokens(block, self.chars_per_token) for block in prompt_blocks(seen))
        if not problem and prompt > self.context_window:
            problem = f"prompt is too long: {prompt} tokens > {self.context_window} maximum"
        if not problem:
            with self.lock:
                self.thinking_dropped += len(dropped)
        return problem, seen, dropped

    def reply(self, request: Mapping[str, Any], seen: Mapping[str, Any], step: ScriptStep) -> dict[str, Any]:
        """The message body for the script's next step, ended as asked."""
        reply_id = f"msg_{secrets.token_hex(12)}"
        content, stop_reason = compose(step.action, self.stop_for(step, seen))
        if self.style == SONNET_5_5:
            display = (request.get("thinking") or {}).get("display")
            content = self.thinking.sign(request, dress(content, stop_reason, step.index, step.continuing, display),
                                         reply_id)
        if stop_reason in CUTS:
            with self.lock:
                self.cut.update({marks(block) for block in content} - {""})
        body = {"id": reply_id, "type": "message", "role": "assistant", "model": request["model"],
                "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                "usage": self.bill(seen, content)}
        if stop_reason == "refusal":
            body["stop_details"] = dict(REFUSAL)
        return body

    def stop_for(self, step: ScriptStep, seen: Mapping[str, Any]) -> str | None:
        """A stop reason asked for (stop_next first, then the issue's directive, once), or the context window's."""
        with self.lock:
            if self.stops:
                return self.stops.popleft()
            if step.stop and (step.key, step.stop) not in self.spent:
                self.spent.add((step.key, step.stop))
                return step.stop
        prompt = sum(tokens(block, self.chars_per_token) for block in prompt_blocks(seen))
        # The scripted model talks until `max_tokens`, or for `output_tokens_per_call` when that is set.
        talk = self.output_tokens_per_call or int(seen.get("max_tokens") or 0)
        if self.style == SONNET_5_5 and prompt + talk > self.context_window:
            return "model_context_window_exceeded"  # its output would fill the window
        return None

    def was_cut(self, message: Mapping[str, Any]) -> bool:
        """The assistant turn holds a reply that stopped in the middle: the script takes that step again."""
        with self.lock:
            return any(marks(block) in self.cut for block in blocks_of(message))

    def bill(self, request: Mapping[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        """Usage as the API would bill it: prefixes up to a cache breakpoint seen lately are cache reads."""
        digest = hashlib.sha256(str(request["model"]).encode())
        total, breakpoints = 0, []
        for block in prompt_blocks(request):
            plain = {k: v for k, v in block.items() if k != "cache_control"}
            digest.update(json.dumps(plain, sort_keys=True).encode())
            total += tokens(plain, self.chars_per_token)
            if "cache_control" in block:
                breakpoints.append((digest.hexdigest(), total))
        now = time.monotonic()
        with self.lock:
            self.cache = {key: expiry for key, expiry in self.cache.items() if expiry > now}
            read = max((count for key, count in breakpoints if key in self.cache), default=0)
            written = max(breakpoints[-1][1] - read, 0) if breakpoints else 0
            for key, _ in breakpoints:
                self.cache[key] = now + CACHE_LIFETIME_SECONDS
            usage = {"input_tokens": total - read - written,
                     "output_tokens": self.output_tokens_per_call or tokens(content) + 12,
                     "cache_creation_input_tokens": written, "cache_read_input_tokens": read}
            for name, value in usage.items():
                self.usage_total[name] += value
        return usage


def prompt_blocks(request: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Tools, system and messages, block by block, in the order the model reads them."""
    blocks = list(request.get("tools") or [])
    system = request.get("system") or []
    blocks += [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
    for message in request["messages"]:
        blocks += blocks_of(message)
    return blocks


def without(request: Mapping[str, Any], dropped: list[tuple[int, int]]) -> Mapping[str, Any]:
    """The request with the blocks at `dropped` (message, block) places taken out."""
    if not dropped:
        return request
    gone = set(dropped)
    messages = [{**message, "content": [block for j, block in enumerate(blocks_of(message)) if (i, j) not in gone]}
                for i, message in enumerate(request["messages"])]
    return {**request, "messages": messages}


def compose(action: Action, stop: str | None) -> tuple[list[dict[str, Any]], str]:
    """The reply's blocks and stop reason for one scripted action, ended early when `stop` says so."""
    if stop == "refusal":
        return [], "refusal"
    if stop == "pause_turn":
        return [{"type": "text", "text": "Let me look at this more closely."}], "pause_turn"
    if action[0] == "say":
        text = action[1]
        return ([{"type": "text", "text": text[:len(text) // 2]}], stop) if stop in CUTS \
            else ([{"type": "text", "text": text}], "end_turn")
    _, name, tool_input = action
    if stop in CUTS:  # cut while writing the input: its last field never arrived
        tool_input = dict(list(tool_input.items())[:-1])
    use = {"type": "tool_use", "id": f"toolu_{secrets.token_hex(12)}", "name": name, "input": tool_input}
    return [use], stop if stop in CUTS else "tool_use"


def marks(block: Mapping[str, Any]) -> str:
    """What tells a reply's block apart when it comes back in a later request."""
    kind = block.get("type")
    if kind == "tool_use":
        return str(block.get("id"))
    if kind in ("thinking", "redacted_thinking"):
        return str(block.get("signature") or block.get("data") or "")
    return "text:" + hashlib.sha256(str(block.get("text", "")).encode()).hexdigest() if kind == "text" else ""


def validate(request: Mapping[str, Any]) -> str | None:
    """The API's own checks that asm's loop could fail."""
    for field in ("model", "max_tokens", "messages"):
        if field not in request:
            return f"{field}: Field required"
    messages = request["messages"]
    if not messages or messages[0]["role"] != "user":
        return "messages: the first message must use the user role"
    system = request.get("system") or []
    blocks = [*(request.get("tools") or []), *(system if isinstance(system, list) else [])]
    blocks += [block for message in messages if isinstance(message["content"], list) for block in message["content"]]
    marked = [block for block in blocks if isinstance(block, dict) and "cache_control" in block]
    if len(marked) > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {len(marked)}."
    pending: set[str] = set()
    for index, message in enumerate(messages):
        if index and message["role"] == messages[index - 1]["role"]:
            return "messages: roles must alternate between user and assistant"
        content = message["content"] if isinstance(message["content"], list) else []
        if not message["content"]:
            return f"messages.{index}: all messages must have non-empty content"
        if message["role"] == "user":
            answered = {b["tool_use_id"] for b in content if b.get("type") == "tool_result"}
            if pending - answered:
                missing = sorted(pending - answered)
                return f"messages.{index}: tool_use ids were found without tool_result blocks: {missing}"
            pending = set()
        else:
            pending = {b["id"] for b in content if b.get("type") == "tool_use"}
    return None


def _error(status: int, message: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    kind = ERROR_TYPES.get(status, "api_error")
    return status, {}, {"type": "error", "error": {"type": kind, "message": message}}


def _handler(server: ScriptedModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else every keep-alive reply waits ~40 ms for a delayed ACK

        def log_message(self, *_: Any) -> None:  # quiet: the demo prints its own table
            pass

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            arrived = time.monotonic()
            length = int(self.headers.get("content-length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                status, extra, body = _error(400, "the body is not JSON")
            else:
                if self.path.split("?")[0] != "/v1/messages":
                    status, extra, body = 404, {}, {"type": "error", "error": {"type": "not_found_error",
                                                                                "message": "Not found"}}
                else:
                    status, extra, body = server.answer({k.lower(): v for k, v in self.headers.items()}, request,
                                                          arrived)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def main() -> None:
    """Run the scripted model server on its own: `python -m asm.sandbox.model_server --port 8765`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--style", choices=STYLES, default=DEFAULT)
    options = parser.parse_args()
    server = ScriptedModelServer(options.api_key, options.latency, port=options.port, style=options.style).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
