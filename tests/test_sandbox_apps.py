"""The sandbox GitHub's Apps over HTTP, as GitHub answers: a JWT checked as GitHub checks one (forged, expired,
unsigned or misdated ones refused with GitHub's words), installation tokens that expire and reach only their
installation's repositories, the App's bot as who acts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from asm.sandbox.github_apps import EXPIRED, ISSUED_LATER, NOT_FOR_INTEGRATIONS, TOO_FAR, UNDECODABLE
from asm.sandbox.github_server import GitHubServer
from asm.sandbox.github_state import HUMAN_LOGIN, GitHubState

APP_ID = 812
BOT = "helper[bot]"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Hub:
    state: GitHubState
    url: str
    key: rsa.RSAPrivateKey
    acme: int  # installation ids
    globex: int

    def now(self) -> int:
        return int(self.state.clock.now().timestamp())

    def jwt(self, key: Any = None, algorithm: str = "RS256", **claims: Any) -> str:
        now = self.now()
        body = {"iat": now - 60, "exp": now + 540, "iss": str(APP_ID), **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, key or self.key, algorithm=algorithm)

    def call(self, method: str, path: str, credential: str, scheme: str = "Bearer", **kwargs: Any
             ) -> requests.Response:
        return requests.request(method, self.url + path, headers={"Authorization": f"{scheme} {credential}"},
                                timeout=10, **kwargs)

    def token(self, installation: int) -> str:
        reply = self.call("POST", f"/app/installations/{installation}/access_tokens", self.jwt())
        assert reply.status_code == 201, reply.text
        return str(reply.json()["token"])


@pytest.fixture
def hub(tmp_path: Path, key: rsa.RSAPrivateKey) -> Iterator[Hub]:
    state = GitHubState(tmp_path / "github", "ghp_person")
    for name in ("acme/one", "acme/two", "globex/three"):
        state.create_repo(name, {"README.md": "hello\n"})
    state.apps.create_app("helper", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), app_id=APP_ID)
    acme = state.apps.install(APP_ID, "acme", ["acme/one", "acme/two"])
    globex = state.apps.install(APP_ID, "globex", ["globex/three"])
    with GitHubServer(state) as server:
        yield Hub(state, server.url, key, acme, globex)


def refused(reply: requests.Response, status: int, message: str) -> bool:
    body = reply.json()
    return reply.status_code == status and body["message"] == message and "documentation_url" in body


def test_the_app_its_installations_and_a_token_each_as_github_shapes_them(hub: Hub) -> None:
    app = hub.call("GET", "/app", hub.jwt()).json()
    assert (app["id"], app["slug"], app["installations_count"]) == (APP_ID, "helper", 2)
    installations = hub.call("GET", "/app/installations", hub.jwt()).json()
    assert [(i["id"], i["account"]["login"], i["app_id"]) for i in installations] == [
        (hub.acme, "acme", APP_ID), (hub.globex, "globex", APP_ID)]
    reply = hub.call("POST", f"/app/installations/{hub.acme}/access_tokens", hub.jwt())
    assert reply.status_code == 201
    token = reply.json()
    assert re.fullmatch(r"ghs_[A-Za-z0-9_-]{36}", token["token"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", token["expires_at"])  # as GitHub writes it
    ends = time.mktime(time.strptime(token["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(ends - hub.now() - 3600) <= 2
    repos = hub.call("GET", "/installation/repositories", token["token"], "token").json()
    assert [r["full_name"] for r in repos["repositories"]] == ["acme/one", "acme/two"]
    assert (repos["total_count"], repos["repository_selection"]) == (2, "selected")
    assert all(r["clone_url"].startswith("file://") for r in repos["repositories"])


def forged_hs256(hub: Hub) -> str:
    """HS256 keyed with the App's public key: the classic attack on a verifier that lets the token pick."""
    public = hub.key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    now = hub.now()
    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")
    signing = part({"alg": "HS256", "typ": "JWT"}) + b"." + part({"iat": now - 60, "exp": now + 60,
                                                                  "iss": str(APP_ID)})
    signature = base64.urlsafe_b64encode(hmac.new(public, signing, hashlib.sha256).digest()).rstrip(b"=")
    return (signing + b"." + signature).decode()


