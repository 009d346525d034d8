"""Commits, their check runs and statuses as GitHub's REST API shapes them.

The shapes are those of GitHub's OpenAPI description and recorded responses (`commit`,
`check-run`, `status`, `combined-commit-status`); see `github_payloads` for what `api` is.
"""

from __future__ import annotations

import re
from typing import Any

from asm.sandbox.github_checks import ACTIONS_APP
from asm.sandbox.github_git import CommitInfo
from asm.sandbox.github_payloads import repo, user
from asm.sandbox.github_records import CheckRun, CommitStatus
from asm.sandbox.github_state import GitHubState

_FILE_STATUS = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}
# GitHub Actions' own app, as check runs of its jobs name it.
_ACTIONS = {"id": 15368, "node_id": "MDM6QXBwMTUzNjg=", "name": "GitHub Actions",
            "description": "Automate your workflow from idea to production",
            "external_url": "https://help.github.com/en/actions"}


_NOREPLY = re.compile(r"([0-9]+)\+(.+)@users\.noreply\.github\.com", re.IGNORECASE)  # use with fullmatch


def _account(api: str, state: GitHubState, email: str) -> dict[str, Any] | None:
    """The user a commit's e-mail address ties it to, as GitHub ties one: here, only a user's `<id>+<login>`
    no-reply address (how a GitHub App's bot signs its commits); None for any other."""
    match = _NOREPLY.fullmatch(email)
    login = state.user(match.group(2)) if match else None
    if match is None or login is None:
        return None
    account = user(api, state.web_url, login)
    return account if str(account["id"]) == match.group(1) else None


def app(api: str, web: str, slug: str) -> dict[str, Any]:
    """The app a check run belongs to: GitHub Actions, or one the sandbox names after its slug."""
    known = _ACTIONS if slug == ACTIONS_APP else {
        "id": sum(slug.encode()) + 100000, "node_id": f"A_sandbox_{slug}", "name": slug, "description": "",
        "external_url": f"{web}/apps/{slug}"}
    owner = "github" if slug == ACTIONS_APP else slug
    return {
        **known,
        "slug": slug,
        "owner": user(api, web, owner, "Organization"),
        "html_url": f"{web}/apps/{slug}",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2024-04-10T20:33:16Z",
        "permissions": {"checks": "write", "contents": "read", "metadata": "read", "statuses": "write"},
        "events": ["check_run", "check_suite", "pull_request", "push"],
    }


def check_run(api: str, state: GitHubState, full_name: str, record: CheckRun, heads: dict[str, str]) -> dict[str, Any]:
    """A check run; `heads` maps each branch to its tip, to find the open pull requests it ran for."""
    url = f"{api}/repos/{full_name}/check-runs/{record.id}"
    html, details = run_urls(state.web_url, full_name, record)
    return {
        "id": record.id,
        "head_sha": record.head_sha,
        "node_id": f"CR_sandbox{record.id}",
        "external_id": record.external_id,
        "url": url,
        "html_url": html,
        "details_url": details,
        "status": record.status,
        "conclusion": record.conclusion,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "output": {
            "title": record.title,
            "summary": record.summary,
            "text": record.text,
            "annotations_count": 0,
            "annotations_url": f"{url}/annotations",
        },
        "name": record.name,
        "check_suite": {"id": record.suite_id},
        "app": app(api, state.web_url, record.app),
        "pull_requests": _pulls_at(api, state, full_name, record.head_sha, heads),
    }


def run_urls(web: str, full_name: str, record: CheckRun) -> tuple[str, str]:
    """A check run's page and its details URL (what a person follows to see why it failed)."""
    if record.app == ACTIONS_APP:
        # An Actions job's page; the sandbox's check suite stands in for the workflow run.
        html = f"{web}/{full_name}/actions/runs/{record.suite_id}/job/{record.id}"
        return html, record.details_url or html
    # Without a details URL of its own, GitHub points at the app's homepage.
    return f"{web}/{full_name}/runs/{record.id}", record.details_url or f"{web}/apps/{record.app}"


