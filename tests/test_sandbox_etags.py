"""The sandbox GitHub's ETags are the credential's that asked, as GitHub's are (its answers `Vary: Authorization`):
the same answer to another token has another ETag, and a conditional request with it is answered 200 in full. Its
installation tokens are shaped as GitHub's, `ghs_` and 36 letters and digits, which redaction knows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from asm.guard.redaction import REDACTED, redact
from asm.sandbox.github_limits import etag
from asm.sandbox.github_server import GitHubServer
from asm.sandbox.github_state import GitHubState

APP_ID = 813
PERSON = "ghp_person"
ISSUES = "/repos/acme/one/issues?state=all&sort=updated&direction=desc&per_page=20"


@dataclass
class Hub:
    state: GitHubState
    url: str
    key: rsa.RSAPrivateKey
    acme: int

    def token(self) -> str:
        now = int(self.state.clock.now().timestamp())
        signed = jwt.encode({"iat": now - 60, "exp": now + 540, "iss": str(APP_ID)}, self.key, algorithm="RS256")
        reply = requests.post(f"{self.url}/app/installations/{self.acme}/access_tokens", timeout=10,
                              headers={"Authorization": f"Bearer {signed}"})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["token"])

    def get(self, credential: str, if_none_match: str = "") -> requests.Response:
        headers = {"Authorization": f"token {credential}"}
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        return requests.get(self.url + ISSUES, headers=headers, timeout=10)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    state = GitHubState(tmp_path / "github", PERSON)
    state.create_repo("acme/one", {"README.md": "hello\n"})
    state.create_issue("acme/one", "one")
    state.apps.create_app("etags", key.public_key(), app_id=APP_ID)
    acme = state.apps.install(APP_ID, "acme", ["acme/one"])
    with GitHubServer(state) as server:
        yield Hub(state, server.url, key, acme)


def test_an_etag_is_the_credential_s_and_another_token_s_gets_the_whole_answer(hub: Hub) -> None:
    first, second = hub.token(), hub.token()  # two tokens of one installation: one bot, one budget
    one, two = hub.get(first), hub.get(second)
    assert one.status_code == two.status_code == 200 and one.json() == two.json()
    tag = one.headers["ETag"]
    assert re.fullmatch(r'W/"[0-9a-f]{64}"', tag) and two.headers["ETag"] != tag
    hub.state.limits.reset_tally()
    again = hub.get(second, if_none_match=tag)  # another token's ETag: no match, counted, in full
    assert again.status_code == 200 and again.json() == one.json() and again.headers["ETag"] == two.headers["ETag"]
    assert hub.get(second, if_none_match=two.headers["ETag"]).status_code == 304
    assert hub.get(first, if_none_match=tag).status_code == 304  # each token's own still matches
    assert hub.get(PERSON, if_none_match=tag).status_code == 200  # and a person's token is another credential
    assert hub.state.limits.counted == 2 and len(hub.state.limits.not_modified) == 2


def test_the_etag_of_one_answer_differs_only_by_who_asked() -> None:
    body = b'[{"number": 1}]'
    assert etag(body, "", "ghs_a") == etag(body, "", "ghs_a") != etag(body, "", "ghs_b")
    assert etag(body, "", "ghs_a") != etag(body + b" ", "", "ghs_a")
    assert "ghs_a" not in etag(body, "", "ghs_a")


def test_an_installation_token_is_shaped_as_github_s_and_redaction_finds_it(hub: Hub) -> None:
    tokens = [hub.token() for _ in range(20)]
    for token in tokens:
        assert re.fullmatch(r"ghs_[A-Za-z0-9]{36}", token), token
        assert redact(f"git said: {token}.", ()) == f"git said: {REDACTED}."
    assert len(set(tokens)) == len(tokens)