def tampered(hub: Hub) -> str:
    """A real JWT of another App's id, its claims rewritten to name this App after signing."""
    header, _, signature = hub.jwt(iss="999").split(".")
    now = hub.now()
    claims = base64.urlsafe_b64encode(json.dumps({"iat": now - 60, "exp": now + 60, "iss": str(APP_ID)}).encode())
    return f"{header}.{claims.decode().rstrip('=')}.{signature}"


@pytest.mark.parametrize(("make", "message"), [
    (lambda hub: hub.jwt(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)), UNDECODABLE),
    (lambda hub: jwt.encode({"iat": hub.now() - 60, "exp": hub.now() + 60, "iss": str(APP_ID)}, None,
                            algorithm="none"), UNDECODABLE),
    (forged_hs256, UNDECODABLE),
    (tampered, UNDECODABLE),
    (lambda hub: hub.jwt(iss="999"), UNDECODABLE),
    (lambda hub: hub.jwt(iss=None), UNDECODABLE),
    (lambda hub: "not.a.jwt", UNDECODABLE),
    (lambda hub: hub.jwt(iat=hub.now() - 700, exp=hub.now() - 1), EXPIRED),
    (lambda hub: hub.jwt(exp=None), EXPIRED),
    (lambda hub: hub.jwt(exp=hub.now() + 660), TOO_FAR),
    (lambda hub: hub.jwt(iat=hub.now() + 30), ISSUED_LATER),
    (lambda hub: hub.jwt(iat=None), ISSUED_LATER),
], ids=["other-key", "unsigned", "hs256-with-public-key", "claims-rewritten", "unknown-app", "no-issuer", "garbage",
        "expired", "no-expiry", "exp-too-far", "issued-in-the-future", "no-issued-at"])
def test_a_jwt_github_would_refuse_gets_github_s_401_and_nothing_else(hub: Hub, make: Any, message: str) -> None:
    credential = make(hub)
    for method, path in (("GET", "/app"), ("GET", "/app/installations"),
                         ("POST", f"/app/installations/{hub.acme}/access_tokens")):
        assert refused(hub.call(method, path, credential), 401, message), (method, path)
    assert hub.state.apps.minted == []


def test_a_jwt_older_than_its_ten_minutes_is_refused_once_the_clock_passes_its_exp(hub: Hub) -> None:
    credential = hub.jwt()
    assert hub.call("GET", "/app", credential).status_code == 200
    hub.state.advance(541)
    assert refused(hub.call("GET", "/app", credential), 401, EXPIRED)


def test_a_jwt_reaches_only_the_app_s_own_endpoints_and_a_token_never_those(hub: Hub) -> None:
    assert refused(hub.call("GET", "/repos/acme/one/issues", hub.jwt()), 403, NOT_FOR_INTEGRATIONS)
    assert refused(hub.call("POST", "/graphql", hub.jwt(), json={"query": "{ viewer { login } }"}), 403,
                   NOT_FOR_INTEGRATIONS)
    token = hub.token(hub.acme)
    assert refused(hub.call("GET", "/app/installations", token, "token"), 401, UNDECODABLE)
    assert refused(hub.call("POST", f"/app/installations/{hub.acme}/access_tokens", "ghp_person", "token"), 401,
                   UNDECODABLE)
    listing = hub.call("GET", "/installation/repositories", "ghp_person", "token")
    assert listing.status_code == 403 and "installation access token" in listing.json()["message"]


def test_an_installation_token_acts_as_the_bot_only_on_its_installation_s_repositories(hub: Hub) -> None:
    token = hub.token(hub.acme)
    number = hub.state.create_issue("acme/one", "an issue")
    made = hub.call("POST", f"/repos/acme/one/issues/{number}/comments", token, "token", json={"body": "hi"})
    assert made.status_code == 201
    assert (made.json()["user"]["login"], made.json()["user"]["type"]) == (BOT, "Bot")
    assert hub.state.role("acme/one", BOT) == "write" and hub.state.role("globex/three", BOT) == "write"
    other = hub.state.create_issue("globex/three", "not acme's")
    for method, path in (("GET", "/repos/globex/three"), ("GET", f"/repos/globex/three/issues/{other}"),
                         ("POST", f"/repos/globex/three/issues/{other}/comments")):
        assert refused(hub.call(method, path, token, "token", json={"body": "x"}), 404, "Not Found"), path
    answer = hub.call("POST", "/graphql", token, "token", json={
        "query": '{ a: repository(owner: "acme", name: "one") { name } '
                 'b: repository(owner: "globex", name: "three") { name } }'}).json()
    assert answer["data"] == {"a": {"name": "one"}, "b": None}
    assert answer["errors"][0]["type"] == "NOT_FOUND"
    assert refused(hub.call("GET", "/user", token, "token"), 403, NOT_FOR_INTEGRATIONS)
    viewer = hub.call("POST", "/graphql", token, "token", json={"query": "{ viewer { login } }"}).json()
    assert viewer["data"]["viewer"]["login"] == BOT


