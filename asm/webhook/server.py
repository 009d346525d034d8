"""`asm webhook`: GitHub's deliveries over HTTP, `POST /webhook` and `GET /healthz`, answered well within 10 s.

Each delivery, in order: a body of at most 25 MB (GitHub caps its own there; a larger one is refused
unread), read within READ_SECONDS; its `X-Hub-Signature-256` checked in constant time (missing or wrong:
401, and nothing of the body is parsed or logged); its JSON; its `X-GitHub-Delivery` id remembered in
Redis, shared by every webhook server (seen before: 200 "duplicate"); then what it tells is queued
(`asm.webhook.intake`). No GitHub request is ever made while GitHub waits.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kombu.exceptions
import redis

from asm.config import Settings
from asm.fleet.queue import Sender
from asm.webhook.events import Unreadable, read
from asm.webhook.intake import Answer, first_time, forget, take
from asm.webhook.signature import verify

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub's own cap on a payload
READ_SECONDS = 20.0  # the whole body, at most; GitHub gives up on a delivery after 10 s
START_SECONDS = 2.0  # and at least, for a body of any size...
MIN_BYTES_PER_SECOND = 1024 * 1024  # ...plus its size at this rate
SOCKET_SECONDS = 10.0  # any one read or write
# Deliveries read at once, each up to 25 MB held before its signature can be checked (so up to 200 MB for
# anyone who can reach the server): more are told to come back (503), and the scan finds what they told.
# Anyone who can reach the server can take these places, a few seconds at a time: let only GitHub's hook
# addresses (`GET /meta`, "hooks") through to it.
MAX_AT_ONCE = 8
DELIVERY_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
CHUNK = 64 * 1024
# After refusing a body unread, what is drained (and dropped) before closing, so the sender reads the answer
# rather than a reset: this much, this long, at most.
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 1.0


class WebhookServer(ThreadingHTTPServer):
    """The HTTP server and what its handlers use: settings, Redis, and the Celery app to send tasks with."""

    daemon_threads = False
    block_on_close = True  # a stop waits for the deliveries being answered
    allow_reuse_address = True

    def __init__(self, settings: Settings, client: redis.Redis[bytes], sender: Sender, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.settings = settings
        self.redis = client
        self.sender = sender
        self.slots = threading.BoundedSemaphore(MAX_AT_ONCE)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    server_version = "asm-webhook"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_SECONDS
    # The answer's head and body go out as two writes: without this, the body waits for the sender's delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if urlsplit(self.path).path != "/healthz":
            return self._answer(Answer(404, "not found"))
        try:
            self.server.redis.ping()
        except redis.RedisError:
            return self._answer(Answer(503, "Redis cannot be reached"))
        self._answer(Answer(200, "ok"))

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/webhook":
            self.close_connection = True  # its body is left unread
            return self._answer(Answer(404, "not found"))
        if not self.server.slots.acquire(blocking=False):
            self.close_connection = True
            return self._answer(Answer(503, "busy; deliver again later"))
        try:
            self._delivery()
        finally:
            self.server.slots.release()

    def _delivery(self) -> None:
        body = self._body()
        if body is None:
            return
        if not verify(self.server.settings.webhook_secret, body, self.headers.get("X-Hub-Signature-256")):
            log.warning("refused a delivery from %s: signature missing or wrong", self.client_address[0])
            return self._answer(Answer(401, "signature missing or wrong"))
        event = self.headers.get("X-GitHub-Event", "")
        delivery = self.headers.get("X-GitHub-Delivery", "")
        if not DELIVERY_ID.fullmatch(delivery):
            return self._answer(Answer(400, "no X-GitHub-Delivery id"), event, delivery[:100])
        payload = self._payload(body)
        if payload is None:
            return self._answer(Answer(400, "the body is not a JSON object"), event, delivery)
        try:
            answer = self._take(event, delivery, payload)
        except (redis.RedisError, kombu.exceptions.KombuError, OSError) as problem:
            log.error("delivery %s (%s) not queued: %s", delivery, event, type(problem).__name__)
            answer = Answer(503, "the queue cannot be reached; deliver again later")
        except Exception as problem:  # GitHub must hear an answer, whatever broke; its id was forgotten
            log.error("delivery %s (%s) not queued: %s inside asm", delivery, event, type(problem).__name__)
            answer = Answer(500, "not queued: an error inside asm; deliver again later")
        self._answer(answer, event, delivery)

    def _take(self, event: str, delivery: str, payload: Mapping[str, Any]) -> Answer:
        client, settings = self.server.redis, self.server.settings
        if not first_time(client, delivery):
            return Answer(200, "duplicate")
        try:
            told = read(event, payload, settings.repos or None, settings.ready_label)
            return take(told, client, self.server.sender, settings)
        except Unreadable as problem:
            forget(client, delivery)
            return Answer(400, f"the {event} payload is not shaped as GitHub shapes it ({problem})")
        except BaseException:
            forget(client, delivery)  # not handled: a delivery again may be
            raise

    def _body(self) -> bytearray | None:
        """The body, read whole; None when it was refused (answered already)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._answer(Answer(411, "Content-Length required"))
            return None
        length_text = self.headers.get("Content-Length", "")
        if not re.fullmatch(r"[0-9]{1,15}", length_text):  # str.isdigit would take "²", which int() refuses
            self.close_connection = True
            self._answer(Answer(411, "Content-Length required"))
            return None
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # unread: the connection goes, the rest of the body with it
            self._answer(Answer(413, f"a delivery is at most {MAX_BODY_BYTES // (1024 * 1024)} MB"))
            return None
        # Time in proportion to the size said: GitHub sends at once, and a sender trickling a small body
        # must not hold one of the MAX_AT_ONCE places for long.
        deadline = time.monotonic() + min(READ_SECONDS, START_SECONDS + length / MIN_BYTES_PER_SECOND)
        body, got = bytearray(length), 0  # read in place: one copy of the body, never two
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(min(SOCKET_SECONDS, left))
                read = self.rfile.readinto(memoryview(body)[got:got + CHUNK])
                if not read:
                    raise ConnectionError
                got += read
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            self._answer(Answer(408, "the body did not arrive in time"))
            return None
        finally:
            self.connection.settimeout(SOCKET_SECONDS)
        return body

    def _payload(self, body: bytes | bytearray) -> Mapping[str, Any] | None:
        """The JSON object delivered, as `application/json` or as the form field `payload`; None if it is not one."""
        if self.headers.get_content_type() == "application/x-www-form-urlencoded":
            fields = parse_qs(body.decode("latin-1"), max_num_fields=10)
            body = fields.get("payload", [""])[0].encode("latin-1")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return None
        return payload if isinstance(payload, dict) else None

    def _answer(self, answer: Answer, event: str = "", delivery: str = "") -> None:
        if event or delivery:
            log.info("delivery %s (%s): %s %s", delivery or "-", event or "-", answer.status, answer.text)
        text = (answer.text + "\n").encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(text)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(text)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the sender went away
            return
        if self.close_connection:
            self._linger()

    def _linger(self) -> None:
        """Close as a careful server does: say we are done, drop a little of what still comes, then go."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS / 4)
            deadline, dropped = time.monotonic() + LINGER_SECONDS, 0
            while time.monotonic() < deadline and dropped < LINGER_BYTES:
                data = self.connection.recv(CHUNK)
                if not data:
                    break
                dropped += len(data)
        except OSError:
            pass

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # each delivery is logged once, in _answer, with what came of it

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        log.warning("%s: %s", self.client_address[0], format % args)


def serve(settings: Settings, client: redis.Redis[bytes], sender: Sender, host: str, port: int) -> int:
    """Serve until SIGTERM or Ctrl-C; the deliveries being answered are finished first."""
    server = WebhookServer(settings, client, sender, host, port)
    heard = ", ".join(settings.repos) or "every repository GitHub delivers for (ASM_REPOS is not set)"
    print(f"asm webhook: listening on {server.url}/webhook (GET /healthz for health), for {heard}", flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0
