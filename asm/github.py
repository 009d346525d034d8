"""The GitHub gateway over PyGithub: what asm reads and writes on GitHub, and nothing else."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import github
import requests
from github.GithubException import GithubException, UnknownObjectException

from asm.conversation.threads import CheckReport, Glance, PullThread, Remark, read_overview, read_pull
from asm.errors import BadInput, GitHubError
from asm.github_auth import Access
from asm.guard.trust import LEVELS, IssueHistory, Labelled, Version
from asm.keys import IssueRef
from asm.ratelimit import RateLimit, from_headers

log = logging.getLogger(__name__)

IN_PROGRESS = "in-progress"
IN_REVIEW = "in-review"
NEEDS_CLARIFICATION = "needs-clarification"
AI_FAILED = "ai-failed"
COMMENT_PREFIX = "🤖 **asm**:"  # how every comment of asm's begins (the scan recognises its runs by it)
# What is read of failed checks: a run's conclusions that say the code is at fault, annotations per run,
# and the end of a job's log (where the error is), read from at most LOG_MAX_BYTES.
FAILED_RUN_CONCLUSIONS = ("failure", "timed_out", "startup_failure")
ANNOTATIONS = 20
LOG_TAIL_BYTES = 16_000
LOG_MAX_BYTES = 50 << 20
LOG_TIMEOUT_SECONDS = 30
# A repository's clone URL and default branch hardly ever change: read them once in a while.
REPO_INFO_SECONDS = 600
# The labels asm creates when a repository lacks them: name -> (colour, description).
LABEL_STYLE = {
    IN_PROGRESS: ("fbca04", "asm: a worker is on it"),
    IN_REVIEW: ("0e8a16", "asm: pull request open for review"),
    NEEDS_CLARIFICATION: ("d876e3", "asm: questions for the author in the comments"),
    AI_FAILED: ("b60205", "asm: gave up or hit a spend cap; see the comment"),
}


@dataclass(frozen=True)
class RepoInfo:
    full_name: str
    clone_url: str
    default_branch: str


@dataclass(frozen=True)
class IssueInfo:
    ref: IssueRef
    title: str
    body: str
    state: str
    labels: frozenset[str]
    is_pull: bool
    html_url: str


# Who changed an issue's title, body and labels, and when: what the permission gate reads.
HISTORY_QUERY = """
query IssueHistory($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) {
    issue(number: $number) {
      title
      body
      createdAt
      includesCreatedEdit
      author { login __typename }
      userContentEdits(first: 100) {
        totalCount
        nodes { editedAt editor { login __typename } diff deletedAt }
      }
      timelineItems(last: 100, itemTypes: [LABELED_EVENT, RENAMED_TITLE_EVENT]) {
        totalCount
        nodes {
          __typename
          ... on LabeledEvent { createdAt actor { login __typename } label { name } }
          ... on RenamedTitleEvent { createdAt actor { login __typename } previousTitle currentTitle }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Conditional:
    """A conditional GET's answer: unchanged (a 304, free), or changed with its body; the ETag to send next."""

    changed: bool
    etag: str
    body: Any


@dataclass(frozen=True)
class PullInfo:
    number: int
    html_url: str
    head: str
    base: str
    state: str
    merged: bool = False


def _issue_info(repo: str, issue: github.Issue.Issue) -> IssueInfo:
    # Only attributes the list payload carries: reading one it lacks (`pull_request` on a plain
    # issue, say) makes PyGithub fetch that issue again, once per issue of every scan.
    html_url = issue.html_url or ""
    return IssueInfo(
        ref=IssueRef(repo, issue.number),
        title=issue.title or "",
        body=issue.body or "",
        state=issue.state or "open",
        labels=frozenset(label.name for label in issue.labels),
        is_pull="/pull/" in html_url,
        html_url=html_url,
    )


def _login(actor: dict[str, Any] | None) -> str | None:
    return actor.get("login") if actor else None


def _history(issue: dict[str, Any]) -> IssueHistory:
    """GraphQL's answer as versions of the title and body and label applications, oldest first."""
    created, author = issue["createdAt"], _login(issue.get("author"))
    events = sorted((issue.get("timelineItems") or {}).get("nodes") or [], key=lambda e: e.get("createdAt", ""))
    renames = [e for e in events if e.get("__typename") == "RenamedTitleEvent"]
    first_title = renames[0]["previousTitle"] if renames else issue["title"]
    titles = (Version(first_title, created, author, original=True),
              *(Version(e["currentTitle"], e["createdAt"], _login(e.get("actor"))) for e in renames))
    edits = sorted((issue.get("userContentEdits") or {}).get("nodes") or [], key=lambda e: e["editedAt"])
    if not edits:
        bodies: tuple[Version, ...] = (Version(issue.get("body") or "", created, author, original=True),)
    else:
        # With the created edit listed, the oldest entry is the text the issue was opened with.
        opened = bool(issue.get("includesCreatedEdit"))
        bodies = tuple(Version(None if e.get("deletedAt") else (e.get("diff") or ""), e["editedAt"],
                               _login(e.get("editor")), original=opened and index == 0)
                       for index, e in enumerate(edits))
    labels = tuple(Labelled(e["label"]["name"], e["createdAt"], _login(e.get("actor")))
                   for e in events if e.get("__typename") == "LabeledEvent" and e.get("label"))
    return IssueHistory(titles, bodies, labels)


def _rest_logins(value: Any) -> Any:
    """A GraphQL answer with each bot named as REST names it. GraphQL gives a GitHub App's bot as `<app-slug>`
    (its `__typename` Bot), REST and `whoami` as `<app-slug>[bot]`: asm's queries ask each actor's type, so that
    asm, installed as an App, knows its own comments and pull requests."""
    if isinstance(value, list):
        return [_rest_logins(item) for item in value]
    if not isinstance(value, dict):
        return value
    named = {key: _rest_logins(item) for key, item in value.items()}
    login = named.get("login")
    if named.get("__typename") == "Bot" and isinstance(login, str) and not login.endswith("[bot]"):
        named["login"] = login + "[bot]"
    return named


def _pull_info(pull: github.PullRequest.PullRequest) -> PullInfo:
    # `merged_at`, not `merged`: the list payload has only the former (see _issue_info).
    return PullInfo(pull.number, pull.html_url or "", pull.head.ref, pull.base.ref, pull.state or "open",
                    pull.merged_at is not None)


class GitHub:
    """Reads issues and repositories, moves labels, comments, opens and merges pull requests."""

    def __init__(self, access: Access, ready_label: str) -> None:
        # Every request about a repository goes through access.client(repo) or access.lazy(repo): as a GitHub
        # App, each repository's requests need the token of the installation that holds it.
        self.access = access
        self.ready_label = ready_label
        self._labelled_repos: set[str] = set()
        self._repos: dict[str, tuple[float, RepoInfo]] = {}
        self._budgets: dict[tuple[int, str], RateLimit] = {}  # (client, resource) -> as its last reply told

    def _repo(self, name: str) -> github.Repository.Repository:
        """The repository, not fetched: asm only ever reads and writes below it (writes go through lazy objects:
        commenting on an issue needs no GET of the issue first)."""
        return self.access.lazy(name).get_repo(name)

    def repositories(self, narrowed: tuple[str, ...]) -> tuple[str, ...]:
        """The repositories asm works: ASM_REPOS (`narrowed`); as a GitHub App, its installations' repositories,
        only those ASM_REPOS names when it names any."""
        return self.access.repositories(narrowed)

    def refuses(self, repo: str, narrowed: tuple[str, ...]) -> str:
        """Why asm does not work `repo` (the words to follow its name), or "" when it does: a task or a delivery
        naming any other repository is refused."""
        if (narrowed or not self.access.app) and repo.lower() not in {known.lower() for known in narrowed}:
            return "is not in ASM_REPOS"
        return "" if self.access.holds(repo) else "is not one the GitHub App is installed on"

    def _issue(self, ref: IssueRef) -> github.Issue.Issue:
        return self._repo(ref.repo).get_issue(ref.number)

    def repo(self, name: str) -> RepoInfo:
        """The repository's clone URL and default branch; BadInput when it does not exist."""
        cached = self._repos.get(name)
        if cached is not None and time.monotonic() - cached[0] < REPO_INFO_SECONDS:
            return cached[1]
        try:
            raw = self.access.client(name).get_repo(name).raw_data
        except UnknownObjectException:
            raise BadInput(f"repository {name} was not found (or the token cannot see it)") from None
        except GithubException as error:
            raise GitHubError(f"GitHub refused to read {name}: {error.status}") from None
        info = RepoInfo(raw["full_name"], raw["clone_url"], raw["default_branch"])
        self._repos[name] = (time.monotonic(), info)
        return info

    def issues_labelled(self, repo: str, label: str) -> list[IssueInfo]:
        """Every open issue (pull requests excluded) with `label`, across all pages."""
        try:
            found = [_issue_info(repo, issue) for issue in self._repo(repo).get_issues(state="open", labels=[label])]
        except UnknownObjectException:
            raise BadInput(f"repository {repo} was not found (or the token cannot see it)") from None
        except GithubException as error:
            raise GitHubError(f"GitHub refused to list issues of {repo}: {error.status}") from None
        # PyGithub keeps the numbers of the last reply's rate-limit headers: a page of this list's, REST's budget.
        requester = self.access.lazy(repo).requester
        remaining, limit = requester.rate_limiting
        if limit > 0:
            self._budgets[(id(self.access.client(repo)), "core")] = RateLimit(
                "core", limit, remaining, limit - remaining, float(requester.rate_limiting_resettime), time.time())
        return [issue for issue in found if not issue.is_pull]

    def issue(self, ref: IssueRef) -> IssueInfo:
        """One issue as it is now; BadInput when it does not exist."""
        try:
            return _issue_info(ref.repo, self._repo(ref.repo).get_issue(ref.number))
        except UnknownObjectException:
            raise BadInput(f"issue {ref} was not found") from None
        except GithubException as error:
            raise GitHubError(f"GitHub refused to read {ref}: {error.status}") from None

    def ensure_labels(self, repo: str) -> None:
        """Create asm's labels on the repository when missing (once per process and repository)."""
        if repo in self._labelled_repos:
            return
        target = self._repo(repo)
        existing = {label.name for label in self._repo(repo).get_labels()}
        wanted = dict(LABEL_STYLE, **{self.ready_label: ("1d76db", "asm: ready for an AI worker")})
        for name, (colour, description) in wanted.items():
            if name not in existing:
                try:
                    target.create_label(name, colour, description)
                except GithubException as error:
                    if error.status != 422:  # 422: someone created it meanwhile
                        raise GitHubError(f"could not create label {name} on {repo}: {error.status}") from None
        self._labelled_repos.add(repo)

    def move_labels(self, ref: IssueRef, add: str | None, remove: Iterable[str], current: frozenset[str]) -> None:
        """Add one label and remove others, touching only what changes."""
        issue = self._issue(ref)
        try:
            if add and add not in current:
                issue.add_to_labels(add)
            for name in remove:
                if name in current and name != add:
                    try:
                        issue.remove_from_labels(name)
                    except GithubException as error:
                        if error.status != 404:  # 404: already gone, the goal is reached
                            raise
        except GithubException as error:
            raise GitHubError(f"could not change labels of {ref}: {error.status}") from None

    def comment(self, ref: IssueRef, body: str) -> None:
        try:
            self._issue(ref).create_comment(body)
        except GithubException as error:
            raise GitHubError(f"could not comment on {ref}: {error.status}") from None

    def comments(self, ref: IssueRef) -> list[Remark]:
        """Every comment on the issue (or pull request), oldest first, with its author.

        REST does not say who edited a comment, only when it changed last: one changed since it was written counts
        as edited by someone unknown (asm never edits its comments).
        """
        try:
            return [Remark(f"comment:{comment.id}", comment.user.login if comment.user else None, comment.body or "",
                           comment.created_at.strftime("%Y-%m-%dT%H:%M:%SZ") if comment.created_at else "",
                           edited=comment.updated_at != comment.created_at)
                    for comment in self._issue(ref).get_comments()]
        except GithubException as error:
            raise GitHubError(f"GitHub refused the comments of {ref}: {error.status}") from None

    def whoami(self) -> str:
        """The login asm acts as, asked once per process: its token's user, or the GitHub App's bot
        (`<app-slug>[bot]`), whose comments, pull requests and commits asm's are."""
        try:
            return self.access.login()
        except GithubException as error:
            raise GitHubError(f"GitHub refused to say who the token belongs to: {error.status}") from None

    def permission(self, repo: str, login: str) -> str:
        """`login`'s role on the repository (admin, maintain, write, triage, read), or `none`."""
        try:
            _, data = self.access.client(repo).requester.requestJsonAndCheck(
                "GET", f"/repos/{repo}/collaborators/{quote(login, safe='')}/permission")
        except UnknownObjectException:
            return "none"
        except GithubException as error:
            raise GitHubError(f"GitHub refused to tell {login}'s permission on {repo}: {error.status}") from None
        role = data.get("role_name")
        # A custom role is named freely; its base permission (admin, write, read) says what it may do.
        return role if role in LEVELS else str(data.get("permission") or "none")

    def history(self, ref: IssueRef) -> IssueHistory:
        """Who set the issue's title, body and labels, and when (GraphQL: REST has no edit history)."""
        owner, name = ref.repo.split("/", 1)
        variables = {"owner": owner, "name": name, "number": ref.number}
        data = self.graphql(HISTORY_QUERY, variables, f"the history of {ref}", ref.repo)
        issue = (data.get("repository") or {}).get("issue")
        if issue is None:
            raise BadInput(f"issue {ref} was not found")
        return _history(issue)

    def graphql(self, query: str, variables: Mapping[str, Any], what: str, repo: str | None = None
                ) -> Mapping[str, Any]:
        """The `data` of one GraphQL request about `repo` (unless named, the one the variables `owner` and `name`
        name), with that repository's token; BadInput when GitHub says what was asked for does not exist."""
        repo = repo or f"{variables['owner']}/{variables['name']}"
        client = self.access.client(repo)
        try:
            headers, answer = client.requester.graphql_query(query, dict(variables))
        except UnknownObjectException:
            raise BadInput(f"{what} was not found") from None
        except GithubException as error:
            raise GitHubError(f"GitHub refused {what}: {error.status}") from None
        self._saw(client, headers)
        data: Mapping[str, Any] = _rest_logins(answer.get("data") or {})
        return data

    def conditional_get(self, repo: str, path: str, params: Mapping[str, str | int], etag: str) -> Conditional:
        """One GET about `repo` sent with `If-None-Match: etag` (when given): a 304, which GitHub does not count
        against the rate limit, says the answer has not changed since that ETag was given out."""
        client = self.access.client(repo)
        try:
            status, headers, text = client.requester.requestJson(
                "GET", path, dict(params), {"If-None-Match": etag} if etag else {})
        except (GithubException, requests.RequestException) as error:
            raise GitHubError(f"GitHub did not answer {path}: {error}") from None
        self._saw(client, headers)
        if status == 304:
            return Conditional(False, headers.get("etag") or etag, None)
        if status == 404:
            raise BadInput(f"repository {repo} was not found (or the token cannot see it)")
        if status >= 400:
            raise GitHubError(f"GitHub refused {path}: {status}")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            raise GitHubError(f"GitHub answered {path} with something other than JSON") from None
        return Conditional(True, headers.get("etag") or "", body)

    def _saw(self, client: github.Github, headers: Mapping[str, str]) -> None:
        budget = from_headers(headers)
        if budget is not None:
            self._budgets[(id(client), budget.resource)] = budget

    def rate_limits(self, repo: str | None = None) -> dict[str, RateLimit]:
        """The budgets as the last replies told them, by resource: those of `repo`'s token (a GitHub App has one
        per installation), or, without `repo`, the lowest of each seen."""
        wanted = None if repo is None else id(self.access.client(repo))
        found: dict[str, RateLimit] = {}
        now = time.time()
        for (client, resource), budget in self._budgets.items():
            if wanted not in (None, client) or not budget.current(now):
                continue
            if resource not in found or budget.remaining < found[resource].remaining:
                found[resource] = budget
        return found

    def overview(self, repo: str, waiting_label: str) -> list[Glance]:
        """The repository's open pull requests and its issues labelled `waiting_label`, at a glance: one request
        per page of each."""
        what = f"the pull requests of {repo}"
        return read_overview(lambda query, variables: self.graphql(query, variables, what, repo), repo, waiting_label)

    def pull_thread(self, repo: str, number: int) -> PullThread | None:
        """One pull request with what was said on it and its checks, as the scan reads them."""
        return read_pull(lambda query, variables: self.graphql(query, variables, f"pull request {repo}#{number}", repo),
                         repo, number, self.whoami(), lambda: self.comments(IssueRef(repo, number)))

    def check_reports(self, repo: str, sha: str) -> list[CheckReport]:
        """What the failed checks on `sha` say: each check run's output and annotations, the tail of a GitHub
        Actions job's log, and each failed commit status."""
        reports = []
        try:
            commit = self._repo(repo).get_commit(sha)
            for run in commit.get_check_runs():
                if run.status != "completed" or run.conclusion not in FAILED_RUN_CONCLUSIONS:
                    continue
                output = run.output
                notes = [f"{note.path}:{note.start_line}: {note.annotation_level}: {note.message}"
                         for note in list(run.get_annotations())[:ANNOTATIONS]]
                app = run.app.slug if run.app else None
                reports.append(CheckReport(run.name, run.conclusion, output.title or "", output.summary or "",
                                           output.text or "", tuple(notes), run.details_url or "",
                                           self._job_log_tail(repo, run.id) if app == "github-actions" else ""))
            for status in commit.get_combined_status().statuses:
                if status.state in ("failure", "error"):
                    reports.append(CheckReport(status.context, status.state, status.description or "", "", "", (),
                                               status.target_url or "", ""))
        except GithubException as error:
            raise GitHubError(f"GitHub refused the checks of {repo}@{sha[:12]}: {error.status}") from None
        return reports

    def _job_log_tail(self, repo: str, job_id: int) -> str:
        """The last LOG_TAIL_BYTES of a GitHub Actions job's log, or "" when it cannot be read.

        GitHub answers with a redirect to a short-lived URL of its storage, which needs no token: the
        token is never sent there (nor anywhere but the API).
        """
        try:
            headers, _ = self.access.client(repo).requester.requestBlobAndCheck(
                "GET", f"/repos/{repo}/actions/jobs/{job_id}/logs")
            location = headers.get("location")
            if not location:
                return ""
            tail = b""
            with requests.get(location, stream=True, timeout=LOG_TIMEOUT_SECONDS, allow_redirects=True) as reply:
                if reply.status_code != 200:
                    return ""
                read = 0
                for chunk in reply.iter_content(64 * 1024):
                    tail = (tail + chunk)[-LOG_TAIL_BYTES:]
                    read += len(chunk)
                    if read > LOG_MAX_BYTES:
                        break  # keep what a person would scroll to: a log this long is cut at this point
            return tail.decode(errors="replace")
        except (GithubException, requests.RequestException, ValueError) as error:
            log.warning("could not read the log of job %s of %s: %s", job_id, repo, error)
            return ""

    def find_pull(self, ref: IssueRef) -> PullInfo | None:
        """The open pull request from the issue's branch, if one exists."""
        pull = self._open_pull_of(ref)
        return _pull_info(pull) if pull is not None else None

    def _open_pull_of(self, ref: IssueRef) -> github.PullRequest.PullRequest | None:
        return next(iter(self._repo(ref.repo).get_pulls(state="open", head=f"{ref.owner}:{ref.branch}")), None)

    def open_pull(self, ref: IssueRef, title: str, body: str, base: str) -> PullInfo:
        """Open the pull request; if one already exists for the branch (a retried run, or the issue labelled ready
        again), that one, now describing the change the branch holds, when it is asm's."""
        try:
            return _pull_info(self._repo(ref.repo).create_pull(title=title, body=body, head=ref.branch, base=base))
        except GithubException as error:
            if error.status == 422:
                existing = self._open_pull_of(ref)
                if existing is not None:
                    # Its body is asm's memory of what it pushed: it must name the commit the branch now holds.
                    if existing.user.login == self.whoami():
                        try:
                            existing.edit(title=title, body=body)
                        except GithubException as refused:
                            log.warning("could not describe the new change on pull request #%d of %s: %s",
                                        existing.number, ref.repo, refused.status)
                    return _pull_info(existing)
            raise GitHubError(f"could not open the pull request for {ref}: {error.status} {error.data}") from None

    def merge(self, ref: IssueRef, number: int) -> bool:
        """Merge the pull request; False when GitHub says it cannot be merged."""
        try:
            return bool(self._repo(ref.repo).get_pull(number).merge(merge_method="merge").merged)
        except GithubException as error:
            log.warning("could not merge pull request #%d of %s: %s", number, ref.repo, error.status)
            return False
