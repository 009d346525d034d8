"""Pull request reviews and review comments as GitHub's REST API shapes them.

The shapes are those of GitHub's OpenAPI description (`pull-request-review`,
`pull-request-review-comment`); see `github_payloads` for what `api` is.
"""

from __future__ import annotations

from typing import Any

from asm.sandbox.github_payloads import user
from asm.sandbox.github_records import Review, ReviewComment
from asm.sandbox.github_state import GitHubState


def review(api: str, state: GitHubState, full_name: str, number: int, record: Review) -> dict[str, Any]:
    """A review; a pending one has no `submitted_at`, as on GitHub."""
    pull_url = f"{api}/repos/{full_name}/pulls/{number}"
    html = f"{state.html_url(full_name, state.pull_record(full_name, number))}#pullrequestreview-{record.id}"
    payload = {
        "id": record.id,
        "node_id": f"PRR_sandbox{record.id}",
        "user": user(api, state.web_url, record.author),
        "body": record.body,
        "state": record.state,
        "html_url": html,
        "pull_request_url": pull_url,
        "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
        "commit_id": record.commit_id,
        "author_association": state.association(full_name, record.author),
    }
    if record.submitted_at is not None:
        payload["submitted_at"] = record.submitted_at
    return payload


def review_comment(api: str, state: GitHubState, full_name: str, number: int, record: ReviewComment) -> dict[str, Any]:
    """A line comment, on its own or in a review's list."""
    url = f"{api}/repos/{full_name}/pulls/comments/{record.id}"
    pull_url = f"{api}/repos/{full_name}/pulls/{number}"
    html = f"{state.html_url(full_name, state.pull_record(full_name, number))}#discussion_r{record.id}"
    # `position` is the legacy address of the line: its place in the quoted hunk.
    position = len(record.diff_hunk.splitlines()) - 1 if record.line is not None else None
    payload = {
        "url": url,
        "pull_request_review_id": record.review_id,
        "id": record.id,
        "node_id": f"PRRC_sandbox{record.id}",
        "diff_hunk": record.diff_hunk,
        "path": record.path,
        "position": position,
        "original_position": position,
        "commit_id": record.commit_id,
        "original_commit_id": record.commit_id,
        "user": user(api, state.web_url, record.author),
        "body": record.body,
        "created_at": record.created_at,
        "updated_at": record.created_at,
        "html_url": html,
        "pull_request_url": pull_url,
        "author_association": state.association(full_name, record.author),
        "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pull_url}},
        "reactions": {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                      "confused": 0, "heart": 0, "rocket": 0, "eyes": 0},
        "start_line": None,
        "original_start_line": None,
        "start_side": None,
        "line": record.line,
        "original_line": record.original_line,
        "side": record.side,
        "subject_type": "line" if record.line is not None else "file",
    }
    if record.in_reply_to_id is not None:
        payload["in_reply_to_id"] = record.in_reply_to_id  # GitHub leaves the key out of a thread's first comment
    return payload
