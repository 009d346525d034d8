"""asm as a GitHub App: a JWT for the App's own endpoints; for everything else, the installation's token.

Each installation's access token (an hour long on GitHub) is minted with a JWT, kept, and replaced once
less than REFRESH_MARGIN_SECONDS of it is left: a push, or a run's burst of requests, that starts with
it ends long before it does. Every request about a repository, REST and GraphQL, and every git remote,
carries the token of the installation that holds that repository; the repositories asm works are the
installations' (ASM_REPOS narrows them). What asm writes is by the App's bot, `<app-slug>[bot]`.

The fleet shares one token per installation through Redis (`SharedTokens`): GitHub's ETags are a credential's
own (its answers `Vary: Authorization`), so the scan's fleet-wide ETags match only while every process asks with
the same token. In Redis the token is sealed with a key derived from the App's private key, which only asm's
processes hold: reading Redis still reaches no repository.

The private key stays inside `AppKey`: no repr, message or log line shows it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import github
import jwt
import redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from github.GithubException import GithubException
from github.Requester import Requester

from asm.errors import BadInput, GitHubError
from asm.keys import app_token_key

log = logging.getLogger(__name__)

JWT_BACKDATED_SECONDS = 60  # `iat` a minute in the past, as GitHub advises, for a clock behind GitHub's
# GitHub refuses an `exp` more than 10 minutes ahead of its own clock: a minute short of that, for a clock ahead.
JWT_SECONDS = 540
# A token with less than this left is replaced before it is handed out (or half its life, for a short one).
REFRESH_MARGIN_SECONDS = 600
INSTALLATIONS_SECONDS = 300  # how long the list of installed repositories is trusted before it is read again
RELIST_SECONDS = 30  # a repository not in the list has it read again, at most this often
PER_PAGE = 100
BOT_SUFFIX = "[bot]"
PEM_HINT = "is not a PEM RSA private key (the .pem file GitHub generates for the App)"
SEAL_INFO = b"asm github-app installation-token v1"  # HKDF's info: the derived key seals tokens and nothing else
NONCE_BYTES = 12  # AES-GCM's standard nonce, random per record
# One process mints an installation's token while the others wait for it: a mint is one POST, well under this.
MINT_LOCK_MS = 10_000
MINT_WAIT_SECONDS = 5.0  # then a waiter mints for itself: a run is never held up long by another's mint
MINT_POLL_SECONDS = 0.05
# Delete the mint lock only while it is still ours (it may have expired and been taken by another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
Connect = Callable[[github.Auth.Auth], github.Github]  # a PyGithub client with asm's timeouts and retries


class AppKey:
    """A GitHub App's RSA private key: it signs JWTs, and is shown to no one."""

    def __init__(self, pem: str) -> None:
        """ValueError (saying nothing of the text) unless `pem` is a PEM RSA private key without a passphrase;
        written on one line with `\\n` for its line breaks (as a .env file holds it) is read too."""
        text = pem.strip()
        if "\n" not in text:
            text = text.replace("\\n", "\n")
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):  # garbled, not a key, or locked by a passphrase
            raise ValueError(PEM_HINT) from None
        if not isinstance(key, RSAPrivateKey):
            raise ValueError(f"{PEM_HINT}: GitHub signs with RS256, an RSA key")
        self._key = key
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # the same bytes whichever PEM form the file is in
        self._sealer = AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=SEAL_INFO).derive(der))
        # What redaction looks for: each line of its base64 body. The key written out whole (as PEM, on one line,
        # its lines joined, or encoded: redaction finds encoded forms at any offset) holds every one of them.
        self.secrets = tuple(dict.fromkeys(
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("-----")))

    @classmethod
    def read(cls, path: Path) -> AppKey:
        """The key in the file at `path`; ValueError saying why not (never what the file holds)."""
        try:
            pem = path.read_text()
        except (OSError, UnicodeDecodeError) as problem:
            raise ValueError(f"cannot be read ({problem.__class__.__name__})") from None
        return cls(pem)

    def jwt(self, app_id: str, now: float) -> str:
        """A JWT as GitHub asks for one: RS256, issued a minute ago, ending within ten minutes, by the App."""
        issued = int(now)
        claims = {"iat": issued - JWT_BACKDATED_SECONDS, "exp": issued + JWT_SECONDS, "iss": app_id}
        return jwt.encode(claims, self._key, algorithm="RS256")

    def seal(self, data: bytes, bound: bytes) -> bytes:
        """`data` encrypted and authenticated (AES-GCM) under a key derived from this one, bound to `bound`."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._sealer.encrypt(nonce, data, bound)

    def unseal(self, sealed: bytes, bound: bytes) -> bytes:
        """What `seal` sealed with `bound`; ValueError for anything else (altered, another key's, bound elsewhere)."""
        try:
            return self._sealer.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], bound)
        except InvalidTag:
            raise ValueError("not sealed by this key for this") from None

    def __repr__(self) -> str:
        return "AppKey(<not shown>)"

    __str__ = __repr__


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float
    renew_at: float  # when it is replaced: REFRESH_MARGIN_SECONDS before its end (half its life, if shorter)

    def __repr__(self) -> str:
        return f"_Token(<not shown>, expires_at={self.expires_at}, renew_at={self.renew_at})"


