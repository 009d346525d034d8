"""JSON bodies shaped like GitHub's REST payloads, built from the sandbox's frozen records.

Every object carries its own API `url`: PyGithub re-fetches that url whenever code reads an
attribute the payload lacks, so a wrong url would surface as a baffling 404 far from here.
`api` is the server's base URL (what PyGithub was given as `base_url`); `viewer` is the login
of whoever is asking, for the parts GitHub shapes to the asker.
"""

from __future__ import annotations

from urllib.parse import quote

from asm.sandbox.github_limits import Budget
from asm.sandbox.github_people import PERMISSION, repo_permissions
from asm.sandbox.github_records import Comment, Issue, IssueEvent, Label, Repo
from asm.sandbox.github_state import GitHubState


def user(api: str, web: str, login: str, kind: str = "User") -> dict:
    bot = login.endswith("[bot]")  # a GitHub App's bot user (github_apps): REST gives it as `<slug>[bot]`
    return {
        "login": login,
        "id": sum(login.encode()) + 1,  # stable per login, which is all clients compare
        "node_id": f"U_sandbox_{login}",
        "type": "Bot" if bot else kind,
        "site_admin": False,
        "url": f"{api}/users/{quote(login)}",
        "html_url": f"{web}/apps/{login.removesuffix('[bot]')}" if bot else f"{web}/{login}",
        "avatar_url": "",
        "gravatar_id": "",
    }


def repo(api: str, state: GitHubState, record: Repo, viewer: str) -> dict:
    url = f"{api}/repos/{record.full_name}"
    open_count = len(state.issue_records(record.full_name, "open"))
    return {
        "id": record.id,
        "node_id": f"R_sandbox{record.id}",
        "name": record.name,
        "full_name": record.full_name,
        "owner": user(api, state.web_url, record.owner, "Organization"),
        "private": False,
        "visibility": "public",
        "description": None,
        "fork": False,
        "archived": False,
        "disabled": False,
        "url": url,
        "html_url": f"{state.web_url}/{record.full_name}",
        "clone_url": record.clone_url,
        "git_url": record.clone_url,
        "ssh_url": record.clone_url,
        "svn_url": f"{state.web_url}/{record.full_name}",
        "issues_url": f"{url}/issues{{/number}}",
        "pulls_url": f"{url}/pulls{{/number}}",
        "labels_url": f"{url}/labels{{/name}}",
        "branches_url": f"{url}/branches{{/branch}}",
        "default_branch": record.default_branch,
        "created_at": record.created_at,
        "updated_at": record.created_at,
        "pushed_at": record.created_at,
        "homepage": None,
        "language": None,
        "size": 0,
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": False,
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "open_issues_count": open_count,
        "open_issues": open_count,
        "license": None,
        "topics": [],
        "allow_merge_commit": True,
        "allow_squash_merge": True,
        "allow_rebase_merge": False,
        "permissions": repo_permissions(state.role(record.full_name, viewer)),
    }


def label(api: str, full_name: str, record: Label) -> dict:
    return {
        "id": record.id,
        "node_id": f"LA_sandbox{record.id}",
        "url": f"{api}/repos/{full_name}/labels/{quote(record.name, safe='')}",
        "name": record.name,
        "color": record.color,
        "description": record.description,
        "default": False,
    }


def _labels(api: str, state: GitHubState, full_name: str, names: tuple[str, ...]) -> list[dict]:
    known = {record.name.lower(): record for record in state.label_records(full_name)}
    # Labels are never deleted and adding one to an issue creates it, so every name is known.
    return [label(api, full_name, known[name.lower()]) for name in names]


def issue(api: str, state: GitHubState, full_name: str, record: Issue) -> dict:
    """An issue as the issues endpoints show it; a pull request gets its `pull_request` key."""
    url = f"{api}/repos/{full_name}/issues/{record.number}"
    payload = {
        "id": record.id,
        "node_id": f"I_sandbox{record.id}",
        "number": record.number,
        "title": record.title,
        "body": record.body,
        "state": record.state,
        "state_reason": "completed" if record.state == "closed" else None,
        "locked": False,
        "labels": _labels(api, state, full_name, record.labels),
        "user": user(api, state.web_url, record.author),
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": len(record.comments),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "closed_at": record.closed_at,
        "closed_by": user(api, state.web_url, record.closed_by) if record.closed_by else None,
        "author_association": state.association(full_name, record.author),
        "url": url,
        "html_url": state.html_url(full_name, record),
        "repository_url": f"{api}/repos/{full_name}",
        "labels_url": f"{url}/labels{{/name}}",
        "comments_url": f"{url}/comments",
        "events_url": f"{url}/events",
        "timeline_url": f"{url}/timeline",
    }
    if record.pull is not None:
        payload["draft"] = record.pull.draft
        html = state.html_url(full_name, record)
        payload["pull_request"] = {
            "url": f"{api}/repos/{full_name}/pulls/{record.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "merged_at": record.pull.merged_at,
        }
    return payload


