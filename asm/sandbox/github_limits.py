"""The sandbox GitHub's primary rate limits and conditional requests, as GitHub documents them.

Each person (the holder of a token) has a budget per resource, `core` for REST and `graphql` for
GraphQL, that every request they make spends, except a 304: "making a conditional request does
not count against your primary rate limit if a 304 response is returned and the request was made
while correctly authorized" (GitHub's REST best practices). The window starts with the first
request and comes back whole at its reset; a spent budget answers 403 "API rate limit exceeded"
until then. Every reply to a person carries their budget in the `X-RateLimit-*` headers.

An ETag is a digest of the answer (its body and its `Link` header) and of the credential that asked,
weak as GitHub's are: it changes exactly when the answer changes, and GitHub's answers `Vary: Authorization`,
so a conditional request made with an ETag another token was given is answered 200 in full (github/docs#34689).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass

from asm.sandbox.github_clock import Clock

WINDOW_SECONDS = 3600.0
DEFAULT_LIMIT = 5000  # GitHub's for a personal token, per resource and hour
RESOURCES = ("core", "graphql")


@dataclass(frozen=True)
class Budget:
    """One person's budget of one resource, as the headers of a reply tell it."""

    resource: str
    limit: int
    used: int
    reset: int  # epoch seconds (on the sandbox's clock)

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
            "X-RateLimit-Used": str(self.used),
            "X-RateLimit-Resource": self.resource,
        }

    def as_json(self) -> dict[str, int | str]:
        """The shape of one resource in `GET /rate_limit`."""
        return {"limit": self.limit, "remaining": self.remaining, "reset": self.reset, "used": self.used,
                "resource": self.resource}


def holder(actor: str, installation: int | None = None) -> str:
    """Whose budget a request spends: a person's, whichever of their tokens; an App installation's own."""
    return actor if installation is None else f"{actor}#{installation}"


def etag(body: bytes, link: str = "", credential: str = "") -> str:
    """A weak ETag of an answer to one credential: its body, where its pages link, and who asked (as the
    `Authorization` header said it), which a one-way digest of it does not reveal."""
    who = hashlib.sha256(credential.encode()).digest()
    return 'W/"' + hashlib.sha256(who + body + b"\n" + link.encode()).hexdigest() + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an `If-None-Match` header names `tag` (weak comparison, as RFC 9110 has it for GET)."""
    if not if_none_match:
        return False
    opaque = tag.removeprefix("W/")
    return any(given.strip() == "*" or given.strip().removeprefix("W/") == opaque
               for given in if_none_match.split(","))


def body_bytes(body: object) -> bytes:
    """A JSON reply's bytes, exactly as the server sends them."""
    return b"" if body is None else json.dumps(body).encode()


class RateLimits:
    """Every person's budgets, the window of each, and a tally of what was counted and what was free."""

    def __init__(self, clock: Clock, limit: int = DEFAULT_LIMIT, window: float = WINDOW_SECONDS) -> None:
        self._clock = clock
        self._limits = dict.fromkeys(RESOURCES, limit)
        self._window = window
        self._spent: dict[tuple[str, str], tuple[int, int]] = {}  # (login, resource) -> (used, reset)
        self._lock = threading.Lock()
        self.counted = 0  # requests that spent a budget
        self.not_modified: list[str] = []  # the paths answered 304, free, oldest first

    def configure(self, limit: int, resource: str = "core", window: float | None = None) -> None:
        """Sets a resource's budget per window (for everyone), and starts every window afresh."""
        with self._lock:
            self._limits[resource] = limit
            if window is not None:
                self._window = window
            self._spent = {key: value for key, value in self._spent.items() if key[1] != resource}

    def set_used(self, login: str, used: int, resource: str = "core") -> Budget:
        """As if `login` had already spent `used` of the resource in a window that started now."""
        with self._lock:
            self._spent[(login.lower(), resource)] = (used, self._new_reset())
            return self._budget(login, resource)

    def peek(self, login: str, resource: str) -> Budget:
        with self._lock:
            return self._budget(login, resource)

    def spend(self, login: str, resource: str) -> Budget:
        """Counts one request of `login`'s against the resource; the budget after it."""
        with self._lock:
            used, reset = self._current(login, resource)
            self._spent[(login.lower(), resource)] = (used + 1, reset)
            self.counted += 1
            return self._budget(login, resource)

    def free(self, login: str, resource: str, path: str) -> Budget:
        """A 304: noted, and not counted."""
        with self._lock:
            self.not_modified.append(path)
            return self._budget(login, resource)

    def reset_tally(self) -> None:
        with self._lock:
            self.counted = 0
            self.not_modified.clear()

    def _budget(self, login: str, resource: str) -> Budget:
        used, reset = self._current(login, resource)
        return Budget(resource, self._limits.get(resource, DEFAULT_LIMIT), used, reset)

    def _current(self, login: str, resource: str) -> tuple[int, int]:
        """(used, reset) of the window in force; a window past its reset starts again at the next request."""
        used, reset = self._spent.get((login.lower(), resource), (0, 0))
        if reset <= self._clock.now().timestamp():
            return 0, self._new_reset()
        return used, reset

    def _new_reset(self) -> int:
        return math.ceil(self._clock.now().timestamp() + self._window)