def _pulls_at(api: str, state: GitHubState, full_name: str, sha: str, heads: dict[str, str]) -> list[dict[str, Any]]:
    """The open pull requests whose head is `sha`, as a check run lists them."""
    repository = state.repo(full_name)
    side = {"id": repository.id, "url": f"{api}/repos/{full_name}", "name": repository.name}
    return [
        {
            "url": f"{api}/repos/{full_name}/pulls/{record.number}",
            "id": record.id,
            "number": record.number,
            "head": {"ref": record.pull.head, "sha": sha, "repo": side},
            "base": {"ref": record.pull.base, "sha": heads.get(record.pull.base, ""), "repo": side},
        }
        for record in state.pull_records(full_name, "open")
        if record.pull is not None and heads.get(record.pull.head, record.pull.head_sha) == sha
    ]


def status(api: str, state: GitHubState, full_name: str, record: CommitStatus, creator: bool = True) -> dict[str, Any]:
    """A commit status; the combined status lists them without their `creator`, as GitHub does."""
    payload = {
        "url": f"{api}/repos/{full_name}/statuses/{record.sha}",
        "avatar_url": "",
        "id": record.id,
        "node_id": f"SC_sandbox{record.id}",
        "state": record.state,
        "description": record.description,
        "target_url": record.target_url,
        "context": record.context,
        "created_at": record.created_at,
        "updated_at": record.created_at,
    }
    if creator:
        payload["creator"] = user(api, state.web_url, record.creator)
    return payload


def combined_status(api: str, state: GitHubState, full_name: str, sha: str, viewer: str) -> dict[str, Any]:
    """`GET /repos/{owner}/{repo}/commits/{ref}/status`: the verdict and the newest status of each context."""
    verdict, latest = state.combined_status(full_name, sha)
    return {
        "state": verdict,
        "statuses": [status(api, state, full_name, record, creator=False) for record in latest],
        "sha": sha,
        "total_count": len(latest),
        "repository": repo(api, state, state.repo(full_name), viewer),
        "commit_url": f"{api}/repos/{full_name}/commits/{sha}",
        "url": f"{api}/repos/{full_name}/commits/{sha}/status",
    }


def commit(api: str, state: GitHubState, full_name: str, info: CommitInfo) -> dict[str, Any]:
    """`GET /repos/{owner}/{repo}/commits/{ref}`: the commit, its parents and the files it changes."""
    url = f"{api}/repos/{full_name}/commits/{info.sha}"
    web = f"{state.web_url}/{full_name}"

    def person(who: tuple[str, str, str]) -> dict[str, str]:
        return {"name": who[0], "email": who[1], "date": who[2]}

    files: list[dict[str, Any]] = [
        {"sha": None, "filename": name, "status": _FILE_STATUS.get(kind, "modified"), "additions": added,
         "deletions": removed, "changes": added + removed, "blob_url": f"{web}/blob/{info.sha}/{name}",
         "raw_url": f"{web}/raw/{info.sha}/{name}", "contents_url": f"{api}/repos/{full_name}/contents/{name}"}
        for name, kind, added, removed in info.files
    ]
    added, removed = sum(f["additions"] for f in files), sum(f["deletions"] for f in files)
    return {
        "sha": info.sha,
        "node_id": f"C_sandbox{info.sha}",
        "commit": {
            "author": person(info.author),
            "committer": person(info.committer),
            "message": info.message,
            "tree": {"sha": info.tree, "url": f"{api}/repos/{full_name}/git/trees/{info.tree}"},
            "url": f"{api}/repos/{full_name}/git/commits/{info.sha}",
            "comment_count": 0,
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                             "verified_at": None},
        },
        "url": url,
        "html_url": f"{web}/commit/{info.sha}",
        "comments_url": f"{url}/comments",
        # GitHub ties a commit to the user whose e-mail address it carries; none for an address it does not know.
        "author": _account(api, state, info.author[1]),
        "committer": _account(api, state, info.committer[1]),
        "parents": [{"sha": parent, "url": f"{api}/repos/{full_name}/commits/{parent}",
                     "html_url": f"{web}/commit/{parent}"} for parent in info.parents],
        "stats": {"total": added + removed, "additions": added, "deletions": removed},
        "files": files,
    }
