"""The routes of the sandbox GitHub: one request in, one reply out, no sockets.

Each REST route reads or changes `GitHubState` as the request's actor (the user whose token it
carries) and shapes the answer with `github_payloads`; `POST /graphql` hands the document to
`github_schema`. `github_server` carries requests and replies over HTTP. The routes of reviews
(`github_api_reviews`) and of checks and statuses (`github_api_checks`) join the table from
base classes of `GitHubApi`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from asm.sandbox import github_payloads as payloads
from asm.sandbox import github_schema
from asm.sandbox.github_api_apps import AppRoutes, is_app_route
from asm.sandbox.github_api_checks import CheckRoutes
from asm.sandbox.github_api_reviews import ReviewRoutes
from asm.sandbox.github_apps import NOT_FOR_INTEGRATIONS
from asm.sandbox.github_limits import holder
from asm.sandbox.github_records import ApiError, Issue, not_found
from asm.sandbox.github_rest import REPO, Reply, Request, json_fields, paged
from asm.sandbox.github_state import DEFAULT_COLOR, GitHubState

__all__ = ["GitHubApi", "Reply", "Request"]


def _label_names(body: object) -> list[str]:
    """Issue-label bodies come as ["a", "b"], {"labels": [...]}, or items shaped {"name": "a"}."""
    items = body.get("labels", []) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ApiError(422, "Invalid request.")
    return [item["name"] if isinstance(item, dict) else str(item) for item in items]


class GitHubApi(ReviewRoutes, CheckRoutes, AppRoutes):
    """Routes one request to the state and shapes the answer; no sockets here."""

    _REPO = REPO
    _ROUTES = ReviewRoutes.ROUTES + CheckRoutes.ROUTES + AppRoutes.ROUTES + [
        ("GET", r"/user", "user"),
        ("GET", r"/users/(?P<login>[^/]+)", "other_user"),
        ("GET", r"/rate_limit", "rate_limit"),
        ("POST", r"/graphql", "graphql"),
        ("GET", _REPO, "repo"),
        ("GET", _REPO + r"/branches/(?P<branch>.+)", "branch"),
        ("GET", _REPO + r"/collaborators/(?P<login>[^/]+)/permission", "collaborator_permission"),
        ("GET", _REPO + r"/issues", "list_issues"),
        ("POST", _REPO + r"/issues", "create_issue"),
        ("GET", _REPO + r"/issues/(?P<number>\d+)", "get_issue"),
        ("PATCH", _REPO + r"/issues/(?P<number>\d+)", "edit_issue"),
        ("GET", _REPO + r"/issues/(?P<number>\d+)/labels", "issue_labels"),
        ("POST", _REPO + r"/issues/(?P<number>\d+)/labels", "add_issue_labels"),
        ("PUT", _REPO + r"/issues/(?P<number>\d+)/labels", "set_issue_labels"),
        ("DELETE", _REPO + r"/issues/(?P<number>\d+)/labels", "clear_issue_labels"),
        ("DELETE", _REPO + r"/issues/(?P<number>\d+)/labels/(?P<label>.+)", "remove_issue_label"),
        ("GET", _REPO + r"/issues/(?P<number>\d+)/events", "list_events"),
        ("GET", _REPO + r"/issues/events/(?P<event_id>\d+)", "get_event"),
        ("GET", _REPO + r"/issues/comments/(?P<comment_id>\d+)", "get_comment"),
        ("PATCH", _REPO + r"/issues/comments/(?P<comment_id>\d+)", "edit_comment"),
        ("GET", _REPO + r"/issues/(?P<number>\d+)/comments", "list_comments"),
        ("POST", _REPO + r"/issues/(?P<number>\d+)/comments", "create_comment"),
        ("GET", _REPO + r"/labels", "list_labels"),
        ("POST", _REPO + r"/labels", "create_label"),
        ("GET", _REPO + r"/labels/(?P<label>.+)", "get_label"),
        ("GET", _REPO + r"/pulls", "list_pulls"),
        ("POST", _REPO + r"/pulls", "create_pull"),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)", "get_pull"),
        ("PATCH", _REPO + r"/pulls/(?P<number>\d+)", "edit_pull"),
        ("PUT", _REPO + r"/pulls/(?P<number>\d+)/merge", "merge_pull"),
    ]
    _COMPILED = [(method, re.compile(pattern + r"/?"), name) for method, pattern, name in _ROUTES]
    _PUBLIC = [(method, re.compile(pattern), name) for method, pattern, name in CheckRoutes.PUBLIC_ROUTES]

    def __init__(self, state: GitHubState) -> None:
        self.state = state

    def dispatch(self, request: Request) -> Reply:
        """The reply to a request that carried a valid token (or a GitHub App's JWT: the App's endpoints only)."""
        if request.app_id is not None or is_app_route(request.path):
            return self.dispatch_app(request)
        return self._route(request, self._COMPILED)

    def dispatch_public(self, request: Request) -> Reply:
        """The reply to a request for one of the sandbox's stand-ins for GitHub's signed, token-less URLs."""
        return self._route(request, self._PUBLIC)

    def _route(self, request: Request, routes: list[tuple[str, re.Pattern[str], str]]) -> Reply:
        for method, pattern, name in routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                args: dict[str, str | int] = {key: unquote(value) for key, value in match.groupdict().items()}
                if "owner" in args:
                    args["full_name"] = full_name = f"{args.pop('owner')}/{args.pop('name')}"
                    self.within_installation(request, full_name)
                if "number" in args:
                    args["number"] = int(args["number"])
                route: Callable[..., Reply] = getattr(self, name)
                return route(request, **args)
        raise not_found()

    # -- users, limits and GraphQL -------------------------------------------------------------

    def user(self, request: Request) -> Reply:
        if request.installation is not None:  # an App's bot is not a user who signed in
            raise ApiError(403, NOT_FOR_INTEGRATIONS)
        return Reply(200, payloads.user(request.api, self.state.web_url, request.actor))

    def other_user(self, request: Request, login: str) -> Reply:
        known = self.state.user(login)
        if known is not None:
            return Reply(200, payloads.user(request.api, self.state.web_url, known))
        owners = {repo.owner.lower(): repo.owner for repo in self.state.repos()}
        if login.lower() in owners:
            return Reply(200, payloads.user(request.api, self.state.web_url, owners[login.lower()], "Organization"))
        raise not_found()

    def rate_limit(self, request: Request) -> Reply:
        spender = holder(request.actor, request.installation)
        core, graphql = (self.state.limits.peek(spender, resource) for resource in ("core", "graphql"))
        return Reply(200, payloads.rate_limit(core, graphql))

    def graphql(self, request: Request) -> Reply:
        # GitHub answers GraphQL with 200 even when the document is wrong: errors travel in the body.
        fields = request.body if isinstance(request.body, dict) else {}
        context = github_schema.Context(self.state, request.actor, reach=self.reach(request))
        return Reply(200, github_schema.run(context, fields.get("query"), fields.get("variables"),
                                            fields.get("operationName")))

    # -- repositories, branches and collaborators ----------------------------------------------

    def repo(self, request: Request, full_name: str) -> Reply:
        return Reply(200, payloads.repo(request.api, self.state, self.state.repo(full_name), request.actor))

    def collaborator_permission(self, request: Request, full_name: str, login: str) -> Reply:
        self.state.repo(full_name)  # an unknown repository is the 404 to give first
        known = self.state.user(login)
        if known is None:
            raise not_found()
        return Reply(200, payloads.permission(request.api, self.state, known, self.state.role(full_name, known)))

    def branch(self, request: Request, full_name: str, branch: str) -> Reply:
        sha = self.state.branch_sha(full_name, branch)
        if sha is None:
            raise ApiError(404, "Branch not found")
        return Reply(200, payloads.branch(request.api, full_name, branch, sha))

    # -- issues --------------------------------------------------------------------------------

    def _issue_json(self, request: Request, full_name: str) -> Callable[[Issue], dict[str, Any]]:
        return lambda record: payloads.issue(request.api, self.state, full_name, record)

    def list_issues(self, request: Request, full_name: str) -> Reply:
        labels = [name for name in request.query.get("labels", "").split(",") if name]
        self.state.synchronize(full_name)  # a push to a pull request's branch updates it
        records = self.state.issue_records(full_name, request.query.get("state", "open"), labels,
                                           request.query.get("sort") or "created")
        if request.query.get("direction") == "asc":
            records.reverse()
        return paged(request, records, self._issue_json(request, full_name))

    def create_issue(self, request: Request, full_name: str) -> Reply:
        fields = json_fields(request)
        record = self.state.new_issue(
            full_name, fields.get("title", ""), fields.get("body") or "", _label_names(fields), request.actor
        )
        return Reply(201, self._issue_json(request, full_name)(record))

    def get_issue(self, request: Request, full_name: str, number: int) -> Reply:
        return Reply(200, self._issue_json(request, full_name)(self.state.issue_record(full_name, number)))

    def edit_issue(self, request: Request, full_name: str, number: int) -> Reply:
        fields = json_fields(request)
        record = self.state.edit_issue(
            full_name,
            number,
            title=fields.get("title"),
            body=fields.get("body"),
            state=fields.get("state"),
            labels=_label_names(fields) if "labels" in fields else None,
            actor=request.actor,
        )
        return Reply(200, self._issue_json(request, full_name)(record))

    # -- labels --------------------------------------------------------------------------------

    def _labels_reply(self, request: Request, full_name: str, names: tuple[str, ...]) -> Reply:
        records = [self.state.label_record(full_name, name) for name in names]
        return Reply(200, [payloads.label(request.api, full_name, label) for label in records])

    def issue_labels(self, request: Request, full_name: str, number: int) -> Reply:
        names = self.state.issue_record(full_name, number).labels
        records = [self.state.label_record(full_name, name) for name in names]
        return paged(request, records, lambda label: payloads.label(request.api, full_name, label))

    def add_issue_labels(self, request: Request, full_name: str, number: int) -> Reply:
        record = self.state.add_labels(full_name, number, _label_names(request.body), request.actor)
        return self._labels_reply(request, full_name, record.labels)

    def set_issue_labels(self, request: Request, full_name: str, number: int) -> Reply:
        record = self.state.set_labels(full_name, number, _label_names(request.body), request.actor)
        return self._labels_reply(request, full_name, record.labels)

    def clear_issue_labels(self, request: Request, full_name: str, number: int) -> Reply:
        self.state.set_labels(full_name, number, [], request.actor)
        return Reply(204, None)

    def remove_issue_label(self, request: Request, full_name: str, number: int, label: str) -> Reply:
        record = self.state.remove_label(full_name, number, label, request.actor)
        return self._labels_reply(request, full_name, record.labels)

    def list_labels(self, request: Request, full_name: str) -> Reply:
        records = self.state.label_records(full_name)
        return paged(request, records, lambda label: payloads.label(request.api, full_name, label))

    def get_label(self, request: Request, full_name: str, label: str) -> Reply:
        return Reply(200, payloads.label(request.api, full_name, self.state.label_record(full_name, label)))

    def create_label(self, request: Request, full_name: str) -> Reply:
        fields = json_fields(request)
        record = self.state.create_label(
            full_name, fields.get("name", ""), fields.get("color") or DEFAULT_COLOR, fields.get("description")
        )
        return Reply(201, payloads.label(request.api, full_name, record))

    # -- events and comments -------------------------------------------------------------------

    def list_events(self, request: Request, full_name: str, number: int) -> Reply:
        records = self.state.events(full_name, number)
        return paged(request, records, lambda event: payloads.event(request.api, self.state, full_name, event))

    def get_event(self, request: Request, full_name: str, event_id: str) -> Reply:
        for record in self.state.issue_records(full_name, "all"):
            for event in record.events:
                if event.id == int(event_id):
                    return Reply(200, payloads.event(request.api, self.state, full_name, event))
        raise not_found()

    def list_comments(self, request: Request, full_name: str, number: int) -> Reply:
        records = list(self.state.issue_record(full_name, number).comments)
        return paged(request, records, lambda c: payloads.comment(request.api, self.state, full_name, number, c))

    def get_comment(self, request: Request, full_name: str, comment_id: str) -> Reply:
        record, comment = self.state.comment_record(full_name, int(comment_id))
        return Reply(200, payloads.comment(request.api, self.state, full_name, record.number, comment))

    def edit_comment(self, request: Request, full_name: str, comment_id: str) -> Reply:
        body = json_fields(request).get("body") or ""
        comment = self.state.edit_comment(full_name, int(comment_id), body, request.actor)
        record, _ = self.state.comment_record(full_name, comment.id)
        return Reply(200, payloads.comment(request.api, self.state, full_name, record.number, comment))

    def create_comment(self, request: Request, full_name: str, number: int) -> Reply:
        record = self.state.add_comment(full_name, number, json_fields(request).get("body") or "", request.actor)
        return Reply(201, payloads.comment(request.api, self.state, full_name, number, record))

    # -- pull requests -------------------------------------------------------------------------

    def _pull_json(self, request: Request, full_name: str) -> Callable[[Issue], dict[str, Any]]:
        heads = self.state.branch_heads(full_name)
        return lambda record: payloads.pull(request.api, self.state, full_name, record, heads, request.actor)

    def list_pulls(self, request: Request, full_name: str) -> Reply:
        query = request.query
        records = self.state.pull_records(
            full_name, query.get("state", "open"), query.get("head", ""), query.get("base", "")
        )
        if query.get("direction") == "asc":
            records.reverse()
        return paged(request, records, self._pull_json(request, full_name))

    def create_pull(self, request: Request, full_name: str) -> Reply:
        fields = json_fields(request)
        record = self.state.create_pull(
            full_name,
            fields.get("title", ""),
            fields.get("body") or "",
            fields.get("head", ""),
            fields.get("base", ""),
            bool(fields.get("draft", False)),
            author=request.actor,
        )
        return Reply(201, self._pull_json(request, full_name)(record))

    def get_pull(self, request: Request, full_name: str, number: int) -> Reply:
        return Reply(200, self._pull_json(request, full_name)(self.state.pull_record(full_name, number)))

    def edit_pull(self, request: Request, full_name: str, number: int) -> Reply:
        self.state.pull_record(full_name, number)  # 404 for a plain issue, as GitHub does
        fields = json_fields(request)
        record = self.state.edit_issue(
            full_name,
            number,
            title=fields.get("title"),
            body=fields.get("body"),
            state=fields.get("state"),
            actor=request.actor,
        )
        return Reply(200, self._pull_json(request, full_name)(record))

    def merge_pull(self, request: Request, full_name: str, number: int) -> Reply:
        fields = request.body if isinstance(request.body, dict) else {}
        sha = self.state.merge_pull(
            full_name,
            number,
            method=fields.get("merge_method") or "merge",
            title=fields.get("commit_title"),
            message=fields.get("commit_message"),
            sha=fields.get("sha"),
            actor=request.actor,
        )
        return Reply(200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"})
