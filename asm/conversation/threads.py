"""Conversations as asm reads them: asm's pull requests with their remarks and checks, and issues awaiting answers.

The scan glances at a repository with one GraphQL request a page: its open pull requests (head,
last update, the state of each check) and its issues waiting for answers (last update). Only what
changed since it last looked is read whole: a pull request with everything said on it (reviews,
line comments, comments) and the checks on its head, by a second query that the run working it
uses too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from asm.conversation.markers import PullMemory

BRANCH = re.compile(r"ai-feature/issue-([1-9][0-9]*)")

_PULL_FIELDS = """
fragment PullConversation on PullRequest {
  number headRefName headRefOid baseRefName state author { login __typename }
  body lastEditedAt editor { login __typename }
  comments(last: 100) { totalCount nodes { databaseId author { login __typename } body createdAt
                                           lastEditedAt editor { login __typename } } }
  reviews(last: 50) { nodes { databaseId author { login __typename } state body submittedAt commit { oid }
    comments(first: 50) { nodes { databaseId author { login __typename } body path line originalLine diffHunk createdAt
                                  replyTo { databaseId } } } } }
  commits(last: 1) { nodes { commit { oid statusCheckRollup { state contexts(first: 100) { nodes {
    __typename
    ... on CheckRun { databaseId name status conclusion title summary detailsUrl checkSuite { app { slug } } }
    ... on StatusContext { context state description targetUrl }
  } } } } } }
}
"""

OVERVIEW_QUERY = """
query Overview($owner: String!, $name: String!, $pulls: String, $issues: String, $waiting: [String!],
               $withPulls: Boolean!, $withIssues: Boolean!) {
  repository(owner: $owner, name: $name) {
    pullRequests(states: [OPEN], first: 100, after: $pulls, orderBy: {field: CREATED_AT, direction: ASC})
        @include(if: $withPulls) {
      pageInfo { hasNextPage endCursor }
      nodes { number headRefName headRefOid updatedAt author { login __typename }
              comments(last: 1) { totalCount } reviews(last: 1) { totalCount }
              commits(last: 1) { nodes { commit { oid statusCheckRollup { state contexts(first: 100) { nodes {
                __typename ... on CheckRun { status conclusion } ... on StatusContext { state } } } } } } } }
    }
    issues(states: [OPEN], labels: $waiting, first: 100, after: $issues, orderBy: {field: CREATED_AT, direction: ASC})
        @include(if: $withIssues) {
      pageInfo { hasNextPage endCursor }
      nodes { number updatedAt comments(last: 1) { totalCount } }
    }
  }
}
"""

PULL_QUERY = """
query Pull($owner: String!, $name: String!, $number: Int!) {
  repository(owner: $owner, name: $name) { pullRequest(number: $number) { ...PullConversation } }
}
""" + _PULL_FIELDS

# Check conclusions that say the code is at fault. A cancelled run, one waiting for a person
# (action_required), skipped or stale ones are not failures a change of code would fix.
FAILED_CONCLUSIONS = {"FAILURE", "TIMED_OUT", "STARTUP_FAILURE"}
FAILED_STATES = {"FAILURE", "ERROR"}
PENDING_STATES = {"PENDING", "EXPECTED"}


@dataclass(frozen=True)
class Remark:
    """One thing someone said: a comment, a review, or a comment on a line of the diff."""

    key: str  # "comment:<id>", "review:<id>" or "line:<id>": what asm's memory records as answered
    author: str | None  # None: a deleted account
    body: str
    at: str
    path: str | None = None  # a line comment's file
    line: int | None = None  # and line (None: a comment on the whole file)
    review_state: str | None = None  # a review's (or a line comment's review's) state: CHANGES_REQUESTED...
    outdated: bool = False  # `line` is a line of an earlier version of the diff, which the head has changed since
    edited: bool = False  # its text was changed after it was written
    editor: str | None = None  # who changed it last, when GitHub says (REST does not)

    def is_own(self, me: str) -> bool:
        """Whether its words are `me`'s alone: written by `me`, and changed by nobody else since."""
        return own_words(me, self.author, self.edited, self.editor)


def own_words(me: str, author: str | None, edited: bool, editor: str | None) -> bool:
    """Whether a text (a comment, a pull request's body) is `me`'s alone: only such a text holds asm's memory.

    Anyone with write access may edit anyone's comment or pull request body: one of asm's, edited by someone
    else (or by someone GitHub does not name), could say anything about what asm did.
    """
    return author == me and (not edited or editor == me)


