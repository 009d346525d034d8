"""The part of GitHub's GraphQL schema the sandbox serves, resolved against `GitHubState`.

GitHub's type and field names and shapes: `viewer`, `repository { issue { ... } }` with the
issue's edit history (`userContentEdits`, newest first, as GitHub orders it) and its timeline
(`timelineItems`: comments, label changes, renames, closes and reopens, oldest first).
Connections page with opaque cursors and, like GitHub's, insist on `first` or `last` (at most 100).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from asm.sandbox.github_graphql import (
    AbstractType,
    Arg,
    EnumType,
    FieldDef,
    GraphQLError,
    ObjectType,
    Schema,
    execute,
)
from asm.sandbox.github_graphql_types import Resolver
from asm.sandbox.github_records import ApiError, BodyEdit, Comment, IssueEvent, Repo
from asm.sandbox.github_state import GitHubState

PAGE_LIMIT = 100  # GitHub's cap on `first` and `last`
_PAGE_ARGS = {"first": Arg("Int"), "last": Arg("Int"), "after": Arg("String"), "before": Arg("String")}
# Each timeline item type the sandbox records -> the `itemTypes` value that selects it.
_ITEM_TYPES = {
    "IssueComment": "ISSUE_COMMENT",
    "LabeledEvent": "LABELED_EVENT",
    "UnlabeledEvent": "UNLABELED_EVENT",
    "RenamedTitleEvent": "RENAMED_TITLE_EVENT",
    "ClosedEvent": "CLOSED_EVENT",
    "ReopenedEvent": "REOPENED_EVENT",
}
# Issue event names (as the REST API writes them) -> their timeline item type.
_EVENT_TYPES = {"labeled": "LabeledEvent", "unlabeled": "UnlabeledEvent", "renamed": "RenamedTitleEvent",
                "closed": "ClosedEvent", "reopened": "ReopenedEvent"}
_NODE_PREFIX = {"LabeledEvent": "LE", "UnlabeledEvent": "UNLE", "RenamedTitleEvent": "RTE", "ClosedEvent": "CE",
                "ReopenedEvent": "REE"}
# All of GitHub's values, so a valid query naming kinds the sandbox never records gets no items, not an error.
_ALL_ITEM_TYPES = (
    "ADDED_TO_PROJECT_EVENT", "ADDED_TO_PROJECT_V2_EVENT", "ASSIGNED_EVENT", "BLOCKED_BY_ADDED_EVENT",
    "BLOCKED_BY_REMOVED_EVENT", "BLOCKING_ADDED_EVENT", "BLOCKING_REMOVED_EVENT", "CLOSED_EVENT",
    "COMMENT_DELETED_EVENT", "CONNECTED_EVENT", "CONVERTED_FROM_DRAFT_EVENT", "CONVERTED_NOTE_TO_ISSUE_EVENT",
    "CONVERTED_TO_DISCUSSION_EVENT", "CROSS_REFERENCED_EVENT", "DEMILESTONED_EVENT", "DISCONNECTED_EVENT",
    "ISSUE_COMMENT", "ISSUE_TYPE_ADDED_EVENT", "ISSUE_TYPE_CHANGED_EVENT", "ISSUE_TYPE_REMOVED_EVENT",
    "LABELED_EVENT", "LOCKED_EVENT", "MARKED_AS_DUPLICATE_EVENT", "MENTIONED_EVENT", "MILESTONED_EVENT",
    "MOVED_COLUMNS_IN_PROJECT_EVENT", "PARENT_ISSUE_ADDED_EVENT", "PARENT_ISSUE_REMOVED_EVENT", "PINNED_EVENT",
    "PROJECT_V2_ITEM_STATUS_CHANGED_EVENT", "REFERENCED_EVENT", "REMOVED_FROM_PROJECT_EVENT",
    "REMOVED_FROM_PROJECT_V2_EVENT", "RENAMED_TITLE_EVENT", "REOPENED_EVENT", "SUBSCRIBED_EVENT",
    "SUB_ISSUE_ADDED_EVENT", "SUB_ISSUE_REMOVED_EVENT", "TRANSFERRED_EVENT", "UNASSIGNED_EVENT",
    "UNLABELED_EVENT", "UNLOCKED_EVENT", "UNMARKED_AS_DUPLICATE_EVENT", "UNPINNED_EVENT", "UNSUBSCRIBED_EVENT",
    "USER_BLOCKED_EVENT",
)


@dataclass(frozen=True)
class Context:
    """Who is asking (the login whose token the request carries), and of which state."""

    state: GitHubState
    viewer: str


@dataclass(frozen=True)
class _Held:
    """A record with the repository it belongs to, which URLs and associations need."""

    full_name: str
    record: Any


def run(context: Context, query: object, variables: object, operation_name: object) -> dict:
    """The body of GitHub's answer to `POST /graphql` with this query, variables and operation name."""
    return execute(SCHEMA, query, variables, operation_name, context)


