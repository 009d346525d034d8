"""A Messages API server on loopback whose replies follow the script, for the real `anthropic` client.

It checks requests the way the API does where asm could get them wrong (the key, alternating
turns, every tool_use answered by a tool_result), bills usage with prompt caching simulated
from the request's cache breakpoints, takes `latency` seconds per call like a real model, and
can be told to fail the next calls (429, 529, a spent credit balance) for fault tests.
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

from asm.sandbox.scripted_model import next_action

CACHE_LIFETIME_SECONDS = 300
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
CREDIT_MESSAGE = ("Your credit balance is too low to access the Anthropic API. "
                  "Please go to Plans & Billing to upgrade or purchase credits.")


def tokens(value: Any) -> int:
    """A stable stand-in for a tokenizer: about four characters a token."""
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


@dataclass
class Failure:
    status: int
    message: str
    retry_after: float | None


class ScriptedModelServer:
    """The server and its books: calls made, tokens billed, failures queued."""

    def __init__(self, api_key: str, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.latency = latency
        self.lock = threading.Lock()
        self.calls = 0
        self.failures: deque[Failure] = deque()
        self.cache: dict[str, float] = {}
        self.usage_total: dict[str, int] = {"input_tokens": 0, "output_tokens": 0,
                                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        self.output_tokens_per_call: int | None = None
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
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

    def fail_next(self, status: int, count: int = 1, message: str = "", retry_after: float | None = None) -> None:
        """The next `count` calls answer `status` (529 overloaded, 429 rate limit, 400 + CREDIT_MESSAGE...)."""
        default = {429: "Rate limited", 529: "Overloaded", 400: CREDIT_MESSAGE}.get(status, "Internal error")
        with self.lock:
            self.failures.extend(Failure(status, message or default, retry_after) for _ in range(count))

    # -- one call ---------------------------------------------------------------------------

    def answer(self, headers: Mapping[str, str], request: Mapping[str, Any],
               arrived: float | None = None) -> tuple[int, dict[str, str], dict]:
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
            extra = {"retry-after": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
            status, _, body = _error(failure.status, failure.message)
            return status, extra, body
        problem = validate(request)
        if problem:
            return _error(400, problem)
        action = next_action(request)
        if action[0] == "say":
            content = [{"type": "text", "text": action[1]}]
            stop_reason = "end_turn"
        else:
            _, name, tool_input = action
            content = [{"type": "tool_use", "id": f"toolu_{secrets.token_hex(12)}", "name": name, "input": tool_input}]
            stop_reason = "tool_use"
        usage = self.bill(request, content)
        body = {"id": f"msg_{secrets.token_hex(12)}", "type": "message", "role": "assistant",
                "model": request["model"], "content": content, "stop_reason": stop_reason,
                "stop_sequence": None, "usage": usage}
        time.sleep(max(0.0, arrived + self.latency - time.monotonic()))
        return 200, {"request-id": f"req_{secrets.token_hex(8)}"}, body

    def bill(self, request: Mapping[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        """Usage as the API would bill it: prefixes up to a cache breakpoint seen lately are cache reads."""
        blocks = list(request.get("tools") or [])
        system = request.get("system") or []
        blocks += [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
        for message in request["messages"]:
            body = message["content"]
            blocks += [{"type": "text", "text": body}] if isinstance(body, str) else list(body)
        digest = hashlib.sha256(str(request["model"]).encode())
        total, breakpoints = 0, []
        for block in blocks:
            plain = {k: v for k, v in block.items() if k != "cache_control"}
            digest.update(json.dumps(plain, sort_keys=True).encode())
            total += tokens(plain)
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
                return f"messages.{index}: tool_use ids were found without tool_result blocks: {sorted(pending - answered)}"
            pending = set()
        else:
            pending = {b["id"] for b in content if b.get("type") == "tool_use"}
    return None


def _error(status: int, message: str) -> tuple[int, dict[str, str], dict]:
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
    options = parser.parse_args()
    server = ScriptedModelServer(options.api_key, options.latency, port=options.port).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
