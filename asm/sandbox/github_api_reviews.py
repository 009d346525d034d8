"""The REST routes of pull request reviews and review comments, as PyGithub and GitHub's docs call them.

A base class of `GitHubApi`: `ROUTES` joins its table, each route reads or changes the state
as the request's actor. Others' pending reviews stay hidden, as on GitHub.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from asm.sandbox import github_payloads_reviews as payloads
from asm.sandbox.github_records import ApiError, ReviewComment, invalid_request
from asm.sandbox.github_rest import REPO, Reply, Request, json_fields, paged
from asm.sandbox.github_reviews import EVENTS
from asm.sandbox.github_state import GitHubState

_PULL = REPO + r"/pulls/(?P<number>\d+)"


class ReviewRoutes:
    """Reviews: list, create, get, their comments; review comments: per pull request, per repository, replies."""

    state: GitHubState
    ROUTES = [
        ("GET", _PULL + r"/reviews", "list_reviews"),
        ("POST", _PULL + r"/reviews", "create_review"),
        ("GET", _PULL + r"/reviews/(?P<review_id>\d+)", "get_review"),
        ("GET", _PULL + r"/reviews/(?P<review_id>\d+)/comments", "list_comments_of_review"),
        ("GET", _PULL + r"/comments", "list_review_comments"),
        ("POST", _PULL + r"/comments", "create_review_comment"),
        ("POST", _PULL + r"/comments/(?P<comment_id>\d+)/replies", "reply_to_review_comment"),
        ("GET", REPO + r"/pulls/comments", "list_repo_review_comments"),
        ("GET", REPO + r"/pulls/comments/(?P<comment_id>\d+)", "get_review_comment"),
    ]

    # -- reviews --------------------------------------------------------------------------------

    def list_reviews(self, request: Request, full_name: str, number: int) -> Reply:
        records = self.state.reviews(full_name, number, request.actor)
        return paged(request, records, lambda r: payloads.review(request.api, self.state, full_name, number, r))

    def create_review(self, request: Request, full_name: str, number: int) -> Reply:
        given = json_fields(request)
        event = given.get("event") or None
        if event is not None and event not in EVENTS:
            raise invalid_request(reason=f"For 'properties/event', {_quoted(event)} is not one of {list(EVENTS)}.")
        comments = given.get("comments") or []
        if not isinstance(comments, list) or not all(isinstance(c, dict) for c in comments):
            raise invalid_request(reason="For 'properties/comments', the value is not an array of objects.")
        record = self.state.submit_review(full_name, number, request.actor, event, given.get("body") or "",
                                          comments, given.get("commit_id"))
        # GitHub answers a new review with 200, not 201.
        return Reply(200, payloads.review(request.api, self.state, full_name, number, record))

    def get_review(self, request: Request, full_name: str, number: int, review_id: str) -> Reply:
        record = self.state.review(full_name, number, int(review_id), request.actor)
        return Reply(200, payloads.review(request.api, self.state, full_name, number, record))

    def list_comments_of_review(self, request: Request, full_name: str, number: int, review_id: str) -> Reply:
        record = self.state.review(full_name, number, int(review_id), request.actor)
        return paged(request, record.comments, self._comment_json(request, full_name, number))

    # -- review comments ------------------------------------------------------------------------

    def list_review_comments(self, request: Request, full_name: str, number: int) -> Reply:
        records = _ordered(request, self.state.review_comments(full_name, number, request.actor))
        return paged(request, records, self._comment_json(request, full_name, number))

    def create_review_comment(self, request: Request, full_name: str, number: int) -> Reply:
        given = json_fields(request)
        if given.get("in_reply_to") is not None:
            return self._reply(request, full_name, number, given.get("in_reply_to"), given.get("body"))
        file_wide = given.get("subject_type") == "file"
        required = ("body", "commit_id", "path") if file_wide else ("body", "commit_id", "path", "line")
        missing = [name for name in required if given.get(name) in (None, "")]
        if missing:
            raise invalid_request(*missing)
        if (given.get("side") or "RIGHT") != "RIGHT":
            raise invalid_request(reason="The sandbox GitHub comments on the RIGHT side (the head) only.")
        line = given.get("line")
        if not file_wide and (isinstance(line, bool) or not isinstance(line, int)):
            raise invalid_request(reason=f"For 'properties/line', {_quoted(line)} is not an integer.")
        record = self.state.add_review_comment(full_name, number, request.actor, str(given["body"]),
                                               str(given["path"]), None if file_wide else line,
                                               commit_id=str(given["commit_id"]))
        return Reply(201, self._comment_json(request, full_name, number)(record))

    def reply_to_review_comment(self, request: Request, full_name: str, number: int, comment_id: str) -> Reply:
        return self._reply(request, full_name, number, int(comment_id), json_fields(request).get("body"))

    def list_repo_review_comments(self, request: Request, full_name: str) -> Reply:
        numbered = {c.id: (r.number, c) for r in self.state.pull_records(full_name, "all")
                    for c in self.state.review_comments(full_name, r.number, request.actor)}
        records = _ordered(request, [comment for _, comment in numbered.values()])
        return paged(request, records, lambda c: payloads.review_comment(request.api, self.state, full_name,
                                                                         numbered[c.id][0], c))

    def get_review_comment(self, request: Request, full_name: str, comment_id: str) -> Reply:
        number, comment = self.state.review_comment(full_name, int(comment_id), request.actor)
        return Reply(200, self._comment_json(request, full_name, number)(comment))

    def _reply(self, request: Request, full_name: str, number: int, parent: object, body: object) -> Reply:
        if not isinstance(parent, int) or isinstance(parent, bool):
            raise invalid_request(reason=f"For 'properties/in_reply_to', {_quoted(parent)} is not an integer.")
        if not body or not isinstance(body, str):
            raise invalid_request("body")
        record = self.state.add_review_comment(full_name, number, request.actor, body, "", None, in_reply_to=parent)
        return Reply(201, self._comment_json(request, full_name, number)(record))

    def _comment_json(self, request: Request, full_name: str, number: int
                      ) -> Callable[[ReviewComment], dict[str, Any]]:
        return lambda record: payloads.review_comment(request.api, self.state, full_name, number, record)


def _ordered(request: Request, records: Iterable[ReviewComment]) -> list[ReviewComment]:
    """`since`, `sort` and `direction` as GitHub reads them: the direction counts only with a sort."""
    since = _moment(request.query["since"]) if request.query.get("since") else None
    chosen = sorted((r for r in records if since is None or _moment(r.created_at) >= since), key=lambda r: r.id)
    sort = request.query.get("sort")
    if sort is not None and sort not in ("created", "updated", "created_at"):
        raise ApiError(422, "Validation Failed", ({"resource": "PullRequestReviewComment", "code": "invalid",
                                                   "field": "sort"},))
    if sort and request.query.get("direction", "desc") == "desc":
        chosen.reverse()  # the sandbox never edits a comment: updated and created order alike
    return chosen


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "Validation Failed", ({"resource": "PullRequestReviewComment", "code": "invalid",
                                                   "field": "since"},)) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _quoted(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
