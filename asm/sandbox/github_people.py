"""Who is who in the sandbox GitHub: users, the token each one holds, their role on each repo.

GitHub answers questions about people in its own vocabulary, and this module keeps it: five
repository roles, the legacy `permission` each one maps to, and the `author_association`
that payloads show next to whatever someone wrote.
"""

from __future__ import annotations

import secrets

BOT_LOGIN = "asm-sandbox-bot"  # holds `GitHubState.token`, asm's token; `write` on every repo
HUMAN_LOGIN = "sandbox-user"  # files the seeded issues and acts in seeding calls; `admin` on every repo
ROLES = ("read", "triage", "write", "maintain", "admin")  # weakest first, as GitHub ranks them
# The legacy `permission` GitHub reports for each role: maintain counts as write, triage as read.
PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}


def at_least(role: str | None, minimum: str) -> bool:
    """Whether `role` grants everything `minimum` does; no role grants nothing."""
    return role is not None and ROLES.index(role) >= ROLES.index(minimum)


def association(role: str | None, contributed: bool) -> str:
    """GitHub's `author_association` for someone with `role` on the repository.

    The sandbox's admins stand for the owner; any other role makes a collaborator; without one,
    a merged pull request makes a contributor.
    """
    if role == "admin":
        return "OWNER"
    if role is not None:
        return "COLLABORATOR"
    return "CONTRIBUTOR" if contributed else "NONE"


def repo_permissions(role: str | None) -> dict[str, bool]:
    """The `permissions` object GitHub puts on a repository for the user asking about it."""
    # Every sandbox repository is public, so anyone may pull.
    flags = {name: at_least(role, name) for name in ("admin", "maintain", "triage")}
    return {**flags, "push": at_least(role, "write"), "pull": True}


class People:
    """Users, tokens and roles; not thread-safe on its own (`GitHubState` holds the lock)."""

    def __init__(self) -> None:
        self._logins: dict[str, str] = {}  # lower-cased -> as registered: GitHub logins ignore case
        self._tokens: dict[str, str] = {}  # token -> login
        self._roles: dict[tuple[str, str], str] = {}  # (repo, login), both lower-cased -> role

    def add(self, login: str, token: str | None = None) -> str:
        """Registers `login` with `token` (a fresh one unless given); the token."""
        if not login or "/" in login:
            raise ValueError(f"not a GitHub login: {login!r}")
        if login.lower() in self._logins:
            raise ValueError(f"user {login} already exists")
        token = token or f"ghp_sandbox{secrets.token_hex(16)}"
        if token in self._tokens:
            raise ValueError("that token already belongs to someone")
        self._logins[login.lower()] = login
        self._tokens[token] = login
        return token

    def login(self, name: str) -> str | None:
        """The registered spelling of `name`, or None for nobody."""
        return self._logins.get(name.lower())

    def known(self, name: str) -> str:
        """The registered spelling of `name`; ValueError when no such user was added."""
        login = self.login(name)
        if login is None:
            raise ValueError(f"no sandbox user {name!r}: add_user it first")
        return login

    def by_token(self, token: str) -> str | None:
        """Whose token this is; None for a token nobody holds."""
        return self._tokens.get(token)

    def token(self, login: str) -> str:
        """The token `login` authenticates with."""
        login = self.known(login)
        return next(token for token, owner in self._tokens.items() if owner == login)

    def grant(self, full_name: str, login: str, role: str | None) -> None:
        """Gives `login` `role` on the repository; None takes any role away."""
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)} or None, got {role!r}")
        key = (full_name.lower(), self.known(login).lower())
        if role is None:
            self._roles.pop(key, None)
        else:
            self._roles[key] = role

    def role(self, full_name: str, login: str) -> str | None:
        """The role `login` holds on the repository; None without one."""
        return self._roles.get((full_name.lower(), login.lower()))
