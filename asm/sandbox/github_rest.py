"""What every REST route of the sandbox GitHub shares: the request, the reply, GitHub's paging.

Routes live in `github_api` and the modules it gathers (`github_api_reviews`, `github_api_checks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from asm.sandbox.github_records import ApiError

_T = TypeVar("_T")
REPO = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"  # how every repository route begins


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    query: dict[str, str]
    body: object
    api: str  # the base URL the client used, so every url we hand out points back at us
    actor: str  # the login whose token the request carries: every change is theirs; "" on public routes
    # As a GitHub App (github_api_apps): the App whose JWT the request carries (only the App's own endpoints), or
    # the installation whose token it carries (acting as the App's bot, within the installation's repositories).
    app_id: int | None = None
    installation: int | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    body: object  # JSON-able, or a str sent as text/plain; None sends an empty body (204)
    headers: dict[str, str] = field(default_factory=dict)


def paged(request: Request, items: Sequence[_T], to_json: Callable[[_T], object], key: str | None = None,
          ) -> Reply:
    """One page of `items` and GitHub's `Link` header, which is what PyGithub follows.

    With `key`, the page is wrapped as GitHub wraps some lists: `{"total_count": n, key: [...]}`.
    """
    per_page = min(max(number(request.query.get("per_page"), 30), 1), 100)
    last = max(1, math.ceil(len(items) / per_page))
    page = max(number(request.query.get("page"), 1), 1)
    body: object = [to_json(item) for item in items[(page - 1) * per_page: page * per_page]]
    if key is not None:
        body = {"total_count": len(items), key: body}

    def link(target: int, rel: str) -> str:
        query = urlencode({**request.query, "page": str(target)})
        return f'<{request.api}{request.path}?{query}>; rel="{rel}"'

    links = []
    if page > 1:
        links += [link(min(page - 1, last), "prev"), link(1, "first")]
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    return Reply(200, body, {"Link": ", ".join(links)} if links else {})


def number(text: str | None, default: int) -> int:
    return int(text) if text and text.isdigit() else default


def json_fields(request: Request) -> dict[str, Any]:
    """The JSON object a write request carries."""
    if not isinstance(request.body, dict):
        raise ApiError(400, "Problems parsing JSON")
    return request.body
