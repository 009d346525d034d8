"""Immutable records of the sandbox GitHub: what the state stores and what it hands out.

Every record is frozen and every change replaces it, so the HTTP layer can build JSON from a
record outside the state's lock without ever seeing a half-applied update.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOCS_URL = "https://docs.github.com/rest"


class ApiError(Exception):
    """A request GitHub would refuse; the server turns it into GitHub's error JSON."""

    def __init__(self, status: int, message: str, errors: tuple[dict[str, str], ...] = ()) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation_failed(resource: str, code: str, field: str = "", message: str = "") -> ApiError:
    """GitHub's 422 shape: a generic message, the detail in `errors`."""
    error: dict[str, str] = {"resource": resource, "code": code}
    if field:
        error["field"] = field
    if message:
        error["message"] = message
    return ApiError(422, "Validation Failed", (error,))


@dataclass(frozen=True)
class Repo:
    id: int
    owner: str
    name: str
    default_branch: str
    path: Path  # the bare repository on disk
    created_at: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def clone_url(self) -> str:
        return "file://" + str(self.path.resolve())


@dataclass(frozen=True)
class Label:
    id: int
    name: str
    color: str
    description: str | None


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    author: str
    created_at: str


@dataclass(frozen=True)
class IssueEvent:
    """One entry of an issue's event log: who did what to it, and when."""

    id: int
    event: str  # GitHub's name: labeled, unlabeled, renamed, closed, reopened, merged
    actor: str
    created_at: str
    label: Label | None = None  # as it was at that moment (labeled, unlabeled)
    rename: tuple[str, str] | None = None  # (from, to) for renamed
    commit_id: str | None = None  # the merge commit behind a merged or closed event


@dataclass(frozen=True)
class BodyEdit:
    """One version of an issue's body in its edit history: `editor` wrote `text` at `edited_at`."""

    id: int
    edited_at: str
    editor: str
    text: str


@dataclass(frozen=True)
class Pull:
    """What a pull request adds to its issue."""

    head: str
    base: str
    head_sha: str  # at creation or merge; the live branch tip wins while the branch exists
    draft: bool = False
    merged: bool = False
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    merged_by: str | None = None


@dataclass(frozen=True)
class Issue:
    """An issue, or a pull request when `pull` is set: GitHub numbers both from one sequence."""

    id: int
    number: int
    title: str
    body: str
    author: str
    created_at: str
    updated_at: str
    state: str = "open"
    closed_at: str | None = None
    closed_by: str | None = None
    labels: tuple[str, ...] = ()
    comments: tuple[Comment, ...] = ()
    pull: Pull | None = None
    events: tuple[IssueEvent, ...] = ()  # oldest first
    # Oldest first; empty until the body is first edited, then the original text leads (as on GitHub).
    edits: tuple[BodyEdit, ...] = ()


@dataclass(frozen=True)
class IssueView:
    """A test-friendly snapshot of one issue (or pull request)."""

    number: int
    title: str
    body: str
    state: str
    labels: tuple[str, ...]
    comments: tuple[str, ...]
    is_pull: bool


@dataclass(frozen=True)
class PullView:
    """A test-friendly snapshot of one pull request."""

    number: int
    title: str
    body: str
    head: str
    base: str
    state: str
    merged: bool
    html_url: str


@dataclass(frozen=True)
class Failure:
    """An injected failure waiting for a matching request."""

    status: int  # 0: not a failure, a delay before the request is served as usual
    remaining: int
    retry_after: float | None
    path_contains: str
    message: str
    method: str = ""
    delay: float = 0.0