@dataclass(frozen=True)
class Check:
    """One check on a commit: a check run or a commit status, with what it says went wrong."""

    name: str
    state: str  # "pending", "failure" or "success"
    conclusion: str  # GitHub's word for it (FAILURE, TIMED_OUT, ERROR...)
    summary: str
    url: str
    check_run_id: int | None = None  # a check run's id (a GitHub Actions job's id: its log can be read)
    app: str | None = None  # the app that made the check run ("github-actions")


@dataclass(frozen=True)
class CheckReport:
    """What one failed check says, read for the run that fixes it: its output, annotations and log's end."""

    name: str
    conclusion: str
    title: str
    summary: str
    text: str
    annotations: tuple[str, ...]
    url: str
    log_tail: str


@dataclass(frozen=True)
class PullThread:
    """An open pull request of asm's as one query saw it."""

    repo: str
    number: int
    head_ref: str
    head_sha: str
    base_ref: str
    state: str
    author: str | None
    remarks: tuple[Remark, ...]  # everything said on it by anyone, asm included, oldest first
    checks: tuple[Check, ...]  # on the head commit
    memory: PullMemory  # what asm's own words on it say it has done

    @property
    def issue_number(self) -> int | None:
        """The issue the pull request works, from its branch (`ai-feature/issue-N`)."""
        match = BRANCH.fullmatch(self.head_ref)
        return int(match.group(1)) if match else None

    def is_asms(self, me: str) -> bool:
        return self.state == "OPEN" and self.author == me and self.issue_number is not None


@dataclass(frozen=True)
class Glance:
    """An open pull request, or an issue waiting for answers, at a glance: enough to tell whether it changed."""

    repo: str
    number: int
    is_pull: bool
    author: str | None = None
    head_ref: str = ""
    signature: str = ""  # changes whenever anything asm reads of it changes: remarks, its head, its checks
    head_sha: str = ""  # a pull request's head commit, whose checks the scan watches between reads

    def is_asms(self, me: str) -> bool:
        return self.is_pull and self.author == me and BRANCH.fullmatch(self.head_ref) is not None


Query = Callable[[str, Mapping[str, Any]], Mapping[str, Any]]  # GraphQL: query and variables in, `data` out


def read_overview(query: Query, repo: str, waiting_label: str) -> list[Glance]:
    """Every open pull request and every open issue labelled `waiting_label`, a page of each per request.

    A comment, a review or a label bumps `updatedAt` (and the counts); a check finishing does not, so the
    state of each check counts too.
    """
    owner, name = repo.split("/", 1)
    found: list[Glance] = []
    cursors: dict[str, str | None] = {"pulls": None, "issues": None}
    more = {"pulls": True, "issues": True}
    while more["pulls"] or more["issues"]:
        data = query(OVERVIEW_QUERY, {"owner": owner, "name": name, "waiting": [waiting_label],
                                      "withPulls": more["pulls"], "withIssues": more["issues"], **cursors})
        repository = data.get("repository") or {}
        for kind, field in (("pulls", "pullRequests"), ("issues", "issues")):
            if not more[kind]:
                continue
            connection = repository.get(field) or {}
            for node in connection.get("nodes") or []:
                if node:
                    found.append(_glance(repo, node, kind == "pulls"))
            page = connection.get("pageInfo") or {}
            more[kind] = bool(page.get("hasNextPage")) and bool(page.get("endCursor"))
            cursors[kind] = page.get("endCursor")
    return found


def _glance(repo: str, node: Mapping[str, Any], is_pull: bool) -> Glance:
    # `updatedAt` counts seconds: two comments within one second are told apart by how many there are.
    counts = [(node.get(field) or {}).get("totalCount") for field in ("comments", "reviews")]
    if not is_pull:
        return Glance(repo, int(node["number"]), False, signature=f"{node.get('updatedAt')}|{counts[0]}")
    rollup = _head_commit(node).get("statusCheckRollup") or {}
    contexts = sorted(json.dumps(context, sort_keys=True)
                      for context in (rollup.get("contexts") or {}).get("nodes") or [] if context)
    signature = hashlib.sha256(json.dumps([node.get("updatedAt"), counts, node.get("headRefOid"), rollup.get("state"),
                                           contexts]).encode()).hexdigest()[:24]
    return Glance(repo, int(node["number"]), True, _login(node.get("author")), node.get("headRefName") or "",
                  signature, node.get("headRefOid") or "")


def read_pull(query: Query, repo: str, number: int, me: str,
              every_comment: Callable[[], list[Remark]] = list) -> PullThread | None:
    """One pull request with what was said on it and its checks; None when it does not exist.

    asm's memory is in its replies: when the pull request has more comments than one request returns,
    they are all read (`every_comment`), so no reply of asm's drops out of sight.
    """
    owner, name = repo.split("/", 1)
    data = query(PULL_QUERY, {"owner": owner, "name": name, "number": number})
    node = (data.get("repository") or {}).get("pullRequest")
    if not node:
        return None
    comments = node.get("comments") or {}
    complete = int(comments.get("totalCount") or 0) <= len(comments.get("nodes") or [])
    return pull_thread(repo, node, me, None if complete else every_comment())


