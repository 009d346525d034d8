"""What the sandbox's GraphQL schema modules share: the request's context, records with their repository,
GitHub's connections (pages with opaque cursors) and the fields every actor and comment has.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from asm.sandbox.github_graphql import Arg, FieldDef, GraphQLError, ObjectType
from asm.sandbox.github_graphql_types import Resolver
from asm.sandbox.github_records import BodyEdit
from asm.sandbox.github_state import GitHubState

PAGE_LIMIT = 100  # GitHub's cap on `first` and `last`
PAGE_ARGS = {"first": Arg("Int"), "last": Arg("Int"), "after": Arg("String"), "before": Arg("String")}


@dataclass(frozen=True)
class Context:
    """Who is asking (the login whose token the request carries), and of which state; an installation's token
    reaches only its repositories (`reach`, lower-cased; None: every one)."""

    state: GitHubState
    viewer: str
    reach: frozenset[str] | None = None
    _heads: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def branch_heads(self, full_name: str) -> dict[str, str]:
        """Each branch's tip, read once per request: one query may ask for the heads of many pull requests."""
        if full_name not in self._heads:
            self._heads[full_name] = self.state.branch_heads(full_name)
        return self._heads[full_name]


@dataclass(frozen=True)
class Held:
    """A record with the repository it belongs to, which URLs and associations need."""

    full_name: str
    record: Any


def of_record(name: str) -> Resolver:
    """A resolver of a held record's attribute `name`."""
    return lambda held, args, context: getattr(held.record, name)


def node_id(prefix: str) -> Resolver:
    """A resolver of a held record's node id, GitHub's type prefix and the record's id."""
    return lambda held, args, context: f"{prefix}_sandbox{held.record.id}"


def moment(text: str) -> datetime:
    """A DateTime argument as an aware datetime (UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise GraphQLError(f"{json.dumps(text)} is not a valid DateTime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def page(items: list[Any], args: dict[str, Any], total: int | None = None) -> dict[str, Any]:
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


def bot_fields() -> dict[str, FieldDef]:
    """A GitHub App's bot as an Actor: GraphQL names it by the App's slug, without REST's `[bot]`."""

    def slug(login: str) -> str:
        return login.removesuffix("[bot]")

    return {
        "id": FieldDef("ID!", lambda login, args, context: f"BOT_sandbox_{slug(login)}"),
        "login": FieldDef("String!", lambda login, args, context: slug(login)),
        "url": FieldDef("URI!", lambda login, args, context: f"{context.state.web_url}/apps/{slug(login)}"),
        "resourcePath": FieldDef("URI!", lambda login, args, context: f"/apps/{slug(login)}"),
        "avatarUrl": FieldDef("URI!", lambda login, args, context: f"{context.state.web_url}/apps/{slug(login)}.png",
                              {"size": Arg("Int")}),
    }


def actor_fields() -> dict[str, FieldDef]:
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


def comment_fields(history: Callable[[Held], tuple[BodyEdit, ...]]) -> dict[str, FieldDef]:
    """The fields of GitHub's Comment interface; `history` gives a record's body edits."""

    def last(held: Held) -> BodyEdit | None:
        edits = history(held)
        return edits[-1] if edits else None

    return {
        "lastEditedAt": FieldDef("DateTime", lambda held, args, context: getattr(last(held), "edited_at", None)),
        "editor": FieldDef("Actor", lambda held, args, context: getattr(last(held), "editor", None)),
        "includesCreatedEdit": FieldDef("Boolean!", lambda held, args, context: bool(history(held))),
        "authorAssociation": FieldDef("CommentAuthorAssociation!", lambda held, args, context:
                                      context.state.association(held.full_name, held.record.author)),
        "author": FieldDef("Actor", of_record("author")),
        "body": FieldDef("String!", of_record("body")),
        "createdAt": FieldDef("DateTime!", of_record("created_at")),
    }


def connection(name: str, node: str, **extra: FieldDef) -> list[ObjectType]:
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
