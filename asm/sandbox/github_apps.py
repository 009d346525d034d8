"""GitHub Apps in the sandbox GitHub: Apps, their installations, JWTs and installation access tokens.

An App is registered with its RSA public key; a JWT signed by its private key is checked as GitHub
checks one (RS256 against that key; `iat` not ahead of the clock; `exp` ahead of it, by ten minutes
at most; `iss` the App), and is good only for the App's own endpoints. An installation gives the
App's bot user (`<slug>[bot]`) write on the installation's repositories; an installation token
(`ghs_...`, an hour long unless the App says otherwise) acts as that bot and reaches those
repositories and no other. Times are the sandbox clock's, which tests move forward.
"""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from asm.sandbox.github_clock import ISO_FORMAT
from asm.sandbox.github_people import HUMAN_LOGIN
from asm.sandbox.github_records import ApiError, not_found

if TYPE_CHECKING:
    from asm.sandbox.github_state import GitHubState

BOT_SUFFIX = "[bot]"
TOKEN_SECONDS = 3600.0  # GitHub's installation tokens last an hour
TOKEN_ALPHABET = string.ascii_letters + string.digits  # GitHub's tokens: `ghs_` and 36 of these
JWT_MOST_SECONDS = 600  # GitHub refuses an `exp` more than ten minutes ahead
# GitHub's words for each way a JWT fails (all 401s).
UNDECODABLE = "A JSON web token could not be decoded"
EXPIRED = ("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the "
           "assertion expires")
TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
ISSUED_LATER = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
NOT_FOR_INTEGRATIONS = "Resource not accessible by integration"
PERMISSIONS = {"issues": "write", "pull_requests": "write", "contents": "write", "checks": "read",
               "statuses": "read", "actions": "read", "metadata": "read"}
EVENTS = ["issues", "issue_comment", "pull_request_review", "pull_request_review_comment", "check_suite",
          "check_run"]


@dataclass(frozen=True)
class App:
    id: int
    slug: str
    owner: str
    public_key: RSAPublicKey
    created_at: str
    token_seconds: float

    @property
    def bot(self) -> str:
        """The App's bot user: what its installation tokens act as."""
        return self.slug + BOT_SUFFIX


@dataclass(frozen=True)
class Installation:
    id: int
    app_id: int
    account: str
    repos: tuple[str, ...]  # full names, as created
    created_at: str
    suspended_at: str | None = None

    def holds(self, full_name: str) -> bool:
        return full_name.lower() in {repo.lower() for repo in self.repos}


@dataclass(frozen=True)
class Token:
    """An installation access token: whose, and until when (the sandbox clock's)."""

    value: str
    installation: int
    expires_at: datetime

    @property
    def expires_iso(self) -> str:
        return self.expires_at.strftime(ISO_FORMAT)


def looks_like_jwt(credential: str) -> bool:
    """Three dot-separated parts, as every JWT is (a token of a person or an installation has no dot)."""
    return credential.count(".") == 2