def pull_thread(repo: str, node: Mapping[str, Any], me: str, comments: list[Remark] | None = None) -> PullThread:
    """GraphQL's pull request as a PullThread (its comments as given, when given); asm's memory read from its
    own words only."""
    said = list(_comments(node)) if comments is None else comments
    remarks = sorted((*said, *_reviews(node)), key=lambda remark: remark.at)
    mine = [remark.body for remark in remarks if remark.key.startswith("comment:") and remark.is_own(me)]
    author = _login(node.get("author"))
    body_is_mine = own_words(me, author, *_edit(node))  # asm edits its own body when a run is repeated
    memory = PullMemory.read(([node.get("body") or ""] if body_is_mine else []) + mine)
    commit = _head_commit(node)
    return PullThread(repo, int(node["number"]), node.get("headRefName") or "",
                      node.get("headRefOid") or "", node.get("baseRefName") or "",
                      node.get("state") or "OPEN", author, tuple(remarks), tuple(_checks(commit)), memory)


def _head_commit(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pull request's head commit, with its checks; {} when the last commit listed is not the head.

    GitHub lists a pull request's commits by date: a commit pushed last with an older date is not last.
    Only the head's checks count, so another commit's are never taken for them.
    """
    commits = (node.get("commits") or {}).get("nodes") or []
    commit = ((commits[-1] or {}).get("commit") or {}) if commits else {}
    return commit if commit.get("oid") and commit.get("oid") == node.get("headRefOid") else {}


def _login(actor: Mapping[str, Any] | None) -> str | None:
    return actor.get("login") if actor else None


def _edit(node: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Whether a comment's (or a body's) text was edited, and by whom (None: GitHub does not say)."""
    editor = _login(node.get("editor"))
    return bool(node.get("lastEditedAt")) or editor is not None, editor


def _comments(node: Mapping[str, Any]) -> Iterator[Remark]:
    for comment in (node.get("comments") or {}).get("nodes") or []:
        if comment:
            edited, editor = _edit(comment)
            yield Remark(f"comment:{comment['databaseId']}", _login(comment.get("author")), comment.get("body") or "",
                         comment.get("createdAt") or "", edited=edited, editor=editor)


def _reviews(node: Mapping[str, Any]) -> Iterator[Remark]:
    for review in (node.get("reviews") or {}).get("nodes") or []:
        if not review or review.get("state") in ("PENDING", "DISMISSED"):
            continue  # a draft only its author sees; a review someone set aside
        state, author = review.get("state"), _login(review.get("author"))
        at = review.get("submittedAt") or ""
        if review.get("body") or state == "CHANGES_REQUESTED":
            yield Remark(f"review:{review['databaseId']}", author, review.get("body") or "", at, review_state=state)
        for comment in (review.get("comments") or {}).get("nodes") or []:
            if comment:
                # On a line the head has changed since, GitHub gives no `line`: where it was is `originalLine`.
                line, original = comment.get("line"), comment.get("originalLine")
                yield Remark(f"line:{comment['databaseId']}", _login(comment.get("author")), comment.get("body") or "",
                             comment.get("createdAt") or at, comment.get("path"), line or original, state,
                             outdated=line is None and original is not None)


def _checks(commit: Mapping[str, Any]) -> Iterator[Check]:
    rollup = commit.get("statusCheckRollup") or {}
    for context in (rollup.get("contexts") or {}).get("nodes") or []:
        if not context:
            continue
        if context.get("__typename") == "CheckRun":
            status, conclusion = context.get("status") or "", context.get("conclusion") or ""
            state = "pending" if status != "COMPLETED" else "failure" if conclusion in FAILED_CONCLUSIONS \
                else "success"
            app = ((context.get("checkSuite") or {}).get("app") or {}).get("slug")
            summary = " ".join(part for part in (context.get("title"), context.get("summary")) if part)
            yield Check(context.get("name") or "check", state, conclusion or status, summary,
                        context.get("detailsUrl") or "", context.get("databaseId"), app)
        elif context.get("__typename") == "StatusContext":
            raw = context.get("state") or ""
            state = "pending" if raw in PENDING_STATES else "failure" if raw in FAILED_STATES else "success"
            yield Check(context.get("context") or "status", state, raw, context.get("description") or "",
                        context.get("targetUrl") or "")
