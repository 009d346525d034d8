"""GitHub's GraphQL types for conversations on pull requests, resolved against `GitHubState`.

`repository { pullRequest, pullRequests, issues }`, a pull request's comments, reviews (with
their line comments) and commits, and a commit's `statusCheckRollup`: the newest check run of
each name and status of each context, null when the commit has neither. Names, nullability and
enums follow GitHub's schema; `pullRequests` orders by an `IssueOrder`, as GitHub's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asm.sandbox import github_git as git
from asm.sandbox.github_graphql import AbstractType, Arg, EnumType, FieldDef, GraphQLError, ObjectType
from asm.sandbox.github_graphql_types import InputObjectType
from asm.sandbox.github_payloads_checks import run_urls
from asm.sandbox.github_records import ApiError, CheckRun, Issue, Pull, Repo
from asm.sandbox.github_schema_parts import (
    PAGE_ARGS,
    PAGE_LIMIT,
    Context,
    Held,
    comment_fields,
    connection,
    node_id,
    of_record,
    page,
)

_ORDER_KEYS = {
    "CREATED_AT": lambda record: record.number,  # numbers follow creation; timestamps tie within a second
    "UPDATED_AT": lambda record: (record.updated_at, record.number),
    "COMMENTS": lambda record: (len(record.comments), record.number),
}


@dataclass(frozen=True)
class _Commit:
    """A commit of a repository, as `Commit` and `PullRequestCommit` resolve it."""

    full_name: str
    oid: str


# -- resolvers ---------------------------------------------------------------------------------


def _pull_request(repo: Repo, args: dict[str, Any], context: Context) -> Held:
    try:
        record = context.state.pull_record(repo.full_name, args["number"])
    except ApiError:
        raise GraphQLError(f"Could not resolve to a PullRequest with the number of {args['number']}.",
                           "NOT_FOUND") from None
    return Held(repo.full_name, record)


def _pull_requests(repo: Repo, args: dict[str, Any], context: Context) -> dict[str, Any]:
    states = set(args.get("states") or ("OPEN", "CLOSED", "MERGED"))
    chosen = [r for r in context.state.pull_records(repo.full_name, "all")
              if _pull_state(r) in states and _labelled(r, args.get("labels"))
              and args.get("headRefName") in (None, _pull(r).head) and args.get("baseRefName") in (None, _pull(r).base)]
    return page([Held(repo.full_name, r) for r in _ordered(chosen, args.get("orderBy"))], args)


def _issues(repo: Repo, args: dict[str, Any], context: Context) -> dict[str, Any]:
    states = {state.lower() for state in args.get("states") or ("OPEN", "CLOSED")}
    chosen = [r for r in context.state.issue_records(repo.full_name, "all")
              if r.pull is None and r.state in states and _labelled(r, args.get("labels"))]
    return page([Held(repo.full_name, r) for r in _ordered(chosen, args.get("orderBy"))], args)


def _labelled(record: Issue, labels: list[str] | None) -> bool:
    """GitHub's `labels` filter: any one of the names (an empty or absent list filters nothing)."""
    return not labels or bool({name.lower() for name in labels} & {name.lower() for name in record.labels})


def _ordered(records: list[Issue], order: dict[str, str] | None) -> list[Issue]:
    """`records` in an IssueOrder; without one, oldest first as GitHub lists them."""
    order = order or {"field": "CREATED_AT", "direction": "ASC"}
    return sorted(records, key=_ORDER_KEYS[order["field"]], reverse=order["direction"] == "DESC")


def _pull(record: Issue) -> Pull:
    assert record.pull is not None  # pull requests only reach the PullRequest type
    return record.pull


def _pull_state(record: Issue) -> str:
    return "MERGED" if _pull(record).merged else record.state.upper()


def _head_oid(held: Held, args: dict[str, Any], context: Context) -> str:
    """The head branch's tip while the branch exists, else the head it had."""
    pull = _pull(held.record)
    return context.branch_heads(held.full_name).get(pull.head, pull.head_sha)


