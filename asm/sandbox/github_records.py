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

    def __init__(self, status: int, message: str, errors: tuple[dict[str, str] | str, ...] = ()) -> None:
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


def unprocessable(*reasons: str) -> ApiError:
    """The 422 some endpoints (reviews) answer with: a generic message, the reasons as plain strings."""
    return ApiError(422, "Unprocessable Entity", reasons)


def invalid_request(*missing: str, reason: str = "") -> ApiError:
    """The 422 of GitHub's JSON-schema check on a request body, worded as GitHub words it."""
    if missing:
        names = ", ".join(f'"{name}"' for name in missing)
        reason = f"{names} {'wasn' if len(missing) == 1 else 'weren'}'t supplied."
    return ApiError(422, f"Invalid request.\n\n{reason}")


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
    # Oldest first; empty until the text is first edited, then the original text leads (as an issue's body's).
    edits: tuple[BodyEdit, ...] = ()

    @property
    def updated_at(self) -> str:
        """When its text last changed: REST's `updated_at`, which an edit moves."""
        return self.edits[-1].edited_at if self.edits else self.created_at


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
    """One version of an issue's body (or a comment's) in its edit history: `editor` wrote `text` at `edited_at`."""

    id: int
    edited_at: str
    editor: str
    text: str


@dataclass(frozen=True)
class ReviewComment:
    """A comment on a line of a pull request's diff; on GitHub each one belongs to a review."""

    id: int
    review_id: int
    author: str
    body: str
    path: str
    line: int | None  # None: a comment on the whole file
    original_line: int | None
    side: str  # RIGHT: the line as the head has it
    commit_id: str  # the commit it was made on
    diff_hunk: str  # the diff up to and including the line, as GitHub quotes it
    in_reply_to_id: int | None  # the thread's first comment, for a reply
    created_at: str


@dataclass(frozen=True)
class Review:
    """A pull request review and the line comments it holds."""

    id: int
    author: str
    state: str  # PENDING, COMMENTED, APPROVED, CHANGES_REQUESTED or DISMISSED
    body: str
    submitted_at: str | None  # None while pending
    commit_id: str  # the head of the pull request when it was made
    created_at: str
    comments: tuple[ReviewComment, ...] = ()


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
    reviews: tuple[Review, ...] = ()  # oldest first


@dataclass(frozen=True)
class CheckRun:
    """A check run on a commit, made by an app (GitHub Actions' jobs are check runs too)."""

    id: int
    head_sha: str
    name: str
    status: str  # queued, in_progress or completed
    conclusion: str | None  # set once completed
    started_at: str | None
    completed_at: str | None
    title: str | None  # the run's output: title, summary, text
    summary: str | None
    text: str | None
    app: str  # the slug of the app that made it
    suite_id: int  # one check suite per app and commit
    details_url: str | None
    external_id: str
    log: str  # what the job's log URL serves


@dataclass(frozen=True)
class CommitStatus:
    """One status posted on a commit; the newest of a context is the one that counts."""

    id: int
    sha: str
    context: str
    state: str  # error, failure, pending or success
    description: str | None
    target_url: str | None
    creator: str
    created_at: str


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
    touched: int = 0  # the order of its last change: what sorts by update within one second


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