class SharedTokens:
    """The fleet's installation tokens in Redis, one per installation, sealed with the App's key.

    A process takes the token in Redis while it is good; else one process mints a new one under a short lock
    (SET NX PX) and shares it, and the others wait for it. A lock held too long, or Redis failing, and a process
    mints for itself, as each did before tokens were shared.
    """

    def __init__(self, client: redis.Redis[bytes], key: AppKey, app_id: str, clock: Callable[[], float]) -> None:
        self._client = client
        self._key = key
        self._app_id = app_id
        self._clock = clock
        self._release = client.register_script(_RELEASE)

    def token(self, installation: int, mint: Callable[[], _Token]) -> _Token:
        """The installation's shared token while it is good, else a new one from `mint`, shared if Redis allows."""
        name = app_token_key(self._app_id, installation)
        deadline = time.monotonic() + MINT_WAIT_SECONDS
        try:
            while (shared := self._read(name)) is None:
                ours = secrets.token_hex(8)
                if self._client.set(name + ":minting", ours, nx=True, px=MINT_LOCK_MS):
                    try:
                        shared = self._read(name, say=True)  # shared by another since the read above?
                        return shared or self._share(name, mint())
                    finally:
                        with contextlib.suppress(redis.RedisError):
                            self._release(keys=[name + ":minting"], args=[ours])
                if time.monotonic() >= deadline:
                    log.warning("another process is slow to mint a token for installation %s of the GitHub App: "
                                "this one mints its own", installation)
                    return mint()
                time.sleep(MINT_POLL_SECONDS)
            return shared
        except redis.RedisError as problem:
            log.warning("installation tokens are not shared while Redis fails (%s): this process mints its own",
                        problem.__class__.__name__)
            return mint()

    def _read(self, name: str, say: bool = False) -> _Token | None:
        """The token in Redis if it is this App's for this installation and not yet due for renewal (`say`: log a
        record that is not, once, by the process about to replace it)."""
        sealed = self._client.get(name)
        if sealed is None:
            return None
        try:
            record = json.loads(self._key.unseal(sealed, name.encode()))
            found = _Token(str(record["token"]), float(record["expires_at"]), float(record["renew_at"]))
        except (ValueError, KeyError, TypeError):  # altered, sealed with another key (a rotated one), or elsewhere
            if say:
                log.warning("the shared token at %s does not open with this App's key: a new token replaces it", name)
            return None
        return found if self._clock() < found.renew_at else None

    def _share(self, name: str, token: _Token) -> _Token:
        """`token`, sealed into Redis until it expires (kept by this process alone if Redis fails now)."""
        left_ms = int((token.expires_at - self._clock()) * 1000)
        record = json.dumps({"token": token.value, "expires_at": token.expires_at, "renew_at": token.renew_at})
        if left_ms > 0:
            with contextlib.suppress(redis.RedisError):
                self._client.set(name, self._key.seal(record.encode(), name.encode()), px=left_ms)
        return token


