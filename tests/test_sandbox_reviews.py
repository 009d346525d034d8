"""The sandbox GitHub's conversations on pull requests over REST: reviews, line comments, check runs,
statuses and job logs, driven through PyGithub and raw HTTP as asm drives GitHub."""

from __future__ import annotations

import http.client
import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import github
import pytest

from asm.sandbox.github_records import ApiError
from asm.sandbox.github_server import GitHubServer
from asm.sandbox.github_state import GitHubState

TOKEN = "sandbox-token"
REPO = "acme/shop"
APP = "src/app.py"
BEFORE = "".join(f"line {n}\n" for n in range(1, 31))
AFTER = BEFORE.replace("line 10\n", "line ten\n").replace("line 25\n", "line 25\nline 25b\n")


@pytest.fixture
def state(tmp_path: Path) -> GitHubState:
    state = GitHubState(tmp_path / "github", TOKEN)
    state.create_repo(REPO, {"README.md": "# shop\n", APP: BEFORE})
    state.add_user("rita")  # a reviewer with write access
    state.grant(REPO, "rita", "write")
    return state


@pytest.fixture
def server(state: GitHubState):
    with GitHubServer(state) as server:
        yield server


def connect(server: GitHubServer, token: str = TOKEN) -> github.Github:
    return github.Github(auth=github.Auth.Token(token), base_url=server.url, retry=None,
                         seconds_between_requests=0, seconds_between_writes=0)


@pytest.fixture
def pull(state: GitHubState) -> int:
    """asm's pull request: line 10 of src/app.py rewritten, a line added after 25, a new file.

    The branch goes into the bare repository by `git fast-import`: what a push leaves, without its cost.
    """
    files = {APP: AFTER, "src/new.py": "NEW = 1\n"}
    stream = (f"commit refs/heads/ai-feature/issue-1\ncommitter T <t@example.invalid> 1700000000 +0000\n"
              f"data 4\nwork\nfrom {state.branch_sha(REPO, 'main')}\n"
              + "".join(f"M 100644 inline {name}\ndata {len(text)}\n{text}\n" for name, text in files.items()))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=state.repo(REPO).path, input=stream, text=True, check=True)
    return state.create_pull(REPO, "[AI] Shop", "Closes #1", "ai-feature/issue-1", "main").number


