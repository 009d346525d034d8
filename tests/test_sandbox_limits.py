"""The sandbox GitHub's ETags, 304s and rate limits, seen as a client sees them: over HTTP, header by header."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from asm.sandbox.github_server import GitHubServer
from asm.sandbox.github_state import HUMAN_LOGIN, GitHubState

TOKEN = "sandbox-token"
REPO = "acme/shop"

ISSUES = f"/repos/{REPO}/issues?state=all&sort=updated&direction=desc&per_page=20"


@pytest.fixture
def state(tmp_path: Path) -> GitHubState:
    state = GitHubState(tmp_path / "github", TOKEN)
    state.create_repo(REPO, {"README.md": "# shop\n"})
    return state


@pytest.fixture
def server(state: GitHubState):
    with GitHubServer(state) as server:
        yield server


def get(server: GitHubServer, path: str, token: str = TOKEN, method: str = "GET", body: object = None,
        **headers: str) -> tuple[int, Message, bytes]:
    """One request exactly as sent: status, headers, raw body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {token}", **headers})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def remaining(headers: Message) -> int:
    return int(headers["X-RateLimit-Remaining"])


def test_a_matching_etag_gets_a_304_with_no_body_that_costs_nothing(server: GitHubServer, state: GitHubState) -> None:
    state.create_issue(REPO, "one")
    status, headers, body = get(server, ISSUES)
    tag = headers["ETag"]
    assert status == 200 and tag.startswith('W/"') and json.loads(body)[0]["title"] == "one"
    before = remaining(headers)
    status, headers, body = get(server, ISSUES, **{"If-None-Match": tag})
    assert (status, body, headers["ETag"]) == (304, b"", tag)
    assert remaining(headers) == before, "a 304 is not counted"
    assert int(headers["X-RateLimit-Used"]) == state.limits.peek(HUMAN_LOGIN, "core").used + 1  # the token's
    # The strong form of the same tag, and a list that holds it, match too (weak comparison); `*` matches anything.
    for given in (tag.removeprefix("W/"), f'"nope", {tag}', "*"):
        assert get(server, ISSUES, **{"If-None-Match": given})[0] == 304
    assert len(state.limits.not_modified) == 4 and state.limits.counted == 1


def test_a_change_of_the_answer_changes_its_etag_and_a_stale_or_forged_one_is_counted(
        server: GitHubServer, state: GitHubState) -> None:
    number = state.create_issue(REPO, "one")
    tag = get(server, ISSUES)[1]["ETag"]
    state.add_labels(REPO, number, ["ready-for-dev"])
    status, headers, body = get(server, ISSUES, **{"If-None-Match": tag})
    assert status == 200 and headers["ETag"] != tag and json.loads(body)[0]["labels"][0]["name"] == "ready-for-dev"
    fresh = headers["ETag"]
    state.add_comment(REPO, number, "a comment", author=HUMAN_LOGIN)
    assert get(server, ISSUES, **{"If-None-Match": fresh})[0] == 200
    for forged in ('W/"0000"', "garbage, , W/", 'W/"' + "a" * 5000 + '"'):
        assert get(server, ISSUES, **{"If-None-Match": forged})[0] == 200
    assert state.limits.counted == 6 and state.limits.not_modified == []


def test_only_a_get_that_succeeded_is_ever_a_304(server: GitHubServer, state: GitHubState) -> None:
    number = state.create_issue(REPO, "one")
    status, _, _ = get(server, f"/repos/{REPO}/issues/{number}/labels", method="POST", body=["x"],
                       **{"If-None-Match": "*"})
    assert status == 200, "a write is never skipped for an If-None-Match"
    assert get(server, f"/repos/{REPO}/issues/999", **{"If-None-Match": "*"})[0] == 404


def test_the_budget_goes_down_per_counted_request_and_a_spent_one_answers_403_until_its_reset(
        server: GitHubServer, state: GitHubState) -> None:
    state.limits.configure(3)
    seen = [remaining(get(server, f"/repos/{REPO}")[1]) for _ in range(3)]
    assert seen == [2, 1, 0]
    status, headers, body = get(server, f"/repos/{REPO}")
    assert status == 403 and json.loads(body)["message"].startswith("API rate limit exceeded")
    assert remaining(headers) == 0 and int(headers["X-RateLimit-Reset"]) > state.clock.now().timestamp()
    assert json.loads(get(server, "/rate_limit")[2])["resources"]["core"]["remaining"] == 0, "asking costs nothing"
    state.advance(3601)
    assert get(server, f"/repos/{REPO}")[0] == 200, "a new window, the budget whole again"


def test_graphql_has_a_budget_of_its_own(server: GitHubServer, state: GitHubState) -> None:
    status, headers, _ = get(server, "/graphql", method="POST", body={"query": "{ viewer { login } }"})
    assert status == 200 and headers["X-RateLimit-Resource"] == "graphql" and headers["X-RateLimit-Used"] == "1"
    core = get(server, f"/repos/{REPO}")[1]
    assert core["X-RateLimit-Resource"] == "core" and core["X-RateLimit-Used"] == "1"
    limits = json.loads(get(server, "/rate_limit")[2])["resources"]
    assert (limits["core"]["used"], limits["graphql"]["used"]) == (1, 1)


def test_issues_sorted_by_update_put_the_latest_change_first_even_within_one_second(
        server: GitHubServer, state: GitHubState) -> None:
    first, second, third = (state.create_issue(REPO, title) for title in ("a", "b", "c"))
    state.add_comment(REPO, first, "bump", author=HUMAN_LOGIN)  # the same second as the others, most likely
    order = [issue["number"] for issue in json.loads(get(server, ISSUES)[2])]
    assert order == [first, third, second]
    state.add_labels(REPO, second, ["x"])
    assert [issue["number"] for issue in json.loads(get(server, ISSUES)[2])][0] == second
    created = [issue["number"] for issue in json.loads(get(server, f"/repos/{REPO}/issues")[2])]
    assert created == [third, second, first]
    assert get(server, f"/repos/{REPO}/issues?sort=nonsense")[0] == 422


def test_a_push_to_a_pull_requests_branch_updates_it(server: GitHubServer, state: GitHubState,
                                                     tmp_path: Path) -> None:
    work = tmp_path / "work"
    identity = ["-c", "user.name=T", "-c", "user.email=t@x.invalid", "-c", "commit.gpgsign=false"]

    def commit_and_push(text: str) -> None:
        (work / "NOTE.md").write_text(text)
        for args in (["add", "NOTE.md"], ["commit", "-qm", text], ["push", "-q", "origin", "feature"]):
            subprocess.run(["git", *identity, *args], cwd=work, check=True, capture_output=True)

    subprocess.run(["git", "clone", "-q", state.repo(REPO).clone_url, str(work)], check=True, capture_output=True)
    subprocess.run(["git", "checkout", "-qb", "feature"], cwd=work, check=True)
    commit_and_push("note 1")
    pull = state.create_pull(REPO, "a change", "", "feature", "main").number
    state.create_issue(REPO, "filed after the pull request")
    tag = get(server, ISSUES)[1]["ETag"]
    state.advance(1)  # GitHub stamps to the second: a change in the same second as the last may show nowhere
    commit_and_push("note 2")  # straight to the bare repository, as a git push reaches GitHub
    status, _, body = get(server, ISSUES, **{"If-None-Match": tag})
    assert status == 200 and json.loads(body)[0]["number"] == pull, "the push made it the latest updated"
    record = state.pull_record(REPO, pull).pull
    assert record is not None and record.head_sha == state.branch_sha(REPO, "feature")