@dataclass(frozen=True)
class Installed:
    """A repository an installation of the App holds."""

    full_name: str
    clone_url: str
    installation: int


class _AppJwt(github.Auth.JWT):
    """The App's own requests: a fresh JWT each (signing one costs well under a millisecond)."""

    def __init__(self, app: AppAccess) -> None:
        self._app = app

    @property
    def token(self) -> str:
        return self._app.jwt()

    @property
    def _masked_token(self) -> str:
        return "(jwt not shown)"


class _InstallationToken(github.Auth.Auth):
    """An installation's requests: its current token, asked for at each request."""

    def __init__(self, app: AppAccess, installation: int) -> None:
        self._app = app
        self._installation = installation

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        return self._app.token(self._installation)

    @property
    def _masked_token(self) -> str:
        return "(installation token not shown)"


def _epoch(stamp: str) -> float:
    """GitHub's `2016-07-11T22:14:10Z` as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _pages(requester: Requester, path: str, key: str | None = None) -> Iterator[dict[str, Any]]:
    """Every item of a listing, a page of PER_PAGE at a time (`key`: the listing is wrapped in an object)."""
    page = 1
    while True:
        _, data = requester.requestJsonAndCheck("GET", path, parameters={"per_page": PER_PAGE, "page": page})
        items = ((data or {}).get(key) if key else data) or []
        yield from items
        if len(items) < PER_PAGE:
            return
        page += 1


def _refused(what: str, error: GithubException) -> GitHubError:
    said = error.data.get("message") if isinstance(error.data, dict) else None
    return GitHubError(f"GitHub refused {what}: {error.status}" + (f" ({said})" if said else ""))


class AppAccess:
    """GitHub as the App: its installations, their repositories, a client and a git token for each."""

    app = True

    def __init__(self, app_id: str, key: AppKey, connect: Connect, clock: Callable[[], float] = time.time,
                 fleet: redis.Redis[bytes] | None = None) -> None:
        """`fleet`: the Redis the fleet shares installation tokens through; without it, this process mints its own."""
        self.app_id = app_id
        self._key = key
        self._connect = connect
        self._clock = clock  # seconds since the epoch, as GitHub's `expires_at` counts them
        self._own = connect(_AppJwt(self))
        self._lock = threading.RLock()
        self._tokens: dict[int, _Token] = {}
        self._shared = SharedTokens(fleet, key, app_id, clock) if fleet is not None else None
        self._clients: dict[tuple[int, bool], github.Github] = {}
        self._installed: dict[str, Installed] = {}  # by lower-cased full name
        self._listed_at: float | None = None
        self._slug: str | None = None
        self._bot_id: int | None = None

    def jwt(self) -> str:
        """A JWT for the App's own endpoints, signed now."""
        return self._key.jwt(self.app_id, self._clock())

    # -- installation tokens -------------------------------------------------------------------

    def token(self, installation: int) -> str:
        """The installation's access token: the one this process keeps, until it nears its end; then the fleet's
        (one minted anew, when the fleet's is near its end too)."""
        with self._lock:
            kept = self._tokens.get(installation)
            if kept is None or self._clock() >= kept.renew_at:
                mint = functools.partial(self._mint, installation)
                kept = self._shared.token(installation, mint) if self._shared is not None else mint()
                self._tokens[installation] = kept
            return kept.value

    def _mint(self, installation: int) -> _Token:
        now = self._clock()
        try:
            _, data = self._own.requester.requestJsonAndCheck(
                "POST", f"/app/installations/{installation}/access_tokens")
        except GithubException as error:
            raise _refused(f"a token for installation {installation} of the GitHub App", error) from None
        expires_at = _epoch(data["expires_at"])
        renew_at = expires_at - min(REFRESH_MARGIN_SECONDS, (expires_at - now) / 2)
        log.info("new access token for installation %s of the GitHub App, until %s", installation, data["expires_at"])
        return _Token(str(data["token"]), expires_at, renew_at)

    # -- which installation holds a repository -------------------------------------------------

    def _listing(self, fresh: bool = False) -> dict[str, Installed]:
        """Every repository of every installation, read again when older than INSTALLATIONS_SECONDS (or,
        `fresh`, than RELIST_SECONDS)."""
        with self._lock:
            age = None if self._listed_at is None else self._clock() - self._listed_at
            if age is not None and age < (RELIST_SECONDS if fresh else INSTALLATIONS_SECONDS):
                return self._installed
            found: dict[str, Installed] = {}
            try:
                installations = list(_pages(self._own.requester, "/app/installations"))
                for installation in installations:
                    if installation.get("suspended_at"):
                        continue  # GitHub mints no token for a suspended installation
                    number = int(installation["id"])
                    requester = self._client_of(number, lazy=False).requester
                    for repo in _pages(requester, "/installation/repositories", "repositories"):
                        found[repo["full_name"].lower()] = Installed(repo["full_name"], repo["clone_url"], number)
            except GithubException as error:
                raise _refused("the installations of the GitHub App", error) from None
            self._installed, self._listed_at = found, self._clock()
            return found

    def holds(self, repo: str) -> bool:
        """Whether an installation of the App holds `repo` (the list is read again for one not in it, at most
        every RELIST_SECONDS: a repository just added to an installation is found)."""
        return (repo.lower() in self._listing()) or (repo.lower() in self._listing(fresh=True))

    def installed(self, repo: str) -> Installed:
        """The installation holding `repo`; BadInput when the App is installed on no such repository."""
        found = self._listing().get(repo.lower()) or self._listing(fresh=True).get(repo.lower())
        if found is None:
            raise BadInput(f"repository {repo} is not one the GitHub App is installed on")
        return found

    def repositories(self, narrowed: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The installations' repositories, only those of `narrowed` (ASM_REPOS) when it names any."""
        every = self._listing()
        if not narrowed:
            return tuple(sorted(item.full_name for item in every.values()))
        return tuple(every[name.lower()].full_name for name in narrowed if name.lower() in every)

    # -- what the gateway and git are given ----------------------------------------------------

    def _client_of(self, installation: int, lazy: bool) -> github.Github:
        with self._lock:
            client = self._clients.get((installation, lazy))
            if client is None:
                client = self._connect(_InstallationToken(self, installation))
                client = client.withLazy(True) if lazy else client
                self._clients[(installation, lazy)] = client
            return client

    def client(self, repo: str) -> github.Github:
        """A client carrying the token of the installation that holds `repo`."""
        return self._client_of(self.installed(repo).installation, lazy=False)

    def lazy(self, repo: str) -> github.Github:
        """The same, its objects not fetched until read."""
        return self._client_of(self.installed(repo).installation, lazy=True)

    def login(self) -> str:
        """The App's bot, `<app-slug>[bot]`: who asm's comments, pull requests and commits are by."""
        with self._lock:
            if self._slug is None:
                try:
                    _, data = self._own.requester.requestJsonAndCheck("GET", "/app")
                except GithubException as error:
                    raise _refused("to say which App the key belongs to", error) from None
                self._slug = str(data["slug"])
            return self._slug + BOT_SUFFIX

    def git_token(self, remote: str) -> str:
        """The token for git at `remote`: that of the installation holding the repository cloned from it."""
        def holder(listing: dict[str, Installed]) -> Installed | None:
            return next((item for item in listing.values() if item.clone_url.casefold() == remote.casefold()), None)

        found = holder(self._listing()) or holder(self._listing(fresh=True))
        if found is None:
            raise BadInput(f"no installation of the GitHub App holds the repository at {remote}")
        return self.token(found.installation)

    def git_identity(self) -> tuple[str, str]:
        """Name and e-mail address of the App's bot, which GitHub shows as the author of its commits."""
        name = self.login()
        with self._lock:
            if self._bot_id is None:
                holder = next(iter(self._listing().values()), None)
                if holder is None:  # nothing to commit to yet: asked again next time
                    return name, f"{name}@users.noreply.github.com"
                try:
                    _, user = self._client_of(holder.installation, lazy=False).requester.requestJsonAndCheck(
                        "GET", f"/users/{quote(name, safe='')}")
                except GithubException as error:
                    raise _refused(f"to say who {name} is", error) from None
                self._bot_id = int(user["id"])
            return name, f"{self._bot_id}+{name}@users.noreply.github.com"
