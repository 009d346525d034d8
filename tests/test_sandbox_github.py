"""The sandbox GitHub, driven the way asm drives GitHub: the real PyGithub client and real git."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import github
import pytest

from asm.sandbox.github_server import GitHubServer
from asm.sandbox.github_state import GitHubState, IssueView, PullView

TOKEN = "sandbox-token"
REPO = "acme/shop"
BRANCH = "ai-feature/issue-1"


@pytest.fixture
def state(tmp_path: Path) -> GitHubState:
    state = GitHubState(tmp_path / "github", TOKEN)
    state.create_repo(REPO, {"README.md": "# shop\n", "src/app.py": "VERSION = 1\n"})
    return state


@pytest.fixture
def server(state: GitHubState):
    with GitHubServer(state) as server:
        yield server


def connect(server: GitHubServer, token: str = TOKEN, **options) -> github.Github:
    settings = dict(per_page=30, seconds_between_requests=0, seconds_between_writes=0, retry=None)
    return github.Github(auth=github.Auth.Token(token), base_url=server.url, **{**settings, **options})


@pytest.fixture
def gh(server: GitHubServer):
    client = connect(server)
    yield client
    client.close()


def git(*args: str, cwd: Path | None = None) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def push_branch(clone_url: str, work: Path, branch: str, files: dict[str, str], base: str = "main") -> str:
    """Clones, commits `files` on a new `branch` from `base`, pushes it; the pushed sha."""
    if not work.exists():
        git("clone", "--quiet", clone_url, str(work))
    git("checkout", "--quiet", "-B", branch, f"origin/{base}", cwd=work)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", f"work on {branch}", cwd=work)
    git("push", "--quiet", "origin", branch, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def raw(server: GitHubServer, path: str, token: str = TOKEN, scheme: str = "token"):
    """A plain urllib GET, to see status, headers and body exactly as sent."""
    request = urllib.request.Request(server.url + path, headers={"Authorization": f"{scheme} {token}"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


# -- repositories ------------------------------------------------------------------------------


def test_repo_payload_points_at_a_clonable_bare_repo(gh, server, state, tmp_path):
    repo = gh.get_repo(REPO)

    assert (repo.full_name, repo.name, repo.owner.login, repo.default_branch) == (REPO, "shop", "acme", "main")
    assert repo.url == f"{server.url}/repos/{REPO}"
    assert repo.clone_url == "file://" + str((tmp_path / "github" / "acme" / "shop.git").resolve())
    git("clone", "--quiet", repo.clone_url, str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "src" / "app.py").read_text() == "VERSION = 1\n"
    assert state.branch_sha(REPO, "main") == git("rev-parse", "HEAD", cwd=tmp_path / "clone")
    assert state.file_at(REPO, "main", "README.md") == "# shop\n"
    assert state.file_at(REPO, "main", "missing.txt") is None
    assert state.branch_sha(REPO, "nope") is None


def test_non_main_default_branch_is_honoured(gh, state, tmp_path):
    state.create_repo("acme/legacy", {"a.txt": "a\n"}, default_branch="develop")

    repo = gh.get_repo("acme/legacy")

    assert repo.default_branch == "develop"
    git("clone", "--quiet", repo.clone_url, str(tmp_path / "legacy"))
    assert git("branch", "--show-current", cwd=tmp_path / "legacy") == "develop"
    assert state.branch_sha("acme/legacy", "main") is None
    assert repo.get_branch("develop").commit.sha == state.branch_sha("acme/legacy", "develop")


def test_unknown_repo_and_route_answer_404_json(gh, server):
    with pytest.raises(github.UnknownObjectException):
        gh.get_repo("acme/nothing")
    status, headers, body = raw(server, "/no/such/route")
    assert (status, body["message"]) == (404, "Not Found")
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(headers["X-RateLimit-Remaining"]) > 1000


def test_wrong_token_is_bad_credentials(server):
    with pytest.raises(github.BadCredentialsException):
        connect(server, token="wrong").get_repo(REPO)
    status, _, body = raw(server, f"/repos/{REPO}", token="wrong")
    assert (status, body["message"]) == (401, "Bad credentials")
    assert raw(server, f"/repos/{REPO}", scheme="Bearer")[0] == 200


def test_user_and_rate_limit(gh):
    assert gh.get_user().login == "asm-sandbox-bot"
    assert gh.get_rate_limit().resources.core.remaining > 1000


# -- people, tokens and permissions ------------------------------------------------------------


def test_each_token_acts_as_its_own_user(server, state):
    triager = state.add_user("tina")
    state.grant(REPO, "tina", "triage")

    assert connect(server, token=triager).get_user().login == "tina"
    assert connect(server, token=state.token_for("sandbox-user")).get_user().login == "sandbox-user"
    assert connect(server).get_user().login == "asm-sandbox-bot"
    assert state.user_for_token(state.token) == "asm-sandbox-bot"
    assert state.user_for_token("nobody's") is None
    assert state.add_user("chosen", token="my-own-token") == "my-own-token"
    assert connect(server, token="my-own-token").get_user().login == "chosen"
    with pytest.raises(ValueError):
        state.add_user("TINA")  # logins ignore case, as on GitHub
    with pytest.raises(ValueError):
        state.create_issue(REPO, "by a stranger", author="never-added")


@pytest.mark.parametrize(
    ("role", "permission"),
    [("admin", "admin"), ("maintain", "write"), ("write", "write"), ("triage", "read"), ("read", "read")],
)
def test_collaborator_permission_maps_each_role_as_github_does(gh, server, state, role, permission):
    state.add_user("pat")
    state.grant(REPO, "pat", role)
    repo = gh.get_repo(REPO)

    assert repo.get_collaborator_permission("pat") == permission
    assert repo.get_collaborator_role_name("pat") == role
    status, _, body = raw(server, f"/repos/{REPO}/collaborators/pat/permission")
    assert status == 200 and (body["permission"], body["role_name"]) == (permission, role)
    assert body["user"]["login"] == "pat" and body["user"]["role_name"] == role
    assert body["user"]["permissions"]["push"] == (permission in ("admin", "write"))


def test_default_roles_no_role_and_unknown_users(gh, state):
    repo = gh.get_repo(REPO)
    state.add_user("passer-by")

    assert repo.get_collaborator_role_name("asm-sandbox-bot") == "write"
    assert repo.get_collaborator_role_name("sandbox-user") == "admin"
    assert (repo.get_collaborator_permission("passer-by"), repo.get_collaborator_role_name("passer-by")) == (
        "read", "read")  # a public repository: anyone reads it
    state.grant(REPO, "sandbox-user", None)
    assert repo.get_collaborator_permission("sandbox-user") == "read"
    assert state.role(REPO, "sandbox-user") is None
    with pytest.raises(github.UnknownObjectException):
        repo.get_collaborator_permission("no-such-login")
    with pytest.raises(github.UnknownObjectException):
        _ = gh.get_user("no-such-login").login
    with pytest.raises(ValueError):
        state.grant(REPO, "passer-by", "owner")
    assert gh.get_user("passer-by").login == "passer-by"
    assert gh.get_user("acme").type == "Organization"


def test_repo_permissions_are_the_callers(server, state):
    state.add_user("reader")
    state.grant(REPO, "reader", "read")

    as_bot = connect(server).get_repo(REPO).permissions
    as_reader = connect(server, token=state.token_for("reader")).get_repo(REPO).permissions
    as_owner = connect(server, token=state.token_for("sandbox-user")).get_repo(REPO).permissions

    assert (as_bot.push, as_bot.triage, as_bot.maintain, as_bot.admin) == (True, True, False, False)
    assert (as_reader.pull, as_reader.triage, as_reader.push) == (True, False, False)
    assert as_owner.admin and as_owner.maintain


def test_author_association_follows_roles(server, state, tmp_path):
    for login, role in (("maya", "maintain"), ("tina", "triage"), ("stranger", None)):
        state.add_user(login)
        state.grant(REPO, login, role)
    number = state.create_issue(REPO, "Who is who")
    for login in ("sandbox-user", "asm-sandbox-bot", "maya", "tina", "stranger"):
        connect(server, token=state.token_for(login)).get_repo(REPO).get_issue(number).create_comment(login)
    issue = connect(server).get_repo(REPO).get_issue(number)

    seen = {comment.user.login: comment.raw_data["author_association"] for comment in issue.get_comments()}

    assert seen == {"sandbox-user": "OWNER", "asm-sandbox-bot": "COLLABORATOR", "maya": "COLLABORATOR",
                    "tina": "COLLABORATOR", "stranger": "NONE"}
    assert issue.raw_data["author_association"] == "OWNER"
    contributor = connect(server, token=state.token_for("stranger")).get_repo(REPO)
    push_branch(contributor.clone_url, tmp_path / "work", "fix", {"fix.txt": "fix\n"})
    contributor.create_pull(title="A fix", body="", head="fix", base="main").merge()
    assert state.association(REPO, "stranger") == "CONTRIBUTOR"  # a merged PR and no role


# -- who did what: issue events, edit history, the clock ---------------------------------------


def test_label_events_name_the_actor_as_asm_moves_labels(server, state):
    state.add_user("tina")
    state.grant(REPO, "tina", "triage")
    number = state.create_issue(REPO, "Add a cart", labels=["bug"])
    connect(server, token=state.token_for("tina")).get_repo(REPO).get_issue(number).add_to_labels("ready-for-dev")
    issue = connect(server).get_repo(REPO).get_issue(number)

    issue.add_to_labels("in-progress")  # what asm does when it claims an issue
    issue.remove_from_labels("ready-for-dev")

    events = [(e.event, e.actor.login, e.label.name) for e in issue.get_events()]
    assert events == [
        ("labeled", "sandbox-user", "bug"),  # given at creation: labelled by the author
        ("labeled", "tina", "ready-for-dev"),
        ("labeled", "asm-sandbox-bot", "in-progress"),
        ("unlabeled", "asm-sandbox-bot", "ready-for-dev"),
    ]
    assert [e.event for e in state.events(REPO, number)] == ["labeled"] * 3 + ["unlabeled"]


def test_event_payload_is_github_shaped_and_paginated(server, state):
    number = state.create_issue(REPO, "Many labels", labels=[f"l{n}" for n in range(5)])

    status, headers, body = raw(server, f"/repos/{REPO}/issues/{number}/events?per_page=2")

    assert status == 200 and len(body) == 2 and 'rel="next"' in headers["Link"]
    event = body[0]
    assert set(event) == {"id", "node_id", "url", "actor", "event", "commit_id", "commit_url", "created_at",
                          "label", "performed_via_github_app"}
    assert event["label"] == {"name": "l0", "color": "ededed"} and event["commit_id"] is None
    assert event["url"] == f"{server.url}/repos/{REPO}/issues/events/{event['id']}"
    assert raw(server, event["url"].removeprefix(server.url))[2] == event
    client = connect(server, per_page=2)
    assert [e.label.name for e in client.get_repo(REPO).get_issue(number).get_events()] == [f"l{n}" for n in range(5)]


def test_set_labels_logs_only_the_changes(gh, state):
    number = state.create_issue(REPO, "Relabel", labels=["a", "b"])

    gh.get_repo(REPO).get_issue(number).set_labels("b", "c")

    moves = [(e.event, e.label.name, e.actor) for e in state.events(REPO, number)][2:]
    assert moves == [("unlabeled", "a", "asm-sandbox-bot"), ("labeled", "c", "asm-sandbox-bot")]


def test_renames_closes_and_reopens_are_events(server, state):
    state.add_user("edna")
    number = state.create_issue(REPO, "Old title")
    issue = connect(server, token=state.token_for("edna")).get_repo(REPO).get_issue(number)

    issue.edit(title="New title")
    issue.edit(title="New title", body="same title: no event")
    issue.edit(state="closed")
    assert issue.closed_by.login == "edna"
    issue.edit(state="open")

    events = list(connect(server).get_repo(REPO).get_issue(number).get_events())
    assert [(e.event, e.actor.login) for e in events] == [("renamed", "edna"), ("closed", "edna"),
                                                          ("reopened", "edna")]
    assert events[0].rename == {"from": "Old title", "to": "New title"}
    assert events[0].raw_data["node_id"].startswith("RTE_")


def test_merge_logs_merged_and_closes_the_issue_with_the_commit(gh, state, tmp_path):
    number = state.create_issue(REPO, "Add a cart")
    repo = gh.get_repo(REPO)
    push_branch(repo.clone_url, tmp_path / "work", BRANCH, {"cart.py": "CART = []\n"})
    pr = repo.create_pull(title="[AI] Add a cart", body=f"Closes #{number}", head=BRANCH, base="main")

    sha = pr.merge().sha

    assert [(e.event, e.actor.login, e.commit_id) for e in repo.get_issue(pr.number).get_events()] == [
        ("merged", "asm-sandbox-bot", sha), ("closed", "asm-sandbox-bot", None)]
    [closed] = repo.get_issue(number).get_events()
    assert (closed.event, closed.commit_id, closed.commit_url) == ("closed", sha, f"{repo.url}/commits/{sha}")
    assert repo.get_pull(pr.number).merged_by.login == "asm-sandbox-bot"


def test_body_edits_keep_a_history_that_starts_with_the_original(server, state):
    state.add_user("mallory")
    number = state.create_issue(REPO, "Fix login", "The original text.")
    assert state.edits(REPO, number) == []
    state.advance(60)

    connect(server, token=state.token_for("mallory")).get_repo(REPO).get_issue(number).edit(body="Injected text.")
    state.edit_issue(REPO, number, body="Restored text.")

    created = state.issue_record(REPO, number).created_at
    history = [(edit.editor, edit.text) for edit in state.edits(REPO, number)]
    assert history == [("sandbox-user", "The original text."), ("mallory", "Injected text."),
                       ("sandbox-user", "Restored text.")]
    assert state.edits(REPO, number)[0].edited_at == created < state.edits(REPO, number)[1].edited_at


def test_the_clock_moves_every_timestamp_without_sleeping(gh, state):
    number = state.create_issue(REPO, "Timed", labels=["ready-for-dev"])
    issue = gh.get_repo(REPO).get_issue(number)
    created = issue.created_at

    state.advance(3600)
    issue.edit(body="an hour later")
    comment = issue.create_comment("still an hour later")

    labelled, = issue.get_events()
    assert labelled.created_at == created
    assert 3600 <= (comment.created_at - created).total_seconds() <= 3605
    assert 3600 <= (gh.get_repo(REPO).get_issue(number).updated_at - created).total_seconds() <= 3605
    assert state.clock.iso().endswith("Z") and len(state.clock.iso()) == len("2011-04-14T16:00:49Z")
    with pytest.raises(ValueError):
        state.advance(-1)


# -- issues and pagination ---------------------------------------------------------------------


def test_pagination_walks_every_page(server, state):
    for n in range(1, 8):
        state.create_issue(REPO, f"issue {n}", labels=["ready-for-dev"] + (["bug"] if n % 3 == 0 else []))
    state.close_issue(REPO, 7)
    client = connect(server, per_page=2)
    repo = client.get_repo(REPO)
    state.reset_requests()

    assert [issue.number for issue in repo.get_issues()] == [6, 5, 4, 3, 2, 1]
    pages = [path for _, path in state.requests]
    assert len(pages) == 3 and "page=3" in pages[-1]

    assert [i.number for i in repo.get_issues(state="all", labels=["ready-for-dev"])] == [7, 6, 5, 4, 3, 2, 1]
    assert [i.number for i in repo.get_issues(state="all", labels=["ready-for-dev", "bug"])] == [6, 3]
    assert [i.number for i in repo.get_issues(state="closed")] == [7]
    assert repo.get_issues(state="all").totalCount == 7


def test_link_header_is_github_shaped(server, state):
    for n in range(5):
        state.create_issue(REPO, f"issue {n}")

    status, headers, body = raw(server, f"/repos/{REPO}/issues?per_page=2&page=2")

    assert status == 200 and [issue["number"] for issue in body] == [3, 2]
    links = dict(reversed(part.split("; ")) for part in headers["Link"].split(", "))
    assert links == {
        'rel="prev"': f"<{server.url}/repos/{REPO}/issues?per_page=2&page=1>",
        'rel="first"': f"<{server.url}/repos/{REPO}/issues?per_page=2&page=1>",
        'rel="next"': f"<{server.url}/repos/{REPO}/issues?per_page=2&page=3>",
        'rel="last"': f"<{server.url}/repos/{REPO}/issues?per_page=2&page=3>",
    }


def test_issue_payload_reads_without_lazy_refetch(gh, state):
    number = state.create_issue(REPO, "Add a cart", "Users need a cart.", labels=["ready-for-dev"])
    issue = gh.get_repo(REPO).get_issue(number)
    state.reset_requests()

    seen = (issue.title, issue.body, issue.state, [label.name for label in issue.labels], issue.user.login,
            issue.comments, issue.pull_request, issue.html_url, issue.created_at.year, issue.closed_at)

    assert seen[:7] == ("Add a cart", "Users need a cart.", "open", ["ready-for-dev"], "sandbox-user", 0, None)
    assert state.requests == []  # every attribute asm reads was in the payload


def test_edit_and_close_issue(gh, state):
    number = state.create_issue(REPO, "Old title")
    issue = gh.get_repo(REPO).get_issue(number)

    issue.edit(title="New title", body="details", labels=["triage"])
    issue.edit(state="closed")

    assert state.issue(REPO, number) == IssueView(number, "New title", "details", "closed", ("triage",), (), False)
    assert gh.get_repo(REPO).get_issue(number).closed_at is not None
    with pytest.raises(github.UnknownObjectException):
        gh.get_repo(REPO).get_issue(99)


def test_pull_requests_appear_in_the_issue_list(gh, state, tmp_path):
    plain = state.create_issue(REPO, "Plain issue")
    repo = gh.get_repo(REPO)
    push_branch(repo.clone_url, tmp_path / "work", "feature", {"new.txt": "new\n"})
    pr = repo.create_pull(title="Feature", body="Closes #1", head="feature", base="main")

    listed = {issue.number: issue for issue in repo.get_issues()}

    assert set(listed) == {plain, pr.number} and pr.number == plain + 1
    assert listed[plain].pull_request is None
    assert listed[pr.number].pull_request.html_url == pr.html_url
    assert repo.get_issue(pr.number).pull_request is not None
    assert state.issue(REPO, pr.number).is_pull


# -- labels and comments -----------------------------------------------------------------------


def test_labels_add_remove_set_create_and_get(gh, state):
    number = state.create_issue(REPO, "Label me", labels=["ready-for-dev"])
    repo = gh.get_repo(REPO)
    issue = repo.get_issue(number)

    issue.add_to_labels("in-progress")
    issue.remove_from_labels("ready-for-dev")
    assert state.issue(REPO, number).labels == ("in-progress",)
    assert "in-progress" in state.labels(REPO)  # created on the repo by adding it
    with pytest.raises(github.GithubException) as absent:
        issue.remove_from_labels("ready-for-dev")
    assert (absent.value.status, absent.value.data["message"]) == (404, "Label does not exist")

    issue.set_labels("in review", "ai-failed")
    assert [label.name for label in issue.get_labels()] == ["in review", "ai-failed"]

    created = repo.create_label("needs-clarification", "d73a4a", "A question was asked")
    assert (created.name, created.color) == ("needs-clarification", "d73a4a")
    assert created.description == "A question was asked"
    with pytest.raises(github.GithubException) as refused:
        repo.create_label("needs-clarification", "d73a4a")
    assert refused.value.status == 422 and refused.value.data["errors"][0]["code"] == "already_exists"

    assert repo.get_label("in review").name == "in review"  # the space travels url-encoded
    with pytest.raises(github.UnknownObjectException):
        repo.get_label("never-made")
    assert sorted(label.name for label in repo.get_labels()) == sorted(state.labels(REPO))


def test_comments(gh, state):
    number = state.create_issue(REPO, "Discuss")
    issue = gh.get_repo(REPO).get_issue(number)

    first = issue.create_comment("Claimed by worker-1")
    issue.create_comment("Opened a PR")

    assert first.body == "Claimed by worker-1" and first.user.login == "asm-sandbox-bot"
    assert first.html_url.endswith(f"/issues/{number}#issuecomment-{first.id}")
    assert [comment.body for comment in issue.get_comments()] == ["Claimed by worker-1", "Opened a PR"]
    assert gh.get_repo(REPO).get_issue(number).comments == 2
    assert state.issue(REPO, number).comments == ("Claimed by worker-1", "Opened a PR")


def test_concurrent_writes_all_land(server, state):
    number = state.create_issue(REPO, "Busy")

    def comment(n: int) -> None:
        client = connect(server)
        client.get_repo(REPO).get_issue(number).create_comment(f"comment {n}")
        client.close()

    threads = [threading.Thread(target=comment, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(state.issue(REPO, number).comments) == sorted(f"comment {n}" for n in range(8))


# -- pull requests -----------------------------------------------------------------------------


def test_create_pull_and_find_it_by_head(gh, state, tmp_path):
    number = state.create_issue(REPO, "Add a cart")
    repo = gh.get_repo(REPO)
    sha = push_branch(repo.clone_url, tmp_path / "work", BRANCH, {"cart.py": "CART = []\n"})

    pr = repo.create_pull(title="[AI] Add a cart", body=f"Closes #{number}", head=BRANCH, base="main")

    assert (pr.state, pr.merged, pr.head.ref, pr.head.sha, pr.base.ref) == ("open", False, BRANCH, sha, "main")
    assert pr.base.repo.full_name == REPO and pr.user.login == "asm-sandbox-bot"
    found = repo.get_pulls(state="open", head=f"acme:{BRANCH}")
    assert [p.number for p in found] == [pr.number]
    assert list(repo.get_pulls(head="acme:other")) == []
    push_branch(repo.clone_url, tmp_path / "work", "other", {"other.py": "\n"})
    other = repo.create_pull(title="Other", body="", head="other", base="main")
    bare = repo.get_pulls(head=BRANCH)  # no owner: GitHub ignores the filter, and so does the sandbox
    assert [p.number for p in bare] == [other.number, pr.number]
    assert repo.get_pull(pr.number).title == "[AI] Add a cart"
    assert state.pulls(REPO)[0] == PullView(
        pr.number, "[AI] Add a cart", f"Closes #{number}", BRANCH, "main", "open", False, pr.html_url
    )


def test_create_pull_refusals_are_422(gh, tmp_path):
    repo = gh.get_repo(REPO)
    push_branch(repo.clone_url, tmp_path / "work", "feature", {"f.txt": "f\n"})
    repo.create_pull(title="First", body="", head="acme:feature", base="main")

    def refusal(**fields) -> dict:
        with pytest.raises(github.GithubException) as refused:
            repo.create_pull(**{"title": "T", "body": "", "head": "feature", "base": "main", **fields})
        assert refused.value.status == 422
        return refused.value.data["errors"][0]

    assert refusal(head="missing")["field"] == "head"
    assert refusal(base="missing")["field"] == "base"
    assert refusal()["message"] == "A pull request already exists for acme:feature."
    assert refusal(head="main", base="main")["message"] == "No commits between main and main"


def test_merge_really_merges_and_closes_the_linked_issue(gh, state, tmp_path):
    number = state.create_issue(REPO, "Add a cart", labels=["in-review"])
    repo = gh.get_repo(REPO)
    head_sha = push_branch(repo.clone_url, tmp_path / "work", BRANCH, {"cart.py": "CART = []\n"})
    pr = repo.create_pull(title="[AI] Add a cart", body=f"Closes #{number}", head=BRANCH, base="main")

    status = pr.merge(merge_method="merge")

    assert status.merged and status.sha == state.branch_sha(REPO, "main")
    assert state.file_at(REPO, "main", "cart.py") == "CART = []\n"
    merged = repo.get_pull(pr.number)
    assert (merged.merged, merged.state, merged.merge_commit_sha) == (True, "closed", status.sha)
    assert state.issue(REPO, number).state == "closed"
    assert state.pulls(REPO)[0].merged
    bare = repo.clone_url.removeprefix("file://")
    parents = git("--git-dir", bare, "rev-list", "--parents", "-n1", status.sha).split()[1:]
    assert parents == [git("rev-parse", "HEAD~1", cwd=tmp_path / "work"), head_sha]  # a true --no-ff merge
    with pytest.raises(github.GithubException) as again:
        pr.merge()
    assert again.value.status == 405


def test_conflicting_merge_is_405_and_leaves_base_alone(gh, state, tmp_path):
    repo = gh.get_repo(REPO)
    push_branch(repo.clone_url, tmp_path / "work", "one", {"src/app.py": "VERSION = 2\n"})
    push_branch(repo.clone_url, tmp_path / "work", "two", {"src/app.py": "VERSION = 3\n"})
    first = repo.create_pull(title="One", body="", head="one", base="main")
    second = repo.create_pull(title="Two", body="", head="two", base="main")
    first.merge()
    base_sha = state.branch_sha(REPO, "main")

    with pytest.raises(github.GithubException) as refused:
        second.merge()

    assert (refused.value.status, refused.value.data["message"]) == (405, "Pull Request is not mergeable")
    assert state.branch_sha(REPO, "main") == base_sha
    assert state.file_at(REPO, "main", "src/app.py") == "VERSION = 2\n"
    assert not repo.get_pull(second.number).merged


def test_edit_pull_and_squash_merge(gh, state, tmp_path):
    repo = gh.get_repo(REPO)
    push_branch(repo.clone_url, tmp_path / "work", "squashy", {"s.txt": "s\n"})
    pr = repo.create_pull(title="Squash me", body="draft notes", head="squashy", base="main", draft=True)
    assert pr.draft

    pr.edit(body="Final notes")
    status = pr.merge(merge_method="squash")

    assert state.pulls(REPO)[0].body == "Final notes" and state.pulls(REPO)[0].merged
    bare = repo.clone_url.removeprefix("file://")
    assert len(git("--git-dir", bare, "rev-list", "--parents", "-n1", status.sha).split()) == 2  # one parent
    assert git("--git-dir", bare, "log", "-1", "--format=%s", status.sha) == f"Squash me (#{pr.number})"


# -- injected failures -------------------------------------------------------------------------


def test_injected_502_then_success_is_retried(server, state):
    client = connect(server, retry=github.GithubRetry(total=3, backoff_factor=0))
    state.reset_requests()
    state.inject_failures(502, count=1, path_contains="/repos/acme/shop")

    assert client.get_repo(REPO).name == "shop"
    assert state.requests == [("GET", f"/repos/{REPO}"), ("GET", f"/repos/{REPO}")]
    assert state.request_count == 2


def test_injected_failures_only_hit_matching_paths(gh, state):
    state.create_issue(REPO, "One")
    state.inject_failures(502, count=2, path_contains="/issues")
    repo = gh.get_repo(REPO)  # not matched: served normally

    for _ in range(2):
        with pytest.raises(github.GithubException) as failed:
            repo.get_issue(1)
        assert failed.value.status == 502
    assert repo.get_issue(1).title == "One"


def test_secondary_rate_limit_with_retry_after(server, state):
    state.inject_failures(403, retry_after=7)
    status, headers, body = raw(server, f"/repos/{REPO}")
    assert (status, headers["Retry-After"]) == (403, "7")
    assert body["message"].startswith("You have exceeded a secondary rate limit")
    assert body["documentation_url"].startswith("https://docs.github.com/")

    state.inject_failures(403, retry_after=0)
    with pytest.raises(github.RateLimitExceededException):
        connect(server).get_repo(REPO)  # no retry configured: PyGithub names the error

    state.reset_requests()
    state.inject_failures(403, retry_after=0)
    state.inject_failures(429, retry_after=0)
    retrying = connect(server, retry=github.GithubRetry(total=3, backoff_factor=0, secondary_rate_wait=0))
    assert retrying.get_repo(REPO).name == "shop"
    assert state.request_count == 3


def test_stopped_server_refuses_connections(state):
    server = GitHubServer(state).start()
    url = server.url
    assert raw(server, "/user")[0] == 200
    server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/user", timeout=2)