def raw(server: GitHubServer, method: str, path: str, body: object = None, token: str | None = TOKEN
        ) -> tuple[int, dict[str, str], object]:
    """One request exactly as sent and answered, redirects not followed."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port)
    headers = {"Authorization": f"token {token}"} if token else {}
    connection.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = connection.getresponse()
    data = response.read().decode()
    connection.close()
    kind = response.getheader("Content-Type") or ""
    return response.status, dict(response.getheaders()), json.loads(data) if "json" in kind and data else data


def refusal(call) -> tuple[int, dict]:
    with pytest.raises(github.GithubException) as refused:
        call()
    return refused.value.status, refused.value.data


# -- reviews -----------------------------------------------------------------------------------


def test_a_review_with_line_comments_through_pygithub(server, state, pull):
    pr = connect(server, state.token_for("rita")).get_repo(REPO).get_pull(pull)

    made = pr.create_review(body="Two things.", event="REQUEST_CHANGES",
                            comments=[{"path": APP, "line": 10, "body": "Why ten?"}])

    assert (made.state, made.body, made.user.login) == ("CHANGES_REQUESTED", "Two things.", "rita")
    assert made.commit_id == state.head_sha(REPO, pull) and made.submitted_at is not None
    [listed] = connect(server).get_repo(REPO).get_pull(pull).get_reviews()
    assert (listed.id, listed.state, listed.html_url) == (made.id, "CHANGES_REQUESTED",
                                                         f"{pr.html_url}#pullrequestreview-{made.id}")
    assert pr.get_review(made.id).body == "Two things."
    [comment] = pr.get_single_review_comments(made.id)
    assert (comment.path, comment.line, comment.original_line, comment.side, comment.body) == (
        APP, 10, 10, "RIGHT", "Why ten?")
    assert comment.diff_hunk.endswith("-line 10\n+line ten") and comment.diff_hunk.startswith("@@ -7,")
    assert comment.pull_request_review_id == made.id and comment.in_reply_to_id is None
    [seeded] = state.reviews(REPO, pull)
    assert seeded.comments[0].id == comment.id
    assert [c.body for c in pr.get_review_comments()] == ["Why ten?"]


def test_review_payload_is_shaped_as_githubs(server, state, pull):
    review = state.submit_review(REPO, pull, "rita", "APPROVE", "Ship it")

    status, _, body = raw(server, "GET", f"/repos/{REPO}/pulls/{pull}/reviews/{review.id}")

    assert status == 200
    assert set(body) == {"id", "node_id", "user", "body", "state", "html_url", "pull_request_url", "_links",
                         "submitted_at", "commit_id", "author_association"}
    assert (body["state"], body["author_association"], body["user"]["login"]) == ("APPROVED", "COLLABORATOR", "rita")
    assert body["pull_request_url"] == f"{server.url}/repos/{REPO}/pulls/{pull}"
    assert body["_links"]["pull_request"]["href"] == body["pull_request_url"]


def test_review_refusals_are_githubs_422s(server, state, pull):
    own = connect(server).get_repo(REPO).get_pull(pull)  # asm opened it: asm may not approve it
    theirs = connect(server, state.token_for("rita")).get_repo(REPO).get_pull(pull)

    assert refusal(lambda: own.create_review(event="APPROVE")) == (422, {
        "message": "Unprocessable Entity", "errors": ["Can not approve your own pull request"],
        "documentation_url": "https://docs.github.com/rest", "status": "422"})
    assert refusal(lambda: own.create_review(body="no", event="REQUEST_CHANGES"))[1]["errors"] == [
        "Can not request changes on your own pull request"]
    assert refusal(lambda: theirs.create_review(event="REQUEST_CHANGES"))[0] == 422
    assert refusal(lambda: theirs.create_review(event="COMMENT"))[0] == 422
    assert refusal(lambda: theirs.create_review(event="LGTM"))[1]["message"].startswith("Invalid request.")
    outside = refusal(lambda: theirs.create_review(event="COMMENT", comments=[{"path": APP, "line": 2, "body": "?"}]))
    assert outside[1]["errors"] == ["Pull request review thread line must be part of the diff"]
    assert own.create_review(body="Note to self", event="COMMENT").state == "COMMENTED"
    # A COMMENT review may say everything in its line comments.
    assert theirs.create_review(event="COMMENT", comments=[{"path": "src/new.py", "line": 1, "body": "ok"}]).body == ""
    with pytest.raises(github.UnknownObjectException):
        theirs.get_review(999999)
    issue = state.create_issue(REPO, "Not a pull request")
    assert raw(server, "GET", f"/repos/{REPO}/pulls/{issue}/reviews")[0] == 404


def test_a_pending_review_is_seen_by_its_author_only(server, state, pull):
    rita = connect(server, state.token_for("rita")).get_repo(REPO).get_pull(pull)

    draft = rita.create_review(body="Still reading")  # no event: GitHub keeps it pending

    assert draft.state == "PENDING"
    assert "submitted_at" not in raw(server, "GET", f"/repos/{REPO}/pulls/{pull}/reviews/{draft.id}",
                                     token=state.token_for("rita"))[2]
    assert [r.id for r in rita.get_reviews()] == [draft.id]
    assert list(connect(server).get_repo(REPO).get_pull(pull).get_reviews()) == []
    assert raw(server, "GET", f"/repos/{REPO}/pulls/{pull}/reviews/{draft.id}")[0] == 404
    assert refusal(lambda: rita.create_review(body="again"))[1]["errors"] == [
        "User can only have one pending review per pull request"]


def test_reviews_page_like_every_list(server, state, pull):
    for n in range(35):
        state.submit_review(REPO, pull, "rita", "COMMENT", f"note {n}")

    status, headers, first = raw(server, "GET", f"/repos/{REPO}/pulls/{pull}/reviews?per_page=30")

    assert status == 200 and len(first) == 30 and 'rel="next"' in headers["Link"]
    bodies = [r.body for r in connect(server).get_repo(REPO).get_pull(pull).get_reviews()]
    assert bodies == [f"note {n}" for n in range(35)]


# -- review comments ---------------------------------------------------------------------------


def test_a_line_comment_makes_a_commented_review_and_replies_thread_under_it(server, state, pull):
    pr = connect(server, state.token_for("rita")).get_repo(REPO).get_pull(pull)
    head = connect(server).get_repo(REPO).get_commit(state.head_sha(REPO, pull))

    first = pr.create_review_comment("Is this needed?", head, APP, line=26, side="RIGHT")
    reply = connect(server).get_repo(REPO).get_pull(pull).create_review_comment_reply(first.id, "Yes: see #1.")
    again = pr.create_review_comment_reply(reply.id, "Fine.")

    assert (first.line, first.path, first.user.login) == (26, APP, "rita")
    assert first.diff_hunk.splitlines()[-1] == "+line 25b"
    assert (reply.in_reply_to_id, again.in_reply_to_id) == (first.id, first.id)  # GitHub threads under the first
    [review] = [r for r in state.reviews(REPO, pull) if r.comments[0].id == first.id]
    assert (review.state, review.body, review.author) == ("COMMENTED", "", "rita")
    assert [c.body for c in pr.get_review_comments()] == ["Is this needed?", "Yes: see #1.", "Fine."]
    assert [c.id for c in pr.get_review_comments(sort="created", direction="desc")] == [again.id, reply.id, first.id]
    status, _, body = raw(server, "GET", f"/repos/{REPO}/pulls/comments/{reply.id}")
    assert (status, body["in_reply_to_id"]) == (200, first.id)
    assert body["pull_request_review_id"] == reply.pull_request_review_id != first.pull_request_review_id
    assert "in_reply_to_id" not in raw(server, "GET", f"/repos/{REPO}/pulls/comments/{first.id}")[2]
    state.add_review_comment(REPO, pull, "rita", "A new file", "src/new.py", 1)
    assert len(raw(server, "GET", f"/repos/{REPO}/pulls/{pull}/comments")[2]) == 4


def test_review_comment_payload_is_shaped_as_githubs(server, state, pull):
    comment = state.add_review_comment(REPO, pull, "rita", "Why ten?", APP, 10)

    body = raw(server, "GET", f"/repos/{REPO}/pulls/comments/{comment.id}")[2]

    assert {"url", "pull_request_review_id", "id", "node_id", "diff_hunk", "path", "position", "original_position",
            "commit_id", "original_commit_id", "user", "body", "created_at", "updated_at", "html_url",
            "pull_request_url", "author_association", "_links", "start_line", "original_start_line", "start_side",
            "line", "original_line", "side", "subject_type"} <= set(body)
    assert body["url"] == f"{server.url}/repos/{REPO}/pulls/comments/{comment.id}"
    assert (body["line"], body["side"], body["subject_type"], body["commit_id"]) == (
        10, "RIGHT", "line", state.head_sha(REPO, pull))
    assert body["diff_hunk"] == "@@ -7,7 +7,7 @@ line 6\n line 7\n line 8\n line 9\n-line 10\n+line ten"


def test_repository_wide_review_comments_filter_and_sort(server, state, pull):
    early = state.add_review_comment(REPO, pull, "rita", "early", APP, 10)
    state.advance(60)
    since = state.clock.iso()
    late = state.add_review_comment(REPO, pull, "rita", "late", APP, 11)

    def listed(query: str) -> list[int]:
        return [c["id"] for c in raw(server, "GET", f"/repos/{REPO}/pulls/comments{query}")[2]]

    assert listed("") == [early.id, late.id]
    assert listed(f"?since={since}") == [late.id]
    assert listed("?sort=created") == [late.id, early.id]
    assert listed("?sort=created&direction=asc") == [early.id, late.id]
    assert raw(server, "GET", f"/repos/{REPO}/pulls/comments?sort=color")[0] == 422
    assert raw(server, "GET", f"/repos/{REPO}/pulls/comments/1")[0] == 404


def test_line_comment_refusals_are_githubs_422s(server, state, pull):
    sha = state.head_sha(REPO, pull)
    path = f"/repos/{REPO}/pulls/{pull}/comments"

    def refused(**fields) -> tuple[int, object]:
        status, _, body = raw(server, "POST", path, {"body": "?", "commit_id": sha, "path": APP, "line": 10, **fields})
        return status, body

    status, body = refused(line=2)
    assert status == 422 and body["errors"] == [{
        "resource": "PullRequestReviewComment", "code": "custom", "field": "pull_request_review_thread.line",
        "message": "pull_request_review_thread.line must be part of the diff"}]
    assert refused(path="README.md")[1]["errors"][0]["field"] == "pull_request_review_thread.path"
    assert refused(commit_id="0" * 40)[1]["errors"][0]["field"] == "pull_request_review_thread.commit_id"
    assert refused(line="ten")[1]["message"].startswith("Invalid request.")
    status, _, body = raw(server, "POST", path, {"body": "?", "line": 10})
    assert (status, body["message"]) == (422, 'Invalid request.\n\n"commit_id", "path" weren\'t supplied.')
    assert raw(server, "POST", f"{path}/999999/replies", {"body": "?"})[0] == 404
    assert refused()[0] == 201


# -- check runs --------------------------------------------------------------------------------


def test_check_runs_through_pygithub(server, state, pull):
    repo = connect(server).get_repo(REPO)
    sha = state.head_sha(REPO, pull)

    run = repo.create_check_run("asm/checks", sha, status="in_progress",
                                output={"title": "Running", "summary": "so far so good"})
    assert (run.status, run.conclusion, run.output.title, run.app.slug) == ("in_progress", None, "Running",
                                                                            "asm-sandbox-bot")
    run.edit(conclusion="failure", output={"title": "1 failed", "summary": "test_cart", "text": "details"})

    assert (run.status, run.conclusion, run.output.text) == ("completed", "failure", "details")
    assert run.completed_at is not None and run.head_sha == sha
    assert [p.number for p in run.pull_requests] == [pull]
    assert list(run.get_annotations()) == []
    state.create_check_run(REPO, sha, "build", conclusion="success")
    runs = repo.get_commit(sha).get_check_runs()
    assert runs.totalCount == 2 and {r.name for r in runs} == {"asm/checks", "build"}
    assert [r.name for r in repo.get_commit("ai-feature/issue-1").get_check_runs(check_name="build")] == ["build"]
    assert repo.get_check_run(run.id).conclusion == "failure"


def test_check_runs_list_the_newest_of_each_name_unless_asked_for_all(server, state, pull):
    sha = state.head_sha(REPO, pull)
    old = state.create_check_run(REPO, sha, "tests", conclusion="failure")
    new = state.create_check_run(REPO, sha, "tests", status="queued")

    status, _, latest = raw(server, "GET", f"/repos/{REPO}/commits/{sha}/check-runs")
    everything = raw(server, "GET", f"/repos/{REPO}/commits/{sha}/check-runs?filter=all")[2]

    assert status == 200 and latest["total_count"] == 1 and latest["check_runs"][0]["id"] == new
    assert [r["id"] for r in everything["check_runs"]] == [new, old]
    assert set(latest["check_runs"][0]) == {
        "id", "head_sha", "node_id", "external_id", "url", "html_url", "details_url", "status", "conclusion",
        "started_at", "completed_at", "output", "name", "check_suite", "app", "pull_requests"}
    job = latest["check_runs"][0]
    assert job["app"]["slug"] == "github-actions" and job["details_url"] == job["html_url"]
    assert job["html_url"].endswith(f"/actions/runs/{job['check_suite']['id']}/job/{new}")


def test_check_run_refusals(server, state, pull):
    sha = state.head_sha(REPO, pull)

    assert raw(server, "POST", f"/repos/{REPO}/check-runs", {"name": "x"})[2]["message"] == (
        'Invalid request.\n\n"head_sha" wasn\'t supplied.')
    assert raw(server, "POST", f"/repos/{REPO}/check-runs", {"name": "x", "head_sha": "f" * 40})[2] == {
        "message": f"No commit found for SHA: {'f' * 40}", "documentation_url": "https://docs.github.com/rest",
        "status": "422"}
    assert raw(server, "POST", f"/repos/{REPO}/check-runs", {"name": "x", "head_sha": sha, "status": "done"})[0] == 422
    assert raw(server, "POST", f"/repos/{REPO}/check-runs",
               {"name": "x", "head_sha": sha, "status": "completed"})[0] == 422  # a completed run needs a conclusion
    assert raw(server, "GET", f"/repos/{REPO}/check-runs/999999")[0] == 404
    assert raw(server, "GET", f"/repos/{REPO}/commits/no-such-branch/check-runs")[0] == 422
    with pytest.raises(ApiError):
        state.create_check_run(REPO, sha, "tests")  # seeded the same way: completed needs a conclusion
    with pytest.raises(ValueError):
        state.update_check_run(REPO, state.create_check_run(REPO, sha, "t", "queued"), colour="red")


def test_a_github_actions_job_log_is_a_redirect_to_plain_text(server, state, pull):
    sha = state.head_sha(REPO, pull)
    job = state.create_check_run(REPO, sha, "tests", conclusion="failure", log="FAILED test_cart\n")
    foreign = state.create_check_run(REPO, sha, "lint", conclusion="success", app="super-linter")

    status, headers, _ = raw(server, "GET", f"/repos/{REPO}/actions/jobs/{job}/logs")
    location = urlsplit(headers["Location"])
    text = raw(server, "GET", f"{location.path}?{location.query}", token=None)

    assert status == 302 and headers["Location"].startswith(server.url + "/_sandbox/logs/")
    assert text == (200, text[1], "FAILED test_cart\n") and text[1]["Content-Type"].startswith("text/plain")
    assert raw(server, "GET", f"{location.path}?token=forged", token=None)[0] == 403
    assert raw(server, "GET", f"/repos/{REPO}/actions/jobs/{foreign}/logs")[0] == 404
    assert raw(server, "GET", f"/repos/{REPO}/actions/jobs/{job}/logs", token="wrong")[0] == 401
    with urllib.request.urlopen(urllib.request.Request(  # a client that follows the redirect gets the log
            f"{server.url}/repos/{REPO}/actions/jobs/{job}/logs", headers={"Authorization": f"token {TOKEN}"})) as got:
        assert got.read() == b"FAILED test_cart\n"


# -- commit statuses ---------------------------------------------------------------------------


def test_statuses_and_the_combined_status_through_pygithub(server, state, pull):
    repo = connect(server).get_repo(REPO)
    commit = repo.get_commit(state.head_sha(REPO, pull))
    assert commit.get_combined_status().state == "pending"  # no status at all: pending, as on GitHub

    made = commit.create_status("pending", "https://ci.example/1", "Building", "ci/build")
    state.create_status(REPO, commit.sha, "ci/lint", "success")
    assert commit.get_combined_status().state == "pending"
    commit.create_status("success", context="ci/build")
    combined = commit.get_combined_status()

    assert (made.state, made.context, made.description, made.creator.login) == (
        "pending", "ci/build", "Building", "asm-sandbox-bot")
    assert combined.state == "success" and combined.total_count == 2 and combined.sha == commit.sha
    assert sorted(s.context for s in combined.statuses) == ["ci/build", "ci/lint"]
    assert [s.state for s in commit.get_statuses()] == ["success", "success", "pending"]  # newest first
    state.create_status(REPO, commit.sha, "ci/lint", "error")
    assert commit.get_combined_status().state == "failure"
    assert [s.state for s in state.statuses(REPO, commit.sha)][0] == "error"


def test_status_payloads_and_refusals(server, state, pull):
    sha = state.head_sha(REPO, pull)
    state.create_status(REPO, sha, "ci", "failure", "2 failed", "https://ci.example/2")

    combined = raw(server, "GET", f"/repos/{REPO}/commits/ai-feature/issue-1/status")[2]
    listed = raw(server, "GET", f"/repos/{REPO}/commits/{sha}/statuses")[2]

    assert set(combined) == {"state", "statuses", "sha", "total_count", "repository", "commit_url", "url"}
    assert combined["state"] == "failure" and combined["sha"] == sha and "creator" not in combined["statuses"][0]
    assert listed[0]["creator"]["login"] == "sandbox-user" and listed[0]["target_url"] == "https://ci.example/2"
    status, _, body = raw(server, "POST", f"/repos/{REPO}/statuses/{sha}", {"state": "green"})
    assert status == 422 and body["errors"][0]["field"] == "state"
    assert raw(server, "POST", f"/repos/{REPO}/statuses/{sha}", {})[2]["message"].startswith("Invalid request.")
    assert raw(server, "POST", f"/repos/{REPO}/statuses/{'e' * 40}", {"state": "success"})[0] == 422


def test_a_commit_reads_as_githubs(server, state, pull):
    sha = state.head_sha(REPO, pull)

    commit = connect(server).get_repo(REPO).get_commit("ai-feature/issue-1")

    assert (commit.sha, commit.commit.message, commit.commit.committer.name) == (sha, "work", "T")
    assert [p.sha for p in commit.parents] == [state.branch_sha(REPO, "main")]
    assert {(f.filename, f.status, f.additions, f.deletions) for f in commit.files} == {
        (APP, "modified", 2, 1), ("src/new.py", "added", 1, 0)}
    assert commit.stats.total == 4 and commit.html_url == f"{state.web_url}/{REPO}/commit/{sha}"
    assert raw(server, "GET", f"/repos/{REPO}/commits/{'0' * 40}")[0] == 422


def test_the_issue_comments_of_a_pull_request_stay_issue_comments(server, state, pull):
    pr = connect(server, state.token_for("rita")).get_repo(REPO).get_pull(pull)

    pr.create_issue_comment("@asm please rename it")

    assert [c.body for c in pr.get_issue_comments()] == ["@asm please rename it"]
    assert list(pr.get_review_comments()) == []


def test_urllib_sees_a_json_error_for_an_unknown_log(server):
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{server.url}/_sandbox/logs/{REPO}/1?token=x")
    assert missing.value.code == 404 and json.loads(missing.value.read())["message"] == "Not Found"