# -- resolvers ---------------------------------------------------------------------------------


def _record(name: str) -> Resolver:
    return lambda held, args, context: getattr(held.record, name)


def _repository(parent: None, args: dict, context: Context) -> Repo:
    try:
        return context.state.repo(f"{args['owner']}/{args['name']}")
    except ApiError:
        message = f"Could not resolve to a Repository with the name '{args['owner']}/{args['name']}'."
        raise GraphQLError(message, "NOT_FOUND") from None


def _user(parent: None, args: dict, context: Context) -> str:
    login = context.state.user(args["login"])
    if login is None:
        raise GraphQLError(f"Could not resolve to a User with the login of '{args['login']}'.", "NOT_FOUND")
    return login


def _issue(repo: Repo, args: dict, context: Context) -> _Held:
    try:
        record = context.state.issue_record(repo.full_name, args["number"])
    except ApiError:
        record = None
    if record is None or record.pull is not None:
        raise GraphQLError(f"Could not resolve to an Issue with the number of {args['number']}.", "NOT_FOUND")
    return _Held(repo.full_name, record)


def _permission(repo: Repo, args: dict, context: Context) -> str:
    return (context.state.role(repo.full_name, context.viewer) or "read").upper()  # public: anyone reads


def _edits(issue: _Held, args: dict, context: Context) -> dict:
    return _page(list(reversed(issue.record.edits)), args)