def _comments(held: Held, args: dict[str, Any], context: Context) -> dict[str, Any]:
    return page([Held(held.full_name, comment) for comment in held.record.comments], args)


def _reviews(held: Held, args: dict[str, Any], context: Context) -> dict[str, Any]:
    reviews = context.state.reviews(held.full_name, held.record.number, context.viewer)  # others' pending hidden
    chosen = [r for r in reviews if (not args.get("states") or r.state in args["states"])
              and args.get("author") in (None, r.author)]
    return page([Held(held.full_name, review) for review in chosen], args)


def _commits(held: Held, args: dict[str, Any], context: Context) -> dict[str, Any]:
    """The pull request's commits, oldest first; a merged one whose commits its base now holds keeps its head."""
    pull = _pull(held.record)
    head = _head_oid(held, args, context)
    try:
        oids = git.commits_between(context.state.repo(held.full_name).path, pull.base, head)
    except git.GitFailed:  # the base branch is gone
        oids = []
    return page([_Commit(held.full_name, oid) for oid in oids or [head]], args)


def _review_comments(held: Held, args: dict[str, Any], context: Context) -> dict[str, Any]:
    return page([Held(held.full_name, comment) for comment in held.record.comments], args)


def _reply_to(held: Held, args: dict[str, Any], context: Context) -> Held | None:
    if held.record.in_reply_to_id is None:
        return None
    _, parent = context.state.review_comment(held.full_name, held.record.in_reply_to_id)
    return Held(held.full_name, parent)


def _rollup(commit: _Commit, args: dict[str, Any], context: Context) -> tuple[str, list[Held]] | None:
    rollup = context.state.rollup(commit.full_name, commit.oid)
    if rollup is None:
        return None
    state, contexts = rollup
    return state, [Held(commit.full_name, item) for item in contexts]


def _upper(name: str) -> Any:
    """A resolver of a held record's lower-case attribute as GitHub's upper-case enum value."""
    return lambda held, args, context: (getattr(held.record, name) or "").upper() or None


# -- types -------------------------------------------------------------------------------------


def repository_fields() -> dict[str, FieldDef]:
    """The fields `Repository` gains: one pull request, pull requests, issues."""
    ordered = {**PAGE_ARGS, "labels": Arg("[String!]"), "orderBy": Arg("IssueOrder")}
    return {
        "pullRequest": FieldDef("PullRequest", _pull_request, {"number": Arg("Int!")}),
        "pullRequests": FieldDef("PullRequestConnection!", _pull_requests, {
            **ordered, "states": Arg("[PullRequestState!]"), "headRefName": Arg("String"),
            "baseRefName": Arg("String")}, PAGE_LIMIT),
        "issues": FieldDef("IssueConnection!", _issues, {**ordered, "states": Arg("[IssueState!]")}, PAGE_LIMIT),
    }


def issue_fields() -> dict[str, FieldDef]:
    """The fields `Issue` gains: its comments."""
    return {"comments": FieldDef("IssueCommentConnection!", _comments, PAGE_ARGS, PAGE_LIMIT)}


