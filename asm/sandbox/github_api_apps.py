"""The REST routes of GitHub Apps, and who a request's credential makes its caller.

A base class of `GitHubApi`. A JWT (checked by `GitHubApps.verify`) reaches the App's own endpoints
and nothing else; a person's or an installation's token reaches everything else, an installation's
only within its repositories (404 elsewhere, `GET /user` refused), acting as the App's bot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from asm.sandbox import github_payloads as payloads
from asm.sandbox.github_apps import (
    NOT_FOR_INTEGRATIONS,
    UNDECODABLE,
    app_payload,
    installation_payload,
    looks_like_jwt,
    token_payload,
)
from asm.sandbox.github_records import ApiError, not_found
from asm.sandbox.github_rest import Reply, Request, paged
from asm.sandbox.github_state import GitHubState

_INSTALLATION = r"/app/installations/(?P<installation>\d+)"
LIST_NEEDS_INSTALLATION = ("You must authenticate with an installation access token in order to list repositories "
                           "for an installation.")


@dataclass(frozen=True)
class Caller:
    """Who a request is from: the login it acts as, and the App or installation behind it."""

    actor: str
    app_id: int | None = None  # a JWT's App
    installation: int | None = None  # an installation token's installation


def caller(state: GitHubState, credential: str) -> Caller | None:
    """Whose credential this is; None for one nobody holds (an expired installation token included). A JWT
    GitHub would refuse raises ApiError 401 with GitHub's words."""
    if looks_like_jwt(credential):
        app = state.apps.verify(credential)
        return Caller(f"app/{app.slug}", app_id=app.id)
    held = state.apps.by_token(credential)
    if held is not None:
        app, installation = held
        return Caller(app.bot, installation=installation.id)
    login = state.user_for_token(credential) if credential else None
    return Caller(login) if login is not None else None


def is_app_route(path: str) -> bool:
    return path == "/app" or path.startswith("/app/")


class AppRoutes:
    """`/app`, `/app/installations`, an installation's access tokens; `/installation/repositories`."""

    state: GitHubState
    JWT_ROUTES = [
        ("GET", r"/app", "get_app"),
        ("GET", r"/app/installations", "list_installations"),
        ("GET", _INSTALLATION, "get_installation"),
        ("POST", _INSTALLATION + r"/access_tokens", "create_access_token"),
    ]
    ROUTES = [("GET", r"/installation/repositories", "installation_repositories")]
    _JWT_COMPILED = [(method, re.compile(pattern + r"/?"), name) for method, pattern, name in JWT_ROUTES]

    def dispatch_app(self, request: Request) -> Reply:
        """The App's own endpoints, for its JWT only; an App's JWT anywhere else is refused."""
        if request.app_id is None:
            raise ApiError(401, UNDECODABLE)  # a token where GitHub wants the App's JWT
        if not is_app_route(request.path):
            raise ApiError(403, NOT_FOR_INTEGRATIONS)
        for method, pattern, name in self._JWT_COMPILED:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return getattr(self, name)(request, **match.groupdict())  # type: ignore[no-any-return]
        raise not_found()

    def within_installation(self, request: Request, full_name: str) -> None:
        """404 for a repository outside the installation whose token the request carries, as GitHub answers."""
        reach = self.reach(request)
        if reach is not None and full_name.lower() not in reach:
            raise not_found()

    def reach(self, request: Request) -> frozenset[str] | None:
        """The repositories (lower-cased) a request may see; None for all."""
        if request.installation is None:
            return None
        return frozenset(name.lower() for name in self.state.apps.held(request.installation).repos)

    # -- the App's own (a JWT) ----------------------------------------------------------------

    def get_app(self, request: Request) -> Reply:
        assert request.app_id is not None  # dispatch_app let only a JWT's request through
        app = self.state.apps.app(request.app_id)
        count = len(self.state.apps.installations(app.id))
        return Reply(200, app_payload(request.api, self.state.web_url, app, count))

    def list_installations(self, request: Request) -> Reply:
        assert request.app_id is not None
        app = self.state.apps.app(request.app_id)
        return paged(request, self.state.apps.installations(app.id),
                     lambda installation: installation_payload(request.api, self.state.web_url, app, installation))

    def get_installation(self, request: Request, installation: str) -> Reply:
        assert request.app_id is not None
        app = self.state.apps.app(request.app_id)
        found = self.state.apps.installation(app.id, int(installation))
        return Reply(200, installation_payload(request.api, self.state.web_url, app, found))

    def create_access_token(self, request: Request, installation: str) -> Reply:
        assert request.app_id is not None
        token = self.state.apps.mint(self.state.apps.app(request.app_id), int(installation))
        return Reply(201, token_payload(token))

    # -- the installation's (its token) -------------------------------------------------------

    def installation_repositories(self, request: Request) -> Reply:
        if request.installation is None:
            raise ApiError(403, LIST_NEEDS_INSTALLATION)
        repos = [self.state.repo(name) for name in (self.reach(request) or ())]
        repos.sort(key=lambda repo: repo.full_name.lower())
        reply = paged(request, repos, lambda repo: payloads.repo(request.api, self.state, repo, request.actor),
                      key="repositories")
        assert isinstance(reply.body, dict)  # paged with a key wraps the page in an object
        reply.body["repository_selection"] = "selected"
        return reply
