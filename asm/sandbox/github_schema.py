"""The part of GitHub's GraphQL schema the sandbox serves, resolved against `GitHubState`.

GitHub's type and field names and shapes: `viewer`, `repository { issue { ... } }` with the
issue's edit history (`userContentEdits`, newest first, as GitHub orders it) and its timeline
(`timelineItems`: comments, label changes, renames, closes and reopens, oldest first); pull
requests, their reviews and checks come from `github_schema_pulls`. Connections page with opaque
cursors and, like GitHub's, insist on `first` or `last` (at most 100).
"""

from __future__ import annotations

from asm.sandbox import github_schema_pulls as pulls
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
from asm.sandbox.github_graphql_types import InputObjectType
from asm.sandbox.github_records import ApiError, Comment, IssueEvent, Repo
from asm.sandbox.github_schema_parts import (
    PAGE_ARGS,
    PAGE_LIMIT,
    Context,
    Held,
    actor_fields,
    bot_fields,
    comment_fields,
    connection,
    moment,
    node_id,
    of_record,
    page,
)

__all__ = ["Context", "SCHEMA", "run"]

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


def run(context: Context, query: object, variables: object, operation_name: object) -> dict:
    """The body of GitHub's answer to `POST /graphql` with this query, variables and operation name."""
    return execute(SCHEMA, query, variables, operation_name, context)


# -- resolvers ---------------------------------------------------------------------------------


def _repository(parent: None, args: dict, context: Context) -> Repo:
    try:
        if context.reach is not None and f"{args['owner']}/{args['name']}".lower() not in context.reach:
            raise ApiError(404, "outside the installation")  # as GitHub: as if it did not exist
        return context.state.repo(f"{args['owner']}/{args['name']}")
    except ApiError:
        message = f"Could not resolve to a Repository with the name '{args['owner']}/{args['name']}'."
        raise GraphQLError(message, "NOT_FOUND") from None


def _user(parent: None, args: dict, context: Context) -> str:
    login = context.state.user(args["login"])
    if login is None:
        raise GraphQLError(f"Could not resolve to a User with the login of '{args['login']}'.", "NOT_FOUND")
    return login


def _issue(repo: Repo, args: dict, context: Context) -> Held:
    try:
        record = context.state.issue_record(repo.full_name, args["number"])
    except ApiError:
        record = None
    if record is None or record.pull is not None:
        raise GraphQLError(f"Could not resolve to an Issue with the number of {args['number']}.", "NOT_FOUND")
    return Held(repo.full_name, record)


def _permission(repo: Repo, args: dict, context: Context) -> str:
    return (context.state.role(repo.full_name, context.viewer) or "read").upper()  # public: anyone reads


def _edits(issue: Held, args: dict, context: Context) -> dict:
    return page(list(reversed(issue.record.edits)), args)


def _timeline(issue: Held, args: dict, context: Context) -> dict:
    record = issue.record
    events = [event for event in record.events if event.event in _EVENT_TYPES]
    items = sorted([*events, *record.comments], key=lambda item: item.id)  # ids grow with time
    wanted = set(args.get("itemTypes") or _ITEM_TYPES.values())
    since = moment(args["since"]) if args.get("since") is not None else None
    chosen = [Held(issue.full_name, item) for item in items
              if _ITEM_TYPES[_typename(item)] in wanted and (since is None or moment(item.created_at) >= since)]
    # GitHub's totalCount ignores itemTypes and since; filteredCount is what the filters leave.
    return page(chosen, args, total=len(items))


def _typename(item: IssueEvent | Comment | Held) -> str:
    item = item.record if isinstance(item, Held) else item
    return "IssueComment" if isinstance(item, Comment) else _EVENT_TYPES[item.event]


# -- types -------------------------------------------------------------------------------------