def types() -> list[ObjectType | AbstractType | EnumType | InputObjectType]:
    """The types of pull requests, reviews, commits and checks, as GitHub names them."""
    pull_fields = {
        "id": FieldDef("ID!", node_id("PR")),
        "databaseId": FieldDef("Int", of_record("id")),
        "number": FieldDef("Int!", of_record("number")),
        "title": FieldDef("String!", of_record("title")),
        "url": FieldDef("URI!", lambda held, args, context: context.state.html_url(held.full_name, held.record)),
        "state": FieldDef("PullRequestState!", lambda held, args, context: _pull_state(held.record)),
        "closed": FieldDef("Boolean!", lambda held, args, context: held.record.state == "closed"),
        "merged": FieldDef("Boolean!", lambda held, args, context: _pull(held.record).merged),
        "isDraft": FieldDef("Boolean!", lambda held, args, context: _pull(held.record).draft),
        "updatedAt": FieldDef("DateTime!", of_record("updated_at")),
        "headRefName": FieldDef("String!", lambda held, args, context: _pull(held.record).head),
        "headRefOid": FieldDef("GitObjectID!", _head_oid),
        "baseRefName": FieldDef("String!", lambda held, args, context: _pull(held.record).base),
        **comment_fields(lambda held: held.record.edits),
        "comments": FieldDef("IssueCommentConnection!", _comments, PAGE_ARGS, PAGE_LIMIT),
        "reviews": FieldDef("PullRequestReviewConnection", _reviews, {
            **PAGE_ARGS, "states": Arg("[PullRequestReviewState!]"), "author": Arg("String")}, PAGE_LIMIT),
        "commits": FieldDef("PullRequestCommitConnection!", _commits, PAGE_ARGS, PAGE_LIMIT),
    }
    review_fields = {
        "id": FieldDef("ID!", node_id("PRR")),
        "databaseId": FieldDef("Int", of_record("id")),
        **comment_fields(lambda held: ()),
        "state": FieldDef("PullRequestReviewState!", of_record("state")),
        "submittedAt": FieldDef("DateTime", of_record("submitted_at")),
        "commit": FieldDef("Commit", lambda held, args, context: _Commit(held.full_name, held.record.commit_id)),
        "comments": FieldDef("PullRequestReviewCommentConnection!", _review_comments, PAGE_ARGS, PAGE_LIMIT),
    }
    review_comment_fields = {
        "id": FieldDef("ID!", node_id("PRRC")),
        "databaseId": FieldDef("Int", of_record("id")),
        **comment_fields(lambda held: ()),
        "path": FieldDef("String!", of_record("path")),
        "line": FieldDef("Int", of_record("line")),
        "originalLine": FieldDef("Int", of_record("original_line")),
        "diffHunk": FieldDef("String!", of_record("diff_hunk")),
        "outdated": FieldDef("Boolean!", lambda held, args, context: False),  # the sandbox never outdates a line
        "replyTo": FieldDef("PullRequestReviewComment", _reply_to),
        "commit": FieldDef("Commit", lambda held, args, context: _Commit(held.full_name, held.record.commit_id)),
    }
    check_run_fields = {
        "id": FieldDef("ID!", node_id("CR")),
        "databaseId": FieldDef("Int", of_record("id")),
        "name": FieldDef("String!", of_record("name")),
        "status": FieldDef("CheckStatusState!", _upper("status")),
        "conclusion": FieldDef("CheckConclusionState", _upper("conclusion")),
        "title": FieldDef("String", of_record("title")),
        "summary": FieldDef("String", of_record("summary")),
        "text": FieldDef("String", of_record("text")),
        "startedAt": FieldDef("DateTime", of_record("started_at")),
        "completedAt": FieldDef("DateTime", of_record("completed_at")),
        "url": FieldDef("URI!", lambda held, args, context: run_urls(context.state.web_url, held.full_name,
                                                                     held.record)[0]),
        "detailsUrl": FieldDef("URI", lambda held, args, context: run_urls(context.state.web_url, held.full_name,
                                                                           held.record)[1]),
        "checkSuite": FieldDef("CheckSuite!", lambda held, args, context: held),
    }
    status_context_fields = {
        "id": FieldDef("ID!", node_id("SC")),
        "context": FieldDef("String!", of_record("context")),
        "state": FieldDef("StatusState!", _upper("state")),
        "description": FieldDef("String", of_record("description")),
        "targetUrl": FieldDef("URI", of_record("target_url")),
        "createdAt": FieldDef("DateTime!", of_record("created_at")),
        "creator": FieldDef("Actor", of_record("creator")),
    }
    return [
        ObjectType("PullRequest", pull_fields),
        *connection("PullRequest", "PullRequest"),
        *connection("Issue", "Issue"),
        *connection("IssueComment", "IssueComment"),
        ObjectType("PullRequestReview", review_fields),
        *connection("PullRequestReview", "PullRequestReview"),
        ObjectType("PullRequestReviewComment", review_comment_fields),
        *connection("PullRequestReviewComment", "PullRequestReviewComment"),
        ObjectType("PullRequestCommit", {
            "id": FieldDef("ID!", lambda commit, args, context: f"PURC_sandbox{commit.oid}"),
            "commit": FieldDef("Commit!", lambda commit, args, context: commit),
        }),
        *connection("PullRequestCommit", "PullRequestCommit"),
        ObjectType("Commit", {
            "id": FieldDef("ID!", lambda commit, args, context: f"C_sandbox{commit.oid}"),
            "oid": FieldDef("GitObjectID!"),
            "abbreviatedOid": FieldDef("String!", lambda commit, args, context: commit.oid[:7]),
            "url": FieldDef("URI!", lambda commit, args, context:
                            f"{context.state.web_url}/{commit.full_name}/commit/{commit.oid}"),
            "statusCheckRollup": FieldDef("StatusCheckRollup", _rollup),
        }),
        ObjectType("StatusCheckRollup", {
            "id": FieldDef("ID!", lambda rollup, args, context: "SCR_sandbox"),
            "state": FieldDef("StatusState!", lambda rollup, args, context: rollup[0]),
            "contexts": FieldDef("StatusCheckRollupContextConnection!",
                                 lambda rollup, args, context: page(rollup[1], args), PAGE_ARGS, PAGE_LIMIT),
        }),
        *connection("StatusCheckRollupContext", "StatusCheckRollupContext"),
        AbstractType("StatusCheckRollupContext", ("CheckRun", "StatusContext"),
                     lambda held: "CheckRun" if isinstance(held.record, CheckRun) else "StatusContext"),
        ObjectType("CheckRun", check_run_fields),
        ObjectType("CheckSuite", {
            "id": FieldDef("ID!", lambda held, args, context: f"CS_sandbox{held.record.suite_id}"),
            "databaseId": FieldDef("Int", lambda held, args, context: held.record.suite_id),
            "app": FieldDef("App", lambda held, args, context: held.record.app),
        }),
        ObjectType("App", {
            "id": FieldDef("ID!", lambda slug, args, context: f"A_sandbox_{slug}"),
            "slug": FieldDef("String!", lambda slug, args, context: slug),
            "name": FieldDef("String!", lambda slug, args, context:
                             "GitHub Actions" if slug == "github-actions" else slug),
        }),
        ObjectType("StatusContext", status_context_fields),
        EnumType("PullRequestState", ("CLOSED", "MERGED", "OPEN")),
        EnumType("PullRequestReviewState", ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING")),
        EnumType("StatusState", ("ERROR", "EXPECTED", "FAILURE", "PENDING", "SUCCESS")),
        EnumType("CheckStatusState", ("COMPLETED", "IN_PROGRESS", "PENDING", "QUEUED", "REQUESTED", "WAITING")),
        EnumType("CheckConclusionState", ("ACTION_REQUIRED", "CANCELLED", "FAILURE", "NEUTRAL", "SKIPPED", "STALE",
                                          "STARTUP_FAILURE", "SUCCESS", "TIMED_OUT")),
        EnumType("IssueOrderField", ("COMMENTS", "CREATED_AT", "UPDATED_AT")),
        EnumType("PullRequestOrderField", ("CREATED_AT", "UPDATED_AT")),
        EnumType("OrderDirection", ("ASC", "DESC")),
        InputObjectType("IssueOrder", {"field": Arg("IssueOrderField!"), "direction": Arg("OrderDirection!")}),
        InputObjectType("PullRequestOrder", {"field": Arg("PullRequestOrderField!"),
                                             "direction": Arg("OrderDirection!")}),
    ]

