"""The sandbox GitHub's memory: people, repositories, issues, labels, comments, pull requests.

Reviews, check runs and commit statuses are kept by its base classes, `github_reviews` and `github_checks`.

Plain Python, no HTTP: tests seed and inspect it directly, and `github_server` serves it.
One lock guards everything; records are frozen and replaced on change (see `github_records`).
Each repository is a real bare git repository under `root`, so pushes, clones and merges are
the real thing. Every change is made by someone (the holder of the request's token, or whoever
a seeding call names) and stamped by one `Clock`, so an issue's event log and edit history say
who did what and when, as GitHub's do.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from asm.sandbox import github_git as git
from asm.sandbox.github_apps import GitHubApps
from asm.sandbox.github_checks import ChecksAndStatuses
from asm.sandbox.github_clock import Clock
from asm.sandbox.github_limits import RateLimits
from asm.sandbox.github_people import BOT_LOGIN, HUMAN_LOGIN, People, association, at_least
from asm.sandbox.github_records import (
    ApiError,
    BodyEdit,
    CheckRun,
    Comment,
    CommitStatus,
    Failure,
    Issue,
    IssueEvent,
    IssueView,
    Label,
    Pull,
    PullView,
    Repo,
    not_found,
    validation_failed,
)
from asm.sandbox.github_reviews import PullReviews

if TYPE_CHECKING:
    from asm.sandbox.github_hooks import Hooks

__all__ = ["GitHubState", "IssueView", "PullView", "BOT_LOGIN", "HUMAN_LOGIN"]

DEFAULT_COLOR = "ededed"  # GitHub's grey for labels created implicitly
# The keywords GitHub honours in a PR body to close an issue when merged into the default branch.
_CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?\s+#(\d+)\b", re.IGNORECASE)


@dataclass
class _RepoData:
    repo: Repo
    labels: dict[str, Label] = field(default_factory=dict)  # by lower-cased name: GitHub ignores case
    issues: dict[int, Issue] = field(default_factory=dict)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    check_suites: dict[tuple[str, str], int] = field(default_factory=dict)  # (sha, app slug) -> suite id
    statuses: list[CommitStatus] = field(default_factory=list)  # oldest first


class GitHubState(PullReviews, ChecksAndStatuses):
    """Thread-safe in-memory GitHub, with one bare git repository per repo under `root`.

    Reviews (`PullReviews`), check runs and statuses (`ChecksAndStatuses`) are kept by its
    base classes, under the same lock.

    Asking about a repo or issue that does not exist raises `ApiError` with status 404, the
    same error the HTTP layer turns into GitHub's "Not Found". Naming a user nobody added
    raises ValueError.
    """

    def __init__(
        self,
        root: Path,
        token: str,
        *,
        web_url: str = "https://github.sandbox.invalid",
        clock: Clock | None = None,
    ) -> None:
        self.root = Path(root)
        self.token = token
        # html_url links point here; nothing serves them, `.invalid` says so plainly.
        self.web_url = web_url.rstrip("/")
        self.clock = clock or Clock()
        self._lock = threading.RLock()
        self._repos: dict[str, _RepoData] = {}
        self._people = People()
        self._people.add(BOT_LOGIN, token)
        self._people.add(HUMAN_LOGIN)
        self._next_id = 1000
        self._requests: list[tuple[str, str]] = []
        self._failures: list[Failure] = []
        self._times: list[float] = []
        self._log_key = secrets.token_bytes(16)  # signs the log URLs of GitHub Actions jobs
        self.limits = RateLimits(self.clock)  # each person's rate-limit budgets, and what was counted or free
        self._touches = 0  # orders changes within one second, as GitHub's finer stamps do
        self.hooks: Hooks | None = None  # told of every change, once webhooks are attached (github_hooks)
        self.apps = GitHubApps(self)  # GitHub Apps, their installations and tokens (github_apps)

    # -- people and time (tests, demo) ---------------------------------------------------------

    def add_user(self, login: str, token: str | None = None) -> str:
        """Registers a person with no role anywhere; the token that acts as them over the API."""
        with self._lock:
            return self._people.add(login, token)

    def grant(self, full_name: str, login: str, role: str | None) -> None:
        """Gives `login` a role on the repo (admin, maintain, write, triage, read); None revokes."""
        with self._lock:
            self._data(full_name)
            self._people.grant(full_name, login, role)

    def role(self, full_name: str, login: str) -> str | None:
        """The role `login` holds on the repo, None without one."""
        with self._lock:
            self._data(full_name)  # 404 for a repository that does not exist
            return self._people.role(full_name, login)

    def token_for(self, login: str) -> str:
        """The token that authenticates as `login`."""
        with self._lock:
            return self._people.token(login)

    def user_for_token(self, token: str) -> str | None:
        """The login a token belongs to; None for a token nobody holds."""
        with self._lock:
            return self._people.by_token(token)

    def user(self, name: str) -> str | None:
        """The registered spelling of a login, or None when there is no such user."""
        with self._lock:
            return self._people.login(name)

    def association(self, full_name: str, login: str) -> str:
        """GitHub's `author_association` of `login` on the repo, from their role right now."""
        with self._lock:
            records = self._data(full_name).issues.values()
            contributed = any(r.pull and r.pull.merged and r.author.lower() == login.lower() for r in records)
            return association(self.role(full_name, login), contributed)

    def advance(self, seconds: float) -> None:
        """Moves the clock forward, so what happens next is stamped that much later."""
        self.clock.advance(seconds)

    # -- seeding and inspection (tests, demo) --------------------------------------------------

    def create_repo(self, full_name: str, files: dict[str, str], default_branch: str = "main",
                    with_git: bool = True) -> None:
        """A repo whose bare git repository holds `files` in one commit on `default_branch`.

        Without git (`with_git=False`) it has issues, labels and people but no content: quick to make by the
        thousand, for what never clones or pushes (the bench's scan of a thousand repositories).
        """
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository name must be owner/name, got {full_name!r}")
        with self._lock:
            if full_name.lower() in self._repos:
                raise ValueError(f"repository {full_name} already exists")
            path = self.root / owner / f"{name}.git"
            if with_git:
                git.init_bare(path, files, default_branch)
            repo = Repo(self._new_id(), owner, name, default_branch, path, self.clock.iso())
            self._repos[full_name.lower()] = _RepoData(repo)
            self._people.grant(full_name, HUMAN_LOGIN, "admin")
            self._people.grant(full_name, BOT_LOGIN, "write")

    def create_issue(
        self, full_name: str, title: str, body: str = "", labels: Sequence[str] = (), author: str = HUMAN_LOGIN
    ) -> int:
        """Files an issue as `author`; missing labels are created (GitHub would refuse)."""
        return self.new_issue(full_name, title, body, list(labels), author=author).number

    def close_issue(self, full_name: str, number: int, actor: str = HUMAN_LOGIN) -> None:
        self.edit_issue(full_name, number, state="closed", actor=actor)

    def issue(self, full_name: str, number: int) -> IssueView:
        record = self.issue_record(full_name, number)
        return IssueView(
            number=record.number,
            title=record.title,
            body=record.body,
            state=record.state,
            labels=record.labels,
            comments=tuple(comment.body for comment in record.comments),
            is_pull=record.pull is not None,
        )

    def events(self, full_name: str, number: int) -> list[IssueEvent]:
        """The issue's event log, oldest first."""
        return list(self.issue_record(full_name, number).events)

    def edits(self, full_name: str, number: int) -> list[BodyEdit]:
        """The issue body's edit history, oldest first; empty until the body is first edited."""
        return list(self.issue_record(full_name, number).edits)

    def pulls(self, full_name: str) -> list[PullView]:
        """Every pull request of the repo, oldest first."""
        return [
            PullView(
                number=r.number,
                title=r.title,
                body=r.body,
                head=r.pull.head,
                base=r.pull.base,
                state=r.state,
                merged=r.pull.merged,
                html_url=self.html_url(full_name, r),
            )
            for r in sorted(self.pull_records(full_name, "all"), key=lambda r: r.number)
            if r.pull is not None  # always: pull_records returns pull requests only
        ]

    def labels(self, full_name: str) -> list[str]:
        return [label.name for label in self.label_records(full_name)]

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        return git.rev_parse(self.repo(full_name).path, branch)

    def file_at(self, full_name: str, branch: str, path: str) -> str | None:
        return git.show_file(self.repo(full_name).path, branch, path)

    def html_url(self, full_name: str, record: Issue) -> str:
        kind = "pull" if record.pull else "issues"
        return f"{self.web_url}/{self.repo(full_name).full_name}/{kind}/{record.number}"

    # -- request log and injected failures -----------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path with query) of every request served so far, failed ones included."""
        with self._lock:
            return list(self._requests)

    @property
    def timed_requests(self) -> list[tuple[float, str, str]]:
        """(time.monotonic() on arrival, method, path) of every request so far."""
        with self._lock:
            return [(at, method, path) for at, (method, path) in zip(self._times, self._requests, strict=True)]

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._times.clear()

    def inject_delay(self, seconds: float, path_contains: str = "", method: str = "", count: int = 1) -> None:
        """The next `count` matching requests wait `seconds` before being served as usual."""
        with self._lock:
            self._failures.append(Failure(0, count, None, path_contains, "", method.upper(), seconds))

    def inject_failures(
        self,
        status: int,
        count: int = 1,
        retry_after: float | None = None,
        path_contains: str = "",
        message: str = "",
        method: str = "",
    ) -> None:
        """The next `count` requests whose path contains `path_contains` (and of `method`) answer `status`."""
        with self._lock:
            self._failures.append(Failure(status, count, retry_after, path_contains, message, method.upper()))

    def record_request(self, method: str, path: str) -> Failure | None:
        """Logs a request; returns the injected failure it must answer with, if one matches."""
        with self._lock:
            self._requests.append((method, path))
            self._times.append(time.monotonic())
            for index, failure in enumerate(self._failures):
                if failure.path_contains in path and failure.method in ("", method):
                    if failure.remaining > 1:
                        self._failures[index] = replace(failure, remaining=failure.remaining - 1)
                    else:
                        del self._failures[index]
                    return failure
            return None

    # -- what the API reads and writes ---------------------------------------------------------

    def repo(self, full_name: str) -> Repo:
        return self._data(full_name).repo

    def repos(self) -> list[Repo]:
        with self._lock:
            return [data.repo for data in self._repos.values()]

    def branch_heads(self, full_name: str) -> dict[str, str]:
        return git.branch_heads(self.repo(full_name).path)

    def label_records(self, full_name: str) -> list[Label]:
        with self._lock:
            return sorted(self._data(full_name).labels.values(), key=lambda label: label.name.lower())

    def label_record(self, full_name: str, name: str) -> Label:
        with self._lock:
            label = self._data(full_name).labels.get(name.lower())
            if label is None:
                raise not_found()
            return label

    def create_label(
        self, full_name: str, name: str, color: str = DEFAULT_COLOR, description: str | None = None
    ) -> Label:
        with self._lock:
            data = self._data(full_name)
            if not name:
                raise validation_failed("Label", "missing_field", "name")
            if name.lower() in data.labels:
                raise validation_failed("Label", "already_exists", "name")
            label = Label(self._new_id(), name, color.lstrip("#") or DEFAULT_COLOR, description)
            data.labels[name.lower()] = label
            return label

    def issue_record(self, full_name: str, number: int) -> Issue:
        with self._lock:
            record = self._data(full_name).issues.get(number)
            if record is None:
                raise not_found()
            return record

    def issue_records(self, full_name: str, state: str = "open", labels: Sequence[str] = (),
                      sort: str = "created") -> list[Issue]:
        """Issues and pull requests in `state` carrying every one of `labels`, newest (or, by `sort`, most
        recently updated, most commented) first."""
        wanted = {name.lower() for name in labels}
        with self._lock:
            records = list(self._data(full_name).issues.values())
        matching = [
            r for r in records if state in ("all", r.state) and wanted <= {name.lower() for name in r.labels}
        ]
        orders: dict[str, Callable[[Issue], tuple[object, ...]]] = {
            "created": lambda r: (r.number,),
            "updated": lambda r: (r.updated_at, r.touched),
            "comments": lambda r: (len(r.comments), r.number),
        }
        if sort not in orders:
            raise validation_failed("Issue", "invalid", "sort")
        return sorted(matching, key=orders[sort], reverse=True)

    def new_issue(self, full_name: str, title: str, body: str, labels: list[str], author: str) -> Issue:
        if not title:
            raise validation_failed("Issue", "missing_field", "title")
        with self._lock:
            author = self._people.known(author)
            data = self._data(full_name)
            now = self.clock.iso()
            record = Issue(self._new_id(), len(data.issues) + 1, title, body or "", author, now, now)
            # GitHub logs labels given at creation as `labeled` by the author, at that same moment.
            record = self._relabelled(full_name, record, labels, author, now)
            self._touches += 1
            record = replace(record, touched=self._touches)
            data.issues[record.number] = record
            if self.hooks is not None:
                self.hooks.issue_changed(full_name, None, record)
            return record

    def edit_issue(
        self,
        full_name: str,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        state: str | None = None,
        labels: list[str] | None = None,
        actor: str = HUMAN_LOGIN,
    ) -> Issue:
        """PATCH semantics: only the fields given change, each change logged as `actor`'s."""
        if state not in (None, "open", "closed"):
            raise validation_failed("Issue", "invalid", "state")
        with self._lock:
            actor = self._people.known(actor)
            record = self.issue_record(full_name, number)
            now = self.clock.iso()
            if title is not None and title != record.title:
                record = self._log(replace(record, title=title), "renamed", actor, now, rename=(record.title, title))
            if body is not None and body != record.body:
                record = replace(record, body=body, edits=self._edited(record, body, actor, now))
            if state is not None and state != record.state:
                record = self._set_state(record, state, actor, now)
            record = self._store(full_name, record)
            return self.set_labels(full_name, number, labels, actor=actor) if labels is not None else record

    def add_labels(self, full_name: str, number: int, names: list[str], actor: str = HUMAN_LOGIN) -> Issue:
        """Adds labels to an issue, creating the ones the repo lacks (as GitHub does)."""
        with self._lock:
            actor = self._people.known(actor)
            record = self.issue_record(full_name, number)
            present = {name.lower() for name in record.labels}
            fresh = [label for label in self._ensure_labels(full_name, names) if label.name.lower() not in present]
            now = self.clock.iso()
            for label in fresh:
                record = self._log(record, "labeled", actor, now, label=label)
            labels = record.labels + tuple(label.name for label in fresh)
            return self._store(full_name, replace(record, labels=labels))

    def set_labels(self, full_name: str, number: int, names: list[str], actor: str = HUMAN_LOGIN) -> Issue:
        """Replaces an issue's labels; only real changes are logged, removals first."""
        with self._lock:
            actor = self._people.known(actor)
            record = self.issue_record(full_name, number)
            return self._store(full_name, self._relabelled(full_name, record, names, actor, self.clock.iso()))

    def remove_label(self, full_name: str, number: int, name: str, actor: str = HUMAN_LOGIN) -> Issue:
        with self._lock:
            actor = self._people.known(actor)
            record = self.issue_record(full_name, number)
            kept = tuple(label for label in record.labels if label.lower() != name.lower())
            if kept == record.labels:
                raise ApiError(404, "Label does not exist")
            label = self.label_record(full_name, name)
            record = self._log(record, "unlabeled", actor, self.clock.iso(), label=label)
            return self._store(full_name, replace(record, labels=kept))

    def add_comment(self, full_name: str, number: int, body: str, author: str = BOT_LOGIN) -> Comment:
        if not body:
            raise validation_failed("IssueComment", "missing_field", "body")
        with self._lock:
            author = self._people.known(author)
            record = self.issue_record(full_name, number)
            comment = Comment(self._new_id(), body, author, self.clock.iso())
            self._store(full_name, replace(record, comments=record.comments + (comment,)))
            return comment

    def comment_record(self, full_name: str, comment_id: int) -> tuple[Issue, Comment]:
        """A comment on an issue or pull request of the repo, with the record it is on."""
        with self._lock:
            for record in self._data(full_name).issues.values():
                for comment in record.comments:
                    if comment.id == comment_id:
                        return record, comment
            raise not_found()

    def edit_comment(self, full_name: str, comment_id: int, body: str, actor: str = HUMAN_LOGIN) -> Comment:
        """Sets a comment's text as `actor`: its author, or, as on GitHub, anyone with write access to the repo;
        its edit history (GraphQL's `editor`) says who."""
        if not body:
            raise validation_failed("IssueComment", "missing_field", "body")
        with self._lock:
            actor = self._people.known(actor)
            record, comment = self.comment_record(full_name, comment_id)
            if actor.lower() != comment.author.lower() and not at_least(self._people.role(full_name, actor), "write"):
                raise ApiError(403, "Must have admin rights to Repository.")
            if body == comment.body:
                return comment
            edited = replace(comment, body=body, edits=self._edited(comment, body, actor, self.clock.iso()))
            comments = tuple(edited if c.id == comment_id else c for c in record.comments)
            self._store(full_name, replace(record, comments=comments))
            return edited

    def pull_records(self, full_name: str, state: str = "open", head: str = "", base: str = "") -> list[Issue]:
        """Pull requests, newest first, filtered by `head` ("owner:branch") and `base`."""
        repo = self.repo(full_name)
        if ":" not in head:
            # GitHub silently ignores a head filter without the owner (PyGithub issue #1566);
            # the sandbox does too, so code that forgets the owner fails here, not in production.
            head = ""
        return [
            r for r in self.issue_records(full_name, state)
            if r.pull
            and (not head or head.lower() == f"{repo.owner}:{r.pull.head}".lower())
            and (not base or base == r.pull.base)
        ]

    def synchronize(self, full_name: str) -> None:
        """Takes in pushes to open pull requests' branches as GitHub's `synchronize` does: the head moves and the
        pull request counts as updated. Pushes reach the bare repository without the API, so this looks when asked."""
        with self._lock:
            open_pulls = [r for r in self._data(full_name).issues.values() if r.pull and r.state == "open"]
            if not open_pulls:
                return
            heads = self.branch_heads(full_name)
            for record in open_pulls:
                assert record.pull is not None  # filtered above
                tip = heads.get(record.pull.head)
                if tip and tip != record.pull.head_sha:
                    self._store(full_name, replace(record, pull=replace(record.pull, head_sha=tip)))

    def pull_record(self, full_name: str, number: int) -> Issue:
        record = self.issue_record(full_name, number)
        if record.pull is None:
            raise not_found()
        return record

    def create_pull(
        self, full_name: str, title: str, body: str, head: str, base: str, draft: bool = False,
        author: str = BOT_LOGIN,
    ) -> Issue:
        """Opens a PR as `author` if GitHub would: both branches exist, head is ahead, no open twin."""
        with self._lock:
            repo = self.repo(full_name)
            owner, _, branch = head.rpartition(":")
            if owner and owner.lower() != repo.owner.lower():
                raise validation_failed("PullRequest", "invalid", "head")
            head_sha = git.rev_parse(repo.path, branch)
            if head_sha is None:
                raise validation_failed("PullRequest", "invalid", "head")
            if git.rev_parse(repo.path, base) is None:
                raise validation_failed("PullRequest", "invalid", "base")
            if self.pull_records(full_name, "open", head=f"{repo.owner}:{branch}", base=base):
                message = f"A pull request already exists for {repo.owner}:{branch}."
                raise validation_failed("PullRequest", "custom", message=message)
            if git.commits_ahead(repo.path, base, branch) == 0:
                raise validation_failed("PullRequest", "custom", message=f"No commits between {base} and {branch}")
            record = self.new_issue(full_name, title, body, [], author=author)
            return self._store(full_name, replace(record, pull=Pull(branch, base, head_sha, draft)))

    def merge_pull(
        self,
        full_name: str,
        number: int,
        method: str = "merge",
        title: str | None = None,
        message: str | None = None,
        sha: str | None = None,
        actor: str = BOT_LOGIN,
    ) -> str:
        """Really merges the PR into its base branch as `actor`; the merge commit's sha.

        Held under the lock so two merges into one base never race each other.
        """
        with self._lock:
            actor = self._people.known(actor)
            repo = self.repo(full_name)
            record = self.pull_record(full_name, number)
            pull = record.pull
            assert pull is not None  # pull_record returns pull requests only
            head_sha = git.rev_parse(repo.path, pull.head)
            if record.state != "open" or head_sha is None:
                raise ApiError(405, "Pull Request is not mergeable")
            if sha and sha != head_sha:
                raise ApiError(409, "Head branch was modified. Review and try the merge again.")
            if method not in ("merge", "squash"):
                raise ApiError(405, f"{method.capitalize()} merges are not allowed on this repository.")
            if method == "merge":
                subject = title or f"Merge pull request #{number} from {repo.owner}/{pull.head}"
                text = f"{subject}\n\n{message if message is not None else record.title}"
            else:
                text = f"{title or f'{record.title} (#{number})'}\n\n{message or ''}".strip()
            try:
                merge_sha = git.merge(repo.path, pull.base, pull.head, text, squash=method == "squash")
            except git.MergeConflict:
                raise ApiError(405, "Pull Request is not mergeable") from None
            except git.GitFailed:
                raise ApiError(409, "Base branch was modified. Review and try the merge again.") from None
            now = self.clock.iso()
            merged = replace(
                pull, head_sha=head_sha, merged=True, merged_at=now, merge_commit_sha=merge_sha, merged_by=actor
            )
            record = self._log(replace(record, pull=merged), "merged", actor, now, commit_id=merge_sha)
            self._store(full_name, self._set_state(record, "closed", actor, now))
            if pull.base == repo.default_branch:
                self._close_linked_issues(full_name, record.body, actor, merge_sha)
            return merge_sha

    # -- internals -----------------------------------------------------------------------------

    def _data(self, full_name: str) -> _RepoData:
        with self._lock:
            data = self._repos.get(full_name.lower())
            if data is None:
                raise not_found()
            return data

    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _store(self, full_name: str, record: Issue) -> Issue:
        with self._lock:
            self._touches += 1
            record = replace(record, updated_at=self.clock.iso(), touched=self._touches)
            issues = self._data(full_name).issues
            before = issues.get(record.number)
            issues[record.number] = record
            if self.hooks is not None:
                self.hooks.issue_changed(full_name, before, record)
        return record

    def _log(self, record: Issue, event: str, actor: str, at: str, *, label: Label | None = None,
             rename: tuple[str, str] | None = None, commit_id: str | None = None) -> Issue:
        """`record` with one more event in its log."""
        entry = IssueEvent(self._new_id(), event, actor, at, label=label, rename=rename, commit_id=commit_id)
        return replace(record, events=record.events + (entry,))

    def _edited(self, record: Issue | Comment, body: str, editor: str, at: str) -> tuple[BodyEdit, ...]:
        """The edit history once `editor` sets the body (of an issue or a comment) to `body`."""
        # GitHub starts a history on the first edit, with the original text as an entry edited
        # at creation by the author; that entry is what makes `includesCreatedEdit` true.
        history = record.edits or (BodyEdit(self._new_id(), record.created_at, record.author, record.body),)
        return history + (BodyEdit(self._new_id(), at, editor, body),)

    def _set_state(self, record: Issue, state: str, actor: str, at: str, commit_id: str | None = None) -> Issue:
        closed = state == "closed"
        record = replace(record, state=state, closed_at=at if closed else None, closed_by=actor if closed else None)
        return self._log(record, "closed" if closed else "reopened", actor, at, commit_id=commit_id)

    def _relabelled(self, full_name: str, record: Issue, names: Sequence[str], actor: str, at: str) -> Issue:
        """`record` carrying exactly the labels `names`, each change logged as `actor`'s."""
        wanted = self._ensure_labels(full_name, names)
        kept = {label.name.lower() for label in wanted}
        present = {name.lower() for name in record.labels}
        for name in record.labels:
            if name.lower() not in kept:
                record = self._log(record, "unlabeled", actor, at, label=self.label_record(full_name, name))
        for label in wanted:
            if label.name.lower() not in present:
                record = self._log(record, "labeled", actor, at, label=label)
        return replace(record, labels=tuple(label.name for label in wanted))

    def _ensure_labels(self, full_name: str, names: Sequence[str]) -> list[Label]:
        """The repo's labels by these names, created where missing, each once, in order."""
        with self._lock:
            found: dict[str, Label] = {}
            for name in names:
                label = self._data(full_name).labels.get(name.lower()) or self.create_label(full_name, name)
                found.setdefault(label.name.lower(), label)
            return list(found.values())

    def _close_linked_issues(self, full_name: str, body: str, actor: str, merge_sha: str) -> None:
        for number in {int(n) for n in _CLOSING.findall(body or "")}:
            target = self._data(full_name).issues.get(number)
            if target and target.pull is None and target.state == "open":
                self._store(full_name, self._set_state(target, "closed", actor, self.clock.iso(), merge_sha))