def _event_fields(**extra: FieldDef) -> dict[str, FieldDef]:
    fields = {
        "id": FieldDef("ID!", lambda held, args, context: f"{_NODE_PREFIX[_typename(held)]}_sandbox{held.record.id}"),
        "createdAt": FieldDef("DateTime!", of_record("created_at")),
        "actor": FieldDef("Actor", of_record("actor")),
    }
    return {**fields, **extra}


def _schema() -> Schema:
    """GitHub's types, as data: long, but one flat table reads better than many small ones."""
    issue_fields = {
        "id": FieldDef("ID!", node_id("I")),
        "databaseId": FieldDef("Int", of_record("id")),
        "number": FieldDef("Int!", of_record("number")),
        "title": FieldDef("String!", of_record("title")),
        "state": FieldDef("IssueState!", lambda held, args, context: held.record.state.upper()),
        "closed": FieldDef("Boolean!", lambda held, args, context: held.record.state == "closed"),
        "closedAt": FieldDef("DateTime", of_record("closed_at")),
        "updatedAt": FieldDef("DateTime!", of_record("updated_at")),
        "url": FieldDef("URI!", lambda held, args, context: context.state.html_url(held.full_name, held.record)),
        **comment_fields(lambda held: held.record.edits),
        "userContentEdits": FieldDef("UserContentEditConnection", _edits, PAGE_ARGS, PAGE_LIMIT),
        "timelineItems": FieldDef(
            "IssueTimelineItemsConnection!",
            _timeline,
            {**PAGE_ARGS, "itemTypes": Arg("[IssueTimelineItemsItemType!]"), "since": Arg("DateTime"),
             "skip": Arg("Int")},
            PAGE_LIMIT,
        ),
        **pulls.issue_fields(),
    }
    issue_comment_fields = {
        "id": FieldDef("ID!", node_id("IC")),
        "databaseId": FieldDef("Int", of_record("id")),
        "updatedAt": FieldDef("DateTime!", of_record("updated_at")),
        **comment_fields(lambda held: held.record.edits),
        "userContentEdits": FieldDef("UserContentEditConnection", _edits, PAGE_ARGS, PAGE_LIMIT),
    }
    label = lambda held, args, context: held.record.label  # noqa: E731
    types: list[ObjectType | AbstractType | EnumType | InputObjectType] = [
        ObjectType("Query", {
            "viewer": FieldDef("User!", lambda parent, args, context: context.viewer),
            "repository": FieldDef("Repository", _repository, {
                "owner": Arg("String!"), "name": Arg("String!"), "followRenames": Arg("Boolean", True)}),
            "user": FieldDef("User", _user, {"login": Arg("String!")}),
        }),
        # A GitHub App's bot (REST's `<slug>[bot]`) is a Bot, whose login GraphQL gives without the `[bot]`.
        AbstractType("Actor", ("User", "Bot"), lambda login: "Bot" if login.endswith("[bot]") else "User",
                     actor_fields()),
        ObjectType("Bot", bot_fields()),
        # Sandbox repositories belong to organizations, as the REST payloads say.
        AbstractType("RepositoryOwner", ("User", "Organization"), lambda login: "Organization",
                     {"login": FieldDef("String!", lambda login, args, context: login)}),
        ObjectType("User", {"id": FieldDef("ID!", lambda login, args, context: f"U_sandbox_{login}"),
                            "name": FieldDef("String", lambda login, args, context: None),
                            **actor_fields()}),
        ObjectType("Organization", {"id": FieldDef("ID!", lambda login, args, context: f"O_sandbox_{login}"),
                                    **actor_fields()}),
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
            **pulls.repository_fields(),
        }),
        ObjectType("Issue", issue_fields),
        ObjectType("IssueComment", issue_comment_fields),
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
        *connection("UserContentEdit", "UserContentEdit"),
        *connection("IssueTimelineItems", "IssueTimelineItems", filteredCount=FieldDef("Int!"),
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
    return Schema([*types, *pulls.types()])


SCHEMA = _schema()