def _timeline(issue: _Held, args: dict, context: Context) -> dict:
    record = issue.record
    events = [event for event in record.events if event.event in _EVENT_TYPES]
    items = sorted([*events, *record.comments], key=lambda item: item.id)  # ids grow with time
    wanted = set(args.get("itemTypes") or _ITEM_TYPES.values())
    since = _moment(args["since"]) if args.get("since") is not None else None
    chosen = [_Held(issue.full_name, item) for item in items
              if _ITEM_TYPES[_typename(item)] in wanted and (since is None or _moment(item.created_at) >= since)]
    # GitHub's totalCount ignores itemTypes and since; filteredCount is what the filters leave.
    return _page(chosen, args, total=len(items))


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise GraphQLError(f"{json.dumps(text)} is not a valid DateTime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _typename(item: IssueEvent | Comment | _Held) -> str:
    item = item.record if isinstance(item, _Held) else item
    return "IssueComment" if isinstance(item, Comment) else _EVENT_TYPES[item.event]


def _node_id(prefix: str) -> Resolver:
    return lambda held, args, context: f"{prefix}_sandbox{held.record.id}"


def _page(items: list, args: dict, total: int | None = None) -> dict:
    """One page of `items` as a GitHub connection; validation made sure of `first` or `last`."""
    start, end = 0, len(items)
    if args.get("after") is not None:
        start = min(_position(args["after"]) + 1, len(items))
    if args.get("before") is not None:
        end = max(min(_position(args["before"]), len(items)), start)
    filtered = end - start
    start = min(start + max(args.get("skip") or 0, 0), end)
    if args.get("first") is not None:
        end = min(end, start + max(args["first"], 0))
    if args.get("last") is not None:
        start = max(start, end - max(args["last"], 0))
    edges = [{"cursor": _cursor(index), "node": items[index]} for index in range(start, end)]
    page_info = {
        "hasNextPage": end < len(items),
        "hasPreviousPage": start > 0,
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
    }
    return {
        "totalCount": len(items) if total is None else total,
        "filteredCount": filtered,
        "pageCount": len(edges),
        "nodes": [edge["node"] for edge in edges],
        "edges": edges,
        "pageInfo": page_info,
    }


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _position(cursor: str) -> int:
    try:
        prefix, _, index = base64.b64decode(cursor, validate=True).decode().rpartition(":")
        if prefix == "cursor:v2" and index.isdigit():
            return int(index)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise GraphQLError(f"`{cursor}` does not appear to be a valid cursor.", "INVALID_CURSOR_ARGUMENTS")


# -- types -------------------------------------------------------------------------------------


def _actor_fields() -> dict[str, FieldDef]:
    """Actor's fields; a user is its login, which is all the sandbox knows of a person."""

    def url(context: Context, login: str) -> str:
        return f"{context.state.web_url}/{login}"

    return {
        "login": FieldDef("String!", lambda login, args, context: login),
        "url": FieldDef("URI!", lambda login, args, context: url(context, login)),
        "resourcePath": FieldDef("URI!", lambda login, args, context: f"/{login}"),
        "avatarUrl": FieldDef("URI!", lambda login, args, context: f"{url(context, login)}.png",
                              {"size": Arg("Int")}),
    }


def _event_fields(**extra: FieldDef) -> dict[str, FieldDef]:
    fields = {
        "id": FieldDef("ID!", lambda held, args, context: f"{_NODE_PREFIX[_typename(held)]}_sandbox{held.record.id}"),
        "createdAt": FieldDef("DateTime!", _record("created_at")),
        "actor": FieldDef("Actor", _record("actor")),
    }
    return {**fields, **extra}


def _comment_fields(history: Callable[[_Held], tuple[BodyEdit, ...]]) -> dict[str, FieldDef]:
    """The fields of GitHub's Comment interface; `history` gives a record's body edits."""

    def last(held: _Held) -> BodyEdit | None:
        edits = history(held)
        return edits[-1] if edits else None

    return {
        "lastEditedAt": FieldDef("DateTime", lambda held, args, context: getattr(last(held), "edited_at", None)),
        "editor": FieldDef("Actor", lambda held, args, context: getattr(last(held), "editor", None)),
        "includesCreatedEdit": FieldDef("Boolean!", lambda held, args, context: bool(history(held))),
        "authorAssociation": FieldDef("CommentAuthorAssociation!", lambda held, args, context:
                                      context.state.association(held.full_name, held.record.author)),
        "author": FieldDef("Actor", _record("author")),
        "body": FieldDef("String!", _record("body")),
        "createdAt": FieldDef("DateTime!", _record("created_at")),
    }


def _connection(name: str, node: str, **extra: FieldDef) -> list[ObjectType]:
    """A connection type and its edge type, shaped as GitHub's."""
    return [
        ObjectType(f"{name}Connection", {
            "totalCount": FieldDef("Int!"),
            "nodes": FieldDef(f"[{node}]"),
            "edges": FieldDef(f"[{name}Edge]"),
            "pageInfo": FieldDef("PageInfo!"),
            **extra,
        }),
        ObjectType(f"{name}Edge", {"cursor": FieldDef("String!"), "node": FieldDef(node)}),
    ]


def _schema() -> Schema:
    """GitHub's types, as data: long, but one flat table reads better than many small ones."""
    issue_fields = {
        "id": FieldDef("ID!", _node_id("I")),
        "databaseId": FieldDef("Int", _record("id")),
        "number": FieldDef("Int!", _record("number")),
        "title": FieldDef("String!", _record("title")),
        "state": FieldDef("IssueState!", lambda held, args, context: held.record.state.upper()),
        "closed": FieldDef("Boolean!", lambda held, args, context: held.record.state == "closed"),
        "closedAt": FieldDef("DateTime", _record("closed_at")),
        "updatedAt": FieldDef("DateTime!", _record("updated_at")),
        "url": FieldDef("URI!", lambda held, args, context: context.state.html_url(held.full_name, held.record)),
        **_comment_fields(lambda held: held.record.edits),
        "userContentEdits": FieldDef("UserContentEditConnection", _edits, _PAGE_ARGS, PAGE_LIMIT),
        "timelineItems": FieldDef(
            "IssueTimelineItemsConnection!",
            _timeline,
            {**_PAGE_ARGS, "itemTypes": Arg("[IssueTimelineItemsItemType!]"), "since": Arg("DateTime"),
             "skip": Arg("Int")},
            PAGE_LIMIT,
        ),
    }
    comment_fields = {
        "id": FieldDef("ID!", _node_id("IC")),
        "databaseId": FieldDef("Int", _record("id")),
        "updatedAt": FieldDef("DateTime!", _record("created_at")),  # the sandbox never edits comments
        **_comment_fields(lambda held: ()),
    }
    label = lambda held, args, context: held.record.label  # noqa: E731
    types: list[ObjectType | AbstractType | EnumType] = [
        ObjectType("Query", {
            "viewer": FieldDef("User!", lambda parent, args, context: context.viewer),
            "repository": FieldDef("Repository", _repository, {
                "owner": Arg("String!"), "name": Arg("String!"), "followRenames": Arg("Boolean", True)}),
            "user": FieldDef("User", _user, {"login": Arg("String!")}),
        }),
        AbstractType("Actor", ("User",), lambda login: "User", _actor_fields()),
        # Sandbox repositories belong to organizations, as the REST payloads say.
        AbstractType("RepositoryOwner", ("User", "Organization"), lambda login: "Organization",
                     {"login": FieldDef("String!", lambda login, args, context: login)}),
        ObjectType("User", {"id": FieldDef("ID!", lambda login, args, context: f"U_sandbox_{login}"),
                            "name": FieldDef("String", lambda login, args, context: None),
                            **_actor_fields()}),
        ObjectType("Organization", {"id": FieldDef("ID!", lambda login, args, context: f"O_sandbox_{login}"),
                                    **_actor_fields()}),
        ObjectType("Repository", {
            "id": FieldDef("ID!", lambda repo, args, context: f"R_sandbox{repo.id}"),
            "databaseId": FieldDef("Int", lambda repo, args, context: repo.id),
            "name": FieldDef("String!"),
            "nameWithOwner": FieldDef("String!", lambda repo, args, context: repo.full_name),
            "owner": FieldDef("RepositoryOwner!", lambda repo, args, context: repo.owner),
            "isPrivate": FieldDef("Boolean!", lambda repo, args, context: False),
            "url": FieldDef("URI!", lambda repo, args, context: f"{context.state.web_url}/{repo.full_name}"),
            "viewerPermission": FieldDef("RepositoryPermission", _permission),
            "issue": FieldDef("Issue", _issue, {"number": Arg("Int!")}),
        }),
        ObjectType("Issue", issue_fields),
        ObjectType("IssueComment", comment_fields),
        ObjectType("UserContentEdit", {
            "id": FieldDef("ID!", lambda edit, args, context: f"UCE_sandbox{edit.id}"),
            "createdAt": FieldDef("DateTime!", lambda edit, args, context: edit.edited_at),
            "updatedAt": FieldDef("DateTime!", lambda edit, args, context: edit.edited_at),
            "editedAt": FieldDef("DateTime!", lambda edit, args, context: edit.edited_at),
            "editor": FieldDef("Actor", lambda edit, args, context: edit.editor),
            # On GitHub `diff` holds that version's whole text, not a diff.
            "diff": FieldDef("String", lambda edit, args, context: edit.text),
            "deletedAt": FieldDef("DateTime", lambda edit, args, context: None),
            "deletedBy": FieldDef("Actor", lambda edit, args, context: None),
        }),
        *_connection("UserContentEdit", "UserContentEdit"),
        *_connection("IssueTimelineItems", "IssueTimelineItems", filteredCount=FieldDef("Int!"),
                     pageCount=FieldDef("Int!")),
        AbstractType("IssueTimelineItems", tuple(_ITEM_TYPES), _typename),
        ObjectType("LabeledEvent", _event_fields(label=FieldDef("Label!", label))),
        ObjectType("UnlabeledEvent", _event_fields(label=FieldDef("Label!", label))),
        ObjectType("RenamedTitleEvent", _event_fields(
            previousTitle=FieldDef("String!", lambda held, args, context: held.record.rename[0]),
            currentTitle=FieldDef("String!", lambda held, args, context: held.record.rename[1]),
        )),
        ObjectType("ClosedEvent", _event_fields()),
        ObjectType("ReopenedEvent", _event_fields()),
        ObjectType("Label", {
            "id": FieldDef("ID!", lambda label, args, context: f"LA_sandbox{label.id}"),
            "name": FieldDef("String!"),
            "color": FieldDef("String!"),
            "description": FieldDef("String"),
        }),
        ObjectType("PageInfo", {
            "hasNextPage": FieldDef("Boolean!"),
            "hasPreviousPage": FieldDef("Boolean!"),
            "startCursor": FieldDef("String"),
            "endCursor": FieldDef("String"),
        }),
        EnumType("IssueState", ("OPEN", "CLOSED")),
        EnumType("RepositoryPermission", ("ADMIN", "MAINTAIN", "WRITE", "TRIAGE", "READ")),
        EnumType("CommentAuthorAssociation", ("MEMBER", "OWNER", "MANNEQUIN", "COLLABORATOR", "CONTRIBUTOR",
                                              "FIRST_TIME_CONTRIBUTOR", "FIRST_TIMER", "NONE")),
        EnumType("IssueTimelineItemsItemType", _ALL_ITEM_TYPES),
    ]
    return Schema(types)


SCHEMA = _schema()