class GitHubApps:
    """The sandbox's Apps, installations and installation tokens; thread-safe."""

    def __init__(self, state: GitHubState) -> None:
        self._state = state
        self._lock = threading.RLock()
        self._apps: dict[int, App] = {}
        self._installations: dict[int, Installation] = {}
        self._tokens: dict[str, Token] = {}
        self.minted: list[Token] = []  # every token handed out, oldest first (tests look)
        self._next_id = 9000

    # -- seeding (tests, demo) -----------------------------------------------------------------

    def create_app(self, slug: str, public_key: str | bytes | RSAPublicKey, app_id: int | None = None,
                   owner: str = HUMAN_LOGIN, token_seconds: float = TOKEN_SECONDS) -> App:
        """Registers an App with the public half of its key (PEM or a key object), and its bot user."""
        key = public_key if isinstance(public_key, RSAPublicKey) else serialization.load_pem_public_key(
            public_key.encode() if isinstance(public_key, str) else public_key)
        if not isinstance(key, RSAPublicKey):
            raise ValueError("a GitHub App's key is an RSA key")
        with self._lock:
            number = app_id if app_id is not None else self._new_id()
            if number in self._apps:
                raise ValueError(f"App {number} already exists")
            app = App(number, slug, owner, key, self._state.clock.iso(), token_seconds)
            self._state.add_user(app.bot, token=f"unused-{secrets.token_hex(16)}")  # it acts only through tokens
            self._apps[number] = app
            return app

    def install(self, app_id: int, account: str, repos: tuple[str, ...] | list[str]) -> int:
        """Installs the App on `account`'s `repos`; its bot gets write on each. The installation's id."""
        with self._lock:
            app = self._apps[app_id]
            names = tuple(self._state.repo(name).full_name for name in repos)
            installation = Installation(self._new_id(), app_id, account, names, self._state.clock.iso())
            self._installations[installation.id] = installation
            for name in names:
                self._state.grant(name, app.bot, "write")
            return installation.id

    def add_repository(self, installation: int, full_name: str) -> None:
        """One more repository for an installation (what a person ticks in the installation's settings)."""
        with self._lock:
            found = self._installations[installation]
            name = self._state.repo(full_name).full_name
            self._installations[installation] = replace(found, repos=(*found.repos, name))
            self._state.grant(name, self._apps[found.app_id].bot, "write")

    def suspend(self, installation: int) -> None:
        with self._lock:
            self._installations[installation] = replace(self._installations[installation],
                                                        suspended_at=self._state.clock.iso())

    def set_token_seconds(self, app_id: int, seconds: float) -> None:
        """How long the App's installation tokens live from now on."""
        with self._lock:
            self._apps[app_id] = replace(self._apps[app_id], token_seconds=seconds)

    # -- what the API reads --------------------------------------------------------------------

    def app(self, app_id: int) -> App:
        with self._lock:
            found = self._apps.get(app_id)
            if found is None:
                raise not_found()
            return found

    def installations(self, app_id: int) -> list[Installation]:
        with self._lock:
            return sorted((i for i in self._installations.values() if i.app_id == app_id), key=lambda i: i.id)

    def installation(self, app_id: int, installation: int) -> Installation:
        """One installation of the App; 404 for another App's, as GitHub answers."""
        with self._lock:
            found = self._installations.get(installation)
            if found is None or found.app_id != app_id:
                raise not_found()
            return found

    def held(self, installation: int) -> Installation:
        """The installation an installation token is of, whichever App's."""
        with self._lock:
            return self._installations[installation]

    def verify(self, credential: str) -> App:
        """The App a JWT is from, checked as GitHub checks one; ApiError 401 with GitHub's words when it fails."""
        try:
            issuer = jwt.decode(credential, options={"verify_signature": False}).get("iss")
            app = self._apps.get(int(str(issuer)))
        except (jwt.PyJWTError, TypeError, ValueError):
            raise ApiError(401, UNDECODABLE) from None
        if app is None:
            raise ApiError(401, UNDECODABLE)
        try:
            # Only RS256, only this App's key: `none`, HS256 keyed with the public key, another key are refused.
            claims: dict[str, Any] = jwt.decode(credential, app.public_key, algorithms=["RS256"],
                                                options={"verify_exp": False, "verify_iat": False,
                                                         "verify_nbf": False})
        except jwt.PyJWTError:
            raise ApiError(401, UNDECODABLE) from None
        now = self._state.clock.now().timestamp()
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, int) or isinstance(expires, bool) or expires <= now:
            raise ApiError(401, EXPIRED)
        if expires > now + JWT_MOST_SECONDS:
            raise ApiError(401, TOO_FAR)
        if not isinstance(issued, int) or isinstance(issued, bool) or issued > now:
            raise ApiError(401, ISSUED_LATER)
        return app

    def mint(self, app: App, installation: int) -> Token:
        """A new access token for the App's installation, which must not be suspended."""
        with self._lock:
            found = self.installation(app.id, installation)
            if found.suspended_at:
                raise ApiError(403, "This installation has been suspended")
            expires = self._state.clock.now().replace(microsecond=0) + timedelta(seconds=app.token_seconds)
            token = Token("ghs_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36)), installation, expires)
            self._tokens[token.value] = token
            self.minted.append(token)
            return token

    def by_token(self, credential: str) -> tuple[App, Installation] | None:
        """The App and installation an unexpired installation token is of; None for any other credential."""
        with self._lock:
            token = self._tokens.get(credential)
            if token is None or token.expires_at <= self._state.clock.now():
                return None
            installation = self._installations[token.installation]
            if installation.suspended_at:
                return None
            return self._apps[installation.app_id], installation

    def token_of(self, credential: str) -> Token | None:
        """What the sandbox knows of an installation token (tests): its installation and end, expired or not."""
        with self._lock:
            return self._tokens.get(credential)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def app_payload(api: str, web: str, app: App, installations: int) -> dict[str, Any]:
    """`GET /app`: the authenticated App."""
    return {
        "id": app.id,
        "slug": app.slug,
        "node_id": f"A_sandbox{app.id}",
        "client_id": f"Iv1.sandbox{app.id}",
        "owner": {"login": app.owner, "id": sum(app.owner.encode()) + 1, "type": "User",
                  "url": f"{api}/users/{app.owner}", "html_url": f"{web}/{app.owner}"},
        "name": app.slug,
        "description": "",
        "external_url": f"{web}/apps/{app.slug}",
        "html_url": f"{web}/apps/{app.slug}",
        "created_at": app.created_at,
        "updated_at": app.created_at,
        "permissions": PERMISSIONS,
        "events": EVENTS,
        "installations_count": installations,
    }


def installation_payload(api: str, web: str, app: App, installation: Installation) -> dict[str, Any]:
    """One item of `GET /app/installations`."""
    account = {"login": installation.account, "id": sum(installation.account.encode()) + 1,
               "type": "Organization", "url": f"{api}/users/{installation.account}",
               "html_url": f"{web}/{installation.account}"}
    return {
        "id": installation.id,
        "account": account,
        "repository_selection": "selected",
        "access_tokens_url": f"{api}/app/installations/{installation.id}/access_tokens",
        "repositories_url": f"{api}/installation/repositories",
        "html_url": f"{web}/organizations/{installation.account}/settings/installations/{installation.id}",
        "app_id": app.id,
        "app_slug": app.slug,
        "target_id": account["id"],
        "target_type": "Organization",
        "permissions": PERMISSIONS,
        "events": EVENTS,
        "created_at": installation.created_at,
        "updated_at": installation.created_at,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": installation.suspended_at,
    }


def token_payload(token: Token) -> dict[str, Any]:
    """`POST /app/installations/{id}/access_tokens`: the token and when it ends, as GitHub writes it."""
    return {"token": token.value, "expires_at": token.expires_iso, "permissions": PERMISSIONS,
            "repository_selection": "selected"}
