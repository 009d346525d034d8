"""The sandbox GitHub over HTTP: the REST and GraphQL subset asm uses, on loopback, for PyGithub.

Point PyGithub's `base_url` at `GitHubServer.url` and it cannot tell the difference for the
calls asm makes: same paths, same JSON shapes, same `Link` pagination, same error bodies.
This module is only the transport: routes live in `github_api`, what the calls do in
`GitHubState`, JSON shapes in `github_payloads`, GraphQL in `github_graphql` and `github_schema`.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from asm.sandbox import github_payloads as payloads
from asm.sandbox.github_api import GitHubApi, Reply, Request
from asm.sandbox.github_api_apps import caller
from asm.sandbox.github_limits import body_bytes, etag, holder, matches
from asm.sandbox.github_records import DOCS_URL, ApiError, Failure
from asm.sandbox.github_state import GitHubState

log = logging.getLogger(__name__)

SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID sandbox."
)


RATE_LIMIT_HINT = "If you reach out to GitHub Support for help, please include the request ID sandbox."


def _error(status: int, message: str, errors: tuple[dict[str, str] | str, ...] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "documentation_url": DOCS_URL, "status": str(status)}
    if errors:
        body["errors"] = list(errors)
    return body


def _failure_reply(failure: Failure) -> Reply:
    default = SECONDARY_RATE_LIMIT if failure.status in (403, 429) else HTTPStatus(failure.status).phrase
    headers = {}
    if failure.retry_after is not None:
        # Whole seconds: urllib3 rejects a fractional Retry-After, and GitHub never sends one.
        headers["Retry-After"] = str(math.ceil(failure.retry_after))
    return Reply(failure.status, _error(failure.status, failure.message or default), headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PyGithub's connection pool expects
    timeout = 60  # an idle keep-alive connection frees its thread after this long
    # Headers and body leave in two writes; with Nagle on, each reply waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        super().finish()
        self.server.track(self.connection, open_=False)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self._reply(raw)
        kind = "application/json; charset=utf-8"
        if isinstance(reply.body, str):  # a job's log, served as GitHub's log storage serves it
            data, kind = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            data = body_bytes(reply.body)
        self.send_response(reply.status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**payloads.STATIC_HEADERS, **reply.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, raw: bytes) -> Reply:
        state = self.server.state
        failure = state.record_request(self.command, self.path)
        if failure is not None and failure.status == 0:
            time.sleep(failure.delay)
        elif failure is not None:
            return _failure_reply(failure)
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        api = f"http://{self.headers.get('Host') or self.server.host_port}"
        if parts.path.startswith("/_sandbox/"):
            # Stand-ins for GitHub's signed URLs (a job's log): the URL itself is the credential.
            return self._dispatch(GitHubApi(state).dispatch_public, Request(self.command, parts.path, query, None,
                                                                             api, ""))
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        try:  # a person's token, an installation's (its App's bot), or an App's JWT (github_api_apps)
            who = caller(state, token.strip() if scheme.lower() in ("token", "bearer") else "")
        except ApiError as refused:  # a JWT GitHub would not take: GitHub says why
            return Reply(refused.status, _error(refused.status, refused.message))
        if who is None:
            return Reply(401, _error(401, "Bad credentials"))
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return Reply(400, _error(400, "Problems parsing JSON"))
        request = Request(self.command, parts.path, query, body, api, who.actor, who.app_id, who.installation)
        return self._metered(request, lambda: self._dispatch(GitHubApi(state).dispatch, request))

    def _metered(self, request: Request, serve: Callable[[], Reply]) -> Reply:
        """GitHub's primary rate limit around one request of a person's: refused once their budget is spent,
        free when answered 304 to its `If-None-Match`, counted otherwise; every reply tells the budget."""
        limits = self.server.state.limits
        resource = "graphql" if request.path == "/graphql" else "core"
        spender = holder(request.actor, request.installation)
        if request.path == "/rate_limit":  # asking costs nothing, on GitHub too
            return serve()
        budget = limits.peek(spender, resource)
        if budget.remaining == 0:
            message = f"API rate limit exceeded for user ID {sum(request.actor.encode()) + 1}. {RATE_LIMIT_HINT}"
            return Reply(403, _error(403, message), budget.headers())
        reply = serve()
        if request.method == "GET" and reply.status == 200 and not isinstance(reply.body, str):
            # GitHub's answers vary with who asked: another token's ETag matches nothing.
            tag = etag(body_bytes(reply.body), reply.headers.get("Link", ""), self.headers.get("Authorization", ""))
            if matches(self.headers.get("If-None-Match"), tag):
                return Reply(304, None, {"ETag": tag, **limits.free(spender, resource, self.path).headers()})
            reply = replace(reply, headers={**reply.headers, "ETag": tag})
        return replace(reply, headers={**limits.spend(spender, resource).headers(), **reply.headers})

    def _dispatch(self, route: Callable[[Request], Reply], request: Request) -> Reply:
        try:
            return route(request)
        except ApiError as error:
            return Reply(error.status, _error(error.status, error.message, error.errors))
        except Exception:
            # A bug in the sandbox must reach the client as GitHub's 500, not a dropped socket.
            log.exception("sandbox GitHub failed on %s %s", self.command, self.path)
            return Reply(500, _error(500, "Server Error"))


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: GitHubState) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @property
    def host_port(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # an AF_INET socket's address: never bytes
        return f"{host}:{port}"

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def close_connections(self) -> None:
        """Stopping must also end keep-alive connections, or they would keep being served."""
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the client
            self._connections.clear()


class GitHubServer:
    """Serves a `GitHubState` over HTTP on a background thread; `url` is PyGithub's base_url."""

    def __init__(self, state: GitHubState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self._address = (host, port)
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("the sandbox GitHub server is not started")
        return f"http://{self._http.host_port}"

    def start(self) -> GitHubServer:
        if self._http is None:
            self._http = _HttpServer(self._address, self.state)
            # A short poll keeps stop() quick: shutdown() waits for the loop to notice.
            serve = lambda: self._http.serve_forever(poll_interval=0.05)  # noqa: E731
            self._thread = threading.Thread(target=serve, name="sandbox-github", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.close_connections()
            self._http.server_close()
            assert self._thread is not None  # started together with _http
            self._thread.join(timeout=5)
            self._http = None
            self._thread = None

    def __enter__(self) -> GitHubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