def test_an_installation_token_stops_working_when_it_expires_and_a_new_one_is_minted(hub: Hub) -> None:
    token = hub.token(hub.globex)
    assert hub.call("GET", "/repos/globex/three", token, "token").status_code == 200
    hub.state.advance(3600)
    assert refused(hub.call("GET", "/repos/globex/three", token, "token"), 401, "Bad credentials")
    fresh = hub.token(hub.globex)
    assert fresh != token and hub.call("GET", "/repos/globex/three", fresh, "token").status_code == 200


def test_another_app_s_installation_and_a_suspended_one_get_no_token(hub: Hub, key: rsa.RSAPrivateKey) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = hub.state.apps.create_app("other", other_key.public_key())
    theirs = hub.state.apps.install(other.id, "acme", ["acme/one"])
    reply = hub.call("POST", f"/app/installations/{theirs}/access_tokens", hub.jwt())
    assert refused(reply, 404, "Not Found")
    token = hub.token(hub.acme)
    hub.state.apps.suspend(hub.acme)
    assert refused(hub.call("POST", f"/app/installations/{hub.acme}/access_tokens", hub.jwt()), 403,
                   "This installation has been suspended")
    assert refused(hub.call("GET", "/repos/acme/one", token, "token"), 401, "Bad credentials")
    listed = hub.call("GET", "/app/installations", hub.jwt()).json()
    assert [i["suspended_at"] is not None for i in listed] == [True, False]


def test_graphql_names_the_bot_as_github_does_without_its_suffix(hub: Hub) -> None:
    number = hub.state.create_issue("acme/one", "an issue")
    hub.state.add_comment("acme/one", number, "by the bot", author=BOT)
    hub.state.add_comment("acme/one", number, "by a person", author=HUMAN_LOGIN)
    answer = hub.call("POST", "/graphql", hub.token(hub.acme), "token", json={
        "query": "query($n: Int!) { repository(owner: \"acme\", name: \"one\") { issue(number: $n) { "
                 "comments(first: 5) { nodes { author { __typename login url } } } } } }",
        "variables": {"n": number}}).json()
    authors = [node["author"] for node in answer["data"]["repository"]["issue"]["comments"]["nodes"]]
    assert [(a["__typename"], a["login"]) for a in authors] == [("Bot", "helper"), ("User", HUMAN_LOGIN)]
    assert authors[0]["url"].endswith("/apps/helper")


def test_a_commit_signed_with_the_bot_s_noreply_address_is_the_bot_s(hub: Hub, tmp_path: Path) -> None:
    bot_id = hub.call("GET", f"/users/{BOT}", hub.token(hub.acme), "token").json()["id"]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", hub.state.repo("acme/one").clone_url, str(clone)], check=True)
    who = ["-c", f"user.name={BOT}", "-c", f"user.email={bot_id}+{BOT}@users.noreply.github.com",
           "-c", "commit.gpgsign=false"]
    for args in (["commit", "-q", "--allow-empty", "-m", "by the bot"], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *who, *args], cwd=clone, check=True)
    commit = hub.call("GET", "/repos/acme/one/commits/main", hub.token(hub.acme), "token").json()
    assert commit["author"]["login"] == BOT and commit["committer"]["login"] == BOT
    assert commit["commit"]["author"]["email"] == f"{bot_id}+{BOT}@users.noreply.github.com"
    forged = ["-c", f"user.email=1+{BOT}@users.noreply.github.com", "-c", "user.name=x", "-c", "commit.gpgsign=false"]
    for args in (["commit", "-q", "--allow-empty", "-m", "not the bot"], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *forged, *args], cwd=clone, check=True)
    assert hub.call("GET", "/repos/acme/one/commits/main", hub.token(hub.acme), "token").json()["author"] is None
