"""A small, general GraphQL executor: parse a request, validate it, resolve it against a schema.

The schema is data handed in (`github_graphql_types`; `github_schema` builds GitHub's). As on
GitHub, a request that does not parse or validate gets `errors` and no `data`; a resolver that
raises `GraphQLError` nulls its field and the error travels next to `data`; a null where the
schema promises none nulls the nearest nullable parent instead (the spec's rule).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any, cast

from asm.sandbox.github_graphql_check import check
from asm.sandbox.github_graphql_syntax import (
    Directive,
    Field,
    FragmentDefinition,
    GraphQLSyntaxError,
    InlineFragment,
    Selection,
    parse,
)
from asm.sandbox.github_graphql_types import (
    CONDITION,
    AbstractType,
    Arg,
    EnumType,
    FieldDef,
    GraphQLError,
    Inputs,
    ObjectType,
    Schema,
    error,
)

__all__ = ["AbstractType", "Arg", "EnumType", "FieldDef", "GraphQLError", "ObjectType", "Schema", "execute"]


class _Null(Exception):
    """A null reached a non-null position; it nulls the nearest nullable parent."""


def execute(schema: Schema, source: object, variables: object, operation_name: object, context: object
            ) -> dict[str, Any]:
    """The response body for one request: `data`, `errors`, or both."""
    if not isinstance(source, str) or not source.strip():
        return {"errors": [error("A query attribute must be specified and must be a string.")]}
    try:
        document = parse(source)
    except GraphQLSyntaxError as problem:
        return {"errors": [error(problem.message, locations=[{"line": problem.line, "column": problem.column}])]}
    if not document.operations:
        return {"errors": [error("Document must contain at least one operation")]}
    operations = [op for op in document.operations if operation_name in (None, op.name)]
    if len(operations) != 1:
        message = f'No operation named "{operation_name}"' if not operations else "An operation name is required"
        return {"errors": [error(message)]}
    operation = operations[0]
    for other in document.operations:
        if other.kind != "query":  # the sandbox serves reads only
            return {"errors": [error(f"Schema is not configured for {other.kind}s", other.loc)]}
    inputs = Inputs(schema)
    problems = inputs.take_variables(operation, variables if isinstance(variables, dict) else {})
    problems = problems or check(schema, inputs, document, operation)
    if problems:
        return {"errors": problems}
    fragments = {fragment.name: fragment for fragment in document.fragments}
    run = _Execution(schema, inputs, fragments, context)
    try:
        data = run.object(schema.query, None, operation.selections, [])
    except _Null:
        data = None
    return {"data": data, "errors": run.errors} if run.errors else {"data": data}


class _Execution:
    """One validated operation being resolved, and the errors resolving it raised."""

    def __init__(self, schema: Schema, inputs: Inputs, fragments: dict[str, FragmentDefinition],
                 context: object) -> None:
        self.schema = schema
        self.inputs = inputs
        self.fragments = fragments
        self.context = context
        self.errors: list[dict[str, Any]] = []

    # In this class's annotations after it, `object` names this method: the builtin is `builtins.object`.
    def object(self, type_name: str, value: object, selections: Iterable[Selection], path: list[str | int]
               ) -> dict[str, Any]:
        fields = self.collect(type_name, selections, {})
        return {key: self.resolve(type_name, value, nodes, [*path, key]) for key, nodes in fields.items()}

    def collect(self, type_name: str, selections: Iterable[Selection], into: dict[str, list[Field]]
                ) -> dict[str, list[Field]]:
        """The fields that apply to an object of `type_name`, grouped by response key, in order."""
        for selection in selections:
            if not all(self.included(directive) for directive in selection.directives):
                continue
            if isinstance(selection, Field):
                into.setdefault(selection.key, []).append(selection)
                continue
            if isinstance(selection, InlineFragment):
                condition, inner = selection.type_condition, selection.selections
            else:
                fragment = self.fragments[selection.name]
                condition, inner = fragment.type_condition, fragment.selections
            if condition is None or type_name in self.schema.possible(condition):
                self.collect(type_name, inner, into)
        return into

    def included(self, directive: Directive) -> bool:
        condition = self.inputs.arguments(CONDITION, directive)["if"]
        return condition if directive.name == "include" else not condition

    def resolve(self, type_name: str, parent: builtins.object, nodes: list[Field], path: list[str | int]
                ) -> builtins.object:
        node = nodes[0]
        if node.name == "__typename":
            return type_name
        definition = self.schema.field(type_name, node.name)
        assert definition is not None  # check() validated every field of the operation
        failed = False
        try:
            args = self.inputs.arguments(definition, node)
            if definition.resolve is not None:
                value = definition.resolve(parent, args, self.context)
            else:
                value = parent.get(node.name) if isinstance(parent, dict) else getattr(parent, node.name, None)
        except GraphQLError as problem:
            kind = {"type": problem.type} if problem.type else {}
            self.errors.append(error(problem.message, node.loc, path, **kind))
            value, failed = None, True
        try:
            return self.complete(definition.type, value, nodes, path)
        except _Null:
            if value is None and not failed:
                message = f"Cannot return null for non-nullable field {type_name}.{node.name}"
                self.errors.append(error(message, node.loc, path))
            raise

    def complete(self, type_: str, value: builtins.object, nodes: list[Field], path: list[str | int]
                 ) -> builtins.object:
        if type_.endswith("!"):
            if value is None:
                raise _Null
            return self.complete_value(type_[:-1], value, nodes, path)
        if value is None:
            return None
        try:
            return self.complete_value(type_, value, nodes, path)
        except _Null:
            return None

    def complete_value(self, type_: str, value: builtins.object, nodes: list[Field], path: list[str | int]
                       ) -> builtins.object:
        if type_.startswith("["):
            items = cast(Iterable[builtins.object], value)  # a list type's resolver returns a list
            return [self.complete(type_[1:-1], item, nodes, [*path, index]) for index, item in enumerate(items)]
        kind = self.schema.types.get(type_)
        if isinstance(kind, AbstractType):
            type_ = kind.type_of(value)
        if self.schema.composite(type_):
            return self.object(type_, value, [s for node in nodes for s in node.selections], path)
        return value  # scalars and enums go out as resolved
