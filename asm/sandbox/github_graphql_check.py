"""Validation of a GraphQL operation before anything runs, in graphql-ruby's words (GitHub's).

Every field must exist on its type, every argument be accepted and fit, every variable be
declared, used and of a fitting type, fragments apply where they are spread and are all used,
leaves have no selections and objects have some. Like graphql-ruby, every operation of the
document is checked, not only the one that runs. GitHub also checks the running operation's
connection sizes up front: `first` or `last` is required, and capped. All problems are
reported, not just the first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from asm.sandbox.github_graphql_syntax import (
    Directive,
    Document,
    EnumValue,
    Field,
    FragmentDefinition,
    FragmentSpread,
    InlineFragment,
    Location,
    ObjectValue,
    Operation,
    Selection,
    Variable,
)
from asm.sandbox.github_graphql_types import (
    ABSENT,
    CONDITION,
    AbstractType,
    EnumType,
    FieldDef,
    Inputs,
    Invalid,
    Schema,
    error,
)


def check(schema: Schema, inputs: Inputs, document: Document, running: Operation) -> list[dict[str, Any]]:
    """Everything wrong with the document; empty when `running` (one of its operations) may run.

    `inputs` holds the running operation's variables, which its connection sizes may name.
    """
    fragments = {fragment.name: fragment for fragment in document.fragments}
    errors: list[dict[str, Any]] = []
    spread: set[str] = set()
    for operation in document.operations:
        checker = _Checker(schema, inputs, operation, fragments, errors, spread, sizes=operation is running)
        checker.selections(schema.query, operation.selections, [checker.label], [])
        for definition in operation.variables:
            if definition.name not in checker.used:
                checker.error(f"Variable ${definition.name} is declared by {checker.label} but not used",
                              definition.loc, [checker.label],
                              extensions={"code": "variableNotUsed", "variableName": definition.name})
    for name, fragment in fragments.items():
        if name not in spread:
            errors.append(error(f"Fragment {name} was defined, but not used", fragment.loc, [f"fragment {name}"],
                                extensions={"code": "useAndDefineFragment", "fragmentName": name}))
    return errors


class _Checker:
    """The walk over one operation; `errors` and `spread` (fragments seen) are the document's."""

    def __init__(self, schema: Schema, inputs: Inputs, operation: Operation, fragments: dict[str, FragmentDefinition],
                 errors: list[dict[str, Any]], spread: set[str], sizes: bool) -> None:
        self.schema = schema
        self.inputs = inputs
        self.operation = operation
        self.fragments = fragments
        self.errors = errors
        self.spread = spread
        self.sizes = sizes  # check connection sizes, which needs the variables' values
        self.label = f"{operation.kind} {operation.name}" if operation.name else operation.kind
        self.used: set[str] = set()  # variables

    def error(self, message: str, loc: Location | None, path: list[str], **extra: object) -> None:
        entry = error(message, loc, path, **extra)
        if entry not in self.errors:  # a fragment spread twice would report its problems twice
            self.errors.append(entry)

    def selections(self, parent: str, selections: Iterable[Selection], path: list[str], stack: list[str]) -> None:
        for selection in selections:
            for directive in selection.directives:
                self.directive(directive, path)
            if isinstance(selection, Field):
                self.field(parent, selection, [*path, selection.name], stack)
            elif isinstance(selection, InlineFragment):
                condition = selection.type_condition or parent
                here = [*path, f"... on {condition}" if selection.type_condition else "..."]
                if self.condition(condition, parent, selection, here, f"Fragment on {condition}"):
                    self.selections(condition, selection.selections, here, stack)
            else:
                self.fragment_spread(parent, selection, path, stack)

    def fragment_spread(self, parent: str, spread: FragmentSpread, path: list[str], stack: list[str]) -> None:
        fragment = self.fragments.get(spread.name)
        self.spread.add(spread.name)
        if fragment is None:
            self.error(f"Fragment {spread.name} was used, but not defined", spread.loc, path,
                       extensions={"code": "useAndDefineFragment", "fragmentName": spread.name})
        elif spread.name in stack:
            self.error(f"Fragment {spread.name} contains an infinite loop", fragment.loc, path,
                       extensions={"code": "infiniteLoop", "fragmentName": spread.name})
        elif self.condition(fragment.type_condition, parent, spread, path,
                            f"Fragment {spread.name} on {fragment.type_condition}"):
            self.selections(fragment.type_condition, fragment.selections, [f"fragment {spread.name}"],
                            [*stack, spread.name])

    def condition(self, condition: str, parent: str, node: Selection, path: list[str], what: str) -> bool:
        if not self.schema.composite(condition):
            self.error(f"No such type {condition}, so it can't be a fragment condition", node.loc, path,
                       extensions={"code": "undefinedType", "typeName": condition})
            return False
        if not self.schema.possible(condition) & self.schema.possible(parent):
            self.error(f"{what} can't be spread inside {parent}", node.loc, path,
                       extensions={"code": "cannotSpreadFragment", "typeName": condition})
            return False
        return True

    def directive(self, directive: Directive, path: list[str]) -> None:
        if directive.name in ("include", "skip"):
            self.arguments(CONDITION, directive, "Directive", path)
        else:
            self.error(f"Directive @{directive.name} is not defined", directive.loc, path,
                       extensions={"code": "undefinedDirective", "directiveName": directive.name})

    def field(self, parent: str, node: Field, path: list[str], stack: list[str]) -> None:
        definition = FieldDef("String!") if node.name == "__typename" else self.schema.field(parent, node.name)
        if definition is None:
            kind = self.schema.types.get(parent)
            if isinstance(kind, AbstractType) and not kind.fields:
                self.error(f"Selections can't be made directly on unions (see selections on {parent})", node.loc,
                           path, extensions={"code": "selectionMismatch", "nodeName": parent})
            else:
                self.error(f"Field '{node.name}' doesn't exist on type '{parent}'", node.loc, path,
                           extensions={"code": "undefinedField", "typeName": parent, "fieldName": node.name})
            return
        args = self.arguments(definition, node, "Field", path)
        if args is not None and definition.page_limit is not None and self.sizes:
            self.page(definition.page_limit, args, node, path)
        named = definition.type.strip("[]!")
        mismatch = {"code": "selectionMismatch", "nodeName": f"field '{node.name}'"}
        if self.schema.composite(named) and not node.selections:
            self.error(f"Field must have selections (field '{node.name}' returns {named} but has no selections. "
                       f"Did you mean '{node.name} {{ ... }}'?)", node.loc, path, extensions=mismatch)
        elif not self.schema.composite(named) and node.selections:
            leaves = "enums" if isinstance(self.schema.types.get(named), EnumType) else "scalars"
            names = ", ".join(s.name for s in node.selections if isinstance(s, Field))
            self.error(f"Selections can't be made on {leaves} (field '{node.name}' returns {named} but has "
                       f"selections [{names}])", node.loc, path, extensions=mismatch)
        elif node.selections:
            self.selections(named, node.selections, path, stack)

    def arguments(self, definition: FieldDef, node: Field | Directive, what: str, path: list[str]
                  ) -> dict[str, Any] | None:
        """The arguments' values, or None after reporting what is wrong with them."""
        before = len(self.errors)
        for name, value in node.args:
            if name not in definition.args:
                self.error(f"{what} '{node.name}' doesn't accept argument '{name}'", node.loc, path,
                           extensions={"code": "argumentNotAccepted", "name": node.name, "typeName": what,
                                       "argumentName": name})
                continue

            def usage(variable: str, location: str, argument: str = name) -> None:
                self.variable(variable, location, argument, node, path)

            try:
                self.inputs.coerce(value, definition.args[name].type, True, usage)
            except Invalid:
                self.error(f"Argument '{name}' on {what} '{node.name}' has an invalid value ({_print(value)}). "
                           f"Expected type '{definition.args[name].type}'.", node.loc, path,
                           extensions={"code": "argumentLiteralsIncompatible", "typeName": what,
                                       "argumentName": name})
        given = {name for name, _ in node.args}
        missing = [name for name, arg in definition.args.items()
                   if arg.type.endswith("!") and arg.default is ABSENT and name not in given]
        if missing:
            self.error(f"{what} '{node.name}' is missing required arguments: {', '.join(missing)}", node.loc, path,
                       extensions={"code": "missingRequiredArguments", "className": what, "name": node.name,
                                   "arguments": ", ".join(missing)})
        if len(self.errors) > before or not self.sizes:
            return None
        return self.inputs.arguments(definition, node)

    def variable(self, name: str, location: str, argument: str, node: Field | Directive, path: list[str]) -> None:
        self.used.add(name)
        definition = next((d for d in self.operation.variables if d.name == name), None)
        if definition is None:
            self.error(f"Variable ${name} is used by {self.label} but not declared", node.loc, path,
                       extensions={"code": "variableNotDefined", "variableName": name})
            return
        declared = definition.type
        if definition.has_default and definition.default is not None and not declared.endswith("!"):
            declared += "!"  # a default fills in for a missing value, so the position never goes empty
        if not _fits(declared, location):
            kind = "Nullability" if _fits(declared.replace("!", ""), location.replace("!", "")) else "Type"
            self.error(f"{kind} mismatch on variable ${name} and argument {argument} ({definition.type} / "
                       f"{location})", node.loc, path, extensions={"code": "variableMismatch", "variableName": name})

    def page(self, limit: int, args: dict[str, Any], node: Field, path: list[str]) -> None:
        """GitHub's checks on a connection's size, made before the query runs."""
        first, last = args.get("first"), args.get("last")
        where = {"path": path, "locations": [{"line": node.loc.line, "column": node.loc.column}]}
        if first is None and last is None:
            message = f"You must provide a `first` or `last` value to properly paginate the `{node.name}` connection."
            self.errors.append({"type": "MISSING_PAGINATION_BOUNDARIES", **where, "message": message})
        elif first is not None and last is not None:
            message = f"Passing both `first` and `last` to paginate the `{node.name}` connection is not supported."
            self.errors.append({"type": "INVALID_PAGINATION", **where, "message": message})
        else:
            bound, count = ("first", first) if first is not None else ("last", last)
            assert count is not None  # one of the two was given, not both
            if count > limit:
                message = (f"Requesting {count} records on the `{node.name}` connection exceeds the `{bound}` "
                           f"limit of {limit} records.")
                self.errors.append({"type": "EXCESSIVE_PAGINATION", **where, "message": message})


def _fits(declared: str, location: str) -> bool:
    """Whether a variable of type `declared` may fill a position of type `location` (the spec's rule)."""
    if location.endswith("!"):
        return declared.endswith("!") and _fits(declared[:-1], location[:-1])
    if declared.endswith("!"):
        return _fits(declared[:-1], location)
    if location.startswith("["):
        return declared.startswith("[") and _fits(declared[1:-1], location[1:-1])
    return not declared.startswith("[") and declared == location


def _print(value: object) -> str:
    """A literal written back as GraphQL, as graphql-ruby quotes it in its messages."""
    if isinstance(value, Variable):
        return f"${value.name}"
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, tuple):
        return "[" + ", ".join(_print(item) for item in value) + "]"
    if isinstance(value, ObjectValue):
        return "{" + ", ".join(f"{name}: {_print(item)}" for name, item in value.fields) + "}"
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else json.dumps(value)
