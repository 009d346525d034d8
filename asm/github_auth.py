"""Who asm is on GitHub, and with what it reaches each repository: a token (GITHUB_TOKEN), or a GitHub App.

`Access` is what the gateway (asm.github) and the workspaces (asm.workspace) are given: a client for a
repository's API calls, the token for git at a repository's remote, the login asm acts as, the repositories
it works. `TokenAccess` is one token for all of it; `asm.github_app.AppAccess` is the App's, per installation.
"""

from __future__ import annotations

from typing import Protocol

import github

AUTHOR_NAME = "asm"
AUTHOR_EMAIL = "asm@users.noreply.github.com"


class GitCredentials(Protocol):
    """What asm's git processes are given: a token per remote, asked for by each process that talks to it (so a
    push keeps the one token it started with), and whom commits are by."""

    def git_token(self, remote: str) -> str: ...

    def git_identity(self) -> tuple[str, str]: ...


class Access(GitCredentials, Protocol):
    """GitHub, reached as asm: a client per repository, who asm is, which repositories it works."""

    app: bool  # a GitHub App's installations, not a token

    def client(self, repo: str) -> github.Github: ...

    def lazy(self, repo: str) -> github.Github: ...

    def login(self) -> str: ...

    def repositories(self, narrowed: tuple[str, ...] = ()) -> tuple[str, ...]: ...

    def holds(self, repo: str) -> bool: ...


class FixedToken:
    """One token for every remote (or none), commits by asm."""

    def __init__(self, token: str) -> None:
        self._token = token

    def git_token(self, remote: str) -> str:
        return self._token

    def git_identity(self) -> tuple[str, str]:
        return AUTHOR_NAME, AUTHOR_EMAIL

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<not shown>)"


class TokenAccess(FixedToken):
    """GITHUB_TOKEN: one client for every repository; the repositories are ASM_REPOS."""

    app = False

    def __init__(self, token: str, client: github.Github) -> None:
        super().__init__(token)
        self._client = client
        # Writes go through lazy objects: commenting on an issue needs no GET of the issue first.
        self._lazy = client.withLazy(True)
        self._login: str | None = None

    def client(self, repo: str) -> github.Github:
        return self._client

    def lazy(self, repo: str) -> github.Github:
        return self._lazy

    def login(self) -> str:
        """The token's user (raises GithubException as PyGithub does)."""
        if self._login is None:
            self._login = self._client.get_user().login
        return self._login

    def repositories(self, narrowed: tuple[str, ...] = ()) -> tuple[str, ...]:
        return narrowed

    def holds(self, repo: str) -> bool:
        return True  # whatever the token reaches; ASM_REPOS says which