def comment(api: str, state: GitHubState, full_name: str, number: int, record: Comment) -> dict:
    html = state.html_url(full_name, state.issue_record(full_name, number))
    return {
        "id": record.id,
        "node_id": f"IC_sandbox{record.id}",
        "body": record.body,
        "user": user(api, state.web_url, record.author),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "author_association": state.association(full_name, record.author),
        "url": f"{api}/repos/{full_name}/issues/comments/{record.id}",
        "html_url": f"{html}#issuecomment-{record.id}",
        "issue_url": f"{api}/repos/{full_name}/issues/{number}",
    }


def pull(api: str, state: GitHubState, full_name: str, record: Issue, heads: dict[str, str], viewer: str) -> dict:
    """A pull request; `heads` maps each branch to its sha right now (one git call per request)."""
    repository = repo(api, state, state.repo(full_name), viewer)
    owner = repository["owner"]["login"]
    url = f"{api}/repos/{full_name}/pulls/{record.number}"
    issue_url = f"{api}/repos/{full_name}/issues/{record.number}"
    html = state.html_url(full_name, record)
    pr = record.pull
    assert pr is not None  # a pull request's record: pull_record and pull_records return no others

    def side(branch: str, sha: str) -> dict:
        return {
            "label": f"{owner}:{branch}",
            "ref": branch,
            "sha": sha,
            "user": repository["owner"],
            "repo": repository,
        }

    return {
        "id": record.id,
        "node_id": f"PR_sandbox{record.id}",
        "number": record.number,
        "state": record.state,
        "locked": False,
        "title": record.title,
        "body": record.body,
        "user": user(api, state.web_url, record.author),
        "labels": _labels(api, state, full_name, record.labels),
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "milestone": None,
        "draft": pr.draft,
        "head": side(pr.head, heads.get(pr.head, pr.head_sha)),
        "base": side(pr.base, heads.get(pr.base, "")),
        "merged": pr.merged,
        # GitHub computes mergeability lazily; the sandbox answers at once and checks at merge.
        "mergeable": None if record.state == "closed" else True,
        "mergeable_state": "unknown" if record.state == "closed" else "clean",
        "rebaseable": False,
        "merged_at": pr.merged_at,
        "merged_by": user(api, state.web_url, pr.merged_by) if pr.merged_by else None,
        "merge_commit_sha": pr.merge_commit_sha,
        "auto_merge": None,
        "maintainer_can_modify": False,
        "author_association": state.association(full_name, record.author),
        "comments": len(record.comments),
        "review_comments": sum(len(review.comments) for review in pr.reviews if review.state != "PENDING"),
        "commits": 1,
        "additions": 0,
        "deletions": 0,
        "changed_files": 0,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "closed_at": record.closed_at,
        "url": url,
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue_url,
        "comments_url": f"{issue_url}/comments",
        "commits_url": f"{url}/commits",
        "review_comments_url": f"{url}/comments",
        "review_comment_url": f"{api}/repos/{full_name}/pulls/comments{{/number}}",
        "statuses_url": f"{api}/repos/{full_name}/statuses/{heads.get(pr.head, pr.head_sha)}",
    }


def event(api: str, state: GitHubState, full_name: str, record: IssueEvent) -> dict:
    """One issue event as `GET /repos/{owner}/{repo}/issues/{number}/events` lists it."""
    prefix = {"labeled": "LE", "unlabeled": "UNLE", "renamed": "RTE", "closed": "CE", "reopened": "REE", "merged": "ME"}
    payload = {
        "id": record.id,
        "node_id": f"{prefix[record.event]}_sandbox{record.id}",
        "url": f"{api}/repos/{full_name}/issues/events/{record.id}",
        "actor": user(api, state.web_url, record.actor),
        "event": record.event,
        "commit_id": record.commit_id,
        "commit_url": f"{api}/repos/{full_name}/commits/{record.commit_id}" if record.commit_id else None,
        "created_at": record.created_at,
        "performed_via_github_app": None,
    }
    if record.label is not None:
        payload["label"] = {"name": record.label.name, "color": record.label.color}
    if record.rename is not None:
        payload["rename"] = {"from": record.rename[0], "to": record.rename[1]}
    return payload


def permission(api: str, state: GitHubState, login: str, role: str | None) -> dict:
    """`GET /repos/{owner}/{repo}/collaborators/{username}/permission` for `login`."""
    # Every sandbox repository is public: without a role, a user can still read it.
    role = role or "read"
    holder = {**user(api, state.web_url, login), "permissions": repo_permissions(role), "role_name": role}
    return {"permission": PERMISSION[role], "role_name": role, "user": holder}


def branch(api: str, full_name: str, name: str, sha: str) -> dict:
    return {
        "name": name,
        "commit": {"sha": sha, "url": f"{api}/repos/{full_name}/commits/{sha}"},
        "protected": False,
        "_links": {"self": f"{api}/repos/{full_name}/branches/{quote(name, safe='')}"},
    }


# What GitHub sends on every reply besides a person's rate-limit budget (github_limits).
STATIC_HEADERS = {"X-GitHub-Media-Type": "github.v3; format=json"}


def rate_limit(core: Budget, graphql: Budget) -> dict:
    """`GET /rate_limit`: the asker's budgets as they stand (asking spends none)."""
    resources = {"core": core.as_json(), "graphql": graphql.as_json()}
    for name in ("search", "integration_manifest", "code_search"):
        resources[name] = {**core.as_json(), "used": 0, "remaining": core.limit, "resource": name}
    return {"resources": resources, "rate": core.as_json()}
