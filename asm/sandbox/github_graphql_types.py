"""The type system of the sandbox's GraphQL: schema types, and input values coerced to them.

A schema is plain data: object, interface/union, enum and input object types whose fields name
their type in GraphQL notation ("Int!", "[Label!]") and carry a resolver. `Inputs` turns variables
and argument literals into the Python values resolvers receive, or says they do not fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asm.sandbox.github_graphql_syntax import (
    Directive,
    EnumValue,
    Field,
    Location,
    ObjectValue,
    Operation,
    Variable,
)

Resolver = Callable[[Any, dict[str, Any], Any], Any]  # (parent value, arguments, context) -> value
ABSENT = object()  # an argument nobody gave, with no default: resolvers do not see it
STRINGS = {"String", "DateTime", "URI", "HTML", "GitObjectID", "GitTimestamp"}  # GitHub's string-valued scalars
SCALARS = STRINGS | {"Int", "Float", "Boolean", "ID"}


@dataclass(frozen=True)
class Arg:
    """A field's argument: its type, and the value it takes when not given (if any)."""

    type: str
    default: object = ABSENT


@dataclass(frozen=True)
class FieldDef:
    """A field of an object or interface type: what it returns, how, and what it takes."""

    type: str
    resolve: Resolver | None = None  # None: the parent's key or attribute of the field's name
    args: Mapping[str, Arg] = field(default_factory=dict)
    page_limit: int | None = None  # a connection: `first` or `last` is required, at most this


@dataclass(frozen=True)
class ObjectType:
    """A concrete type: every value resolves to exactly one."""

    name: str
    fields: Mapping[str, FieldDef]


@dataclass(frozen=True)
class AbstractType:
    """An interface (its `fields` shared by every possible type) or a union (no fields)."""

    name: str
    possible: tuple[str, ...]
    type_of: Callable[[Any], str]  # the object type of one value
    fields: Mapping[str, FieldDef] = field(default_factory=dict)


@dataclass(frozen=True)
class EnumType:
    """A closed set of names, written bare in documents and as strings in JSON."""

    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class InputObjectType:
    """A structured argument, `{field: value}`: its fields typed and defaulted as arguments are."""

    name: str
    fields: Mapping[str, Arg]


# What @include and @skip take.
CONDITION = FieldDef("Boolean", args={"if": Arg("Boolean!")})


class Schema:
    """Named types; `query` names the root type."""

    def __init__(self, types: Iterable[ObjectType | AbstractType | EnumType | InputObjectType], query: str = "Query"
                 ) -> None:
        self.types = {kind.name: kind for kind in types}
        self.query = query

    def field(self, type_name: str, name: str) -> FieldDef | None:
        """The field `name` of object or interface `type_name`; None when it has none."""
        kind = self.types.get(type_name)
        return kind.fields.get(name) if isinstance(kind, (ObjectType, AbstractType)) else None

    def known(self, name: str) -> bool:
        """Whether `name` is a type at all, scalars included."""
        return name in self.types or name in SCALARS

    def possible(self, name: str) -> set[str]:
        """The object types a value of type `name` can be."""
        kind = self.types.get(name)
        return set(kind.possible) if isinstance(kind, AbstractType) else {name}

    def composite(self, name: str) -> bool:
        """Whether values of type `name` have fields to select."""
        return isinstance(self.types.get(name), (ObjectType, AbstractType))


class GraphQLError(Exception):
    """A field that cannot be resolved; `type` is GitHub's error type, such as NOT_FOUND."""

    def __init__(self, message: str, type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.type = type


class Invalid(Exception):
    """An input value that does not fit its type."""


def error(message: str, loc: Location | None = None, path: list | None = None, **extra: object) -> dict:
    """One entry of a response's `errors`, laid out as GitHub lays them out."""
    entry: dict = {"message": message}
    if loc is not None:
        entry["locations"] = [{"line": loc.line, "column": loc.column}]
    if path is not None:
        entry["path"] = list(path)
    entry.update(extra)
    return entry


class Inputs:
    """The variables of one request and the arguments built from them, as the schema types them."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.variables: dict[str, object] = {}

    def take_variables(self, operation: Operation, given: dict) -> list[dict]:
        """Coerces the operation's variables from `given`; the errors, if any."""
        errors = []
        for definition in operation.variables:
            name, type_ = definition.name, definition.type
            if not self.schema.known(type_.strip("[]!")):
                errors.append(error(f"{type_.strip('[]!')} isn't a defined input type (on ${name})", definition.loc))
                continue
            try:
                if name in given:
                    self.variables[name] = self.coerce(given[name], type_, literal=False)
                elif definition.has_default:
                    self.variables[name] = self.coerce(definition.default, type_, literal=True)
                elif type_.endswith("!"):
                    raise Invalid
            except Invalid:
                message = f"Variable ${name} of type {type_} was provided invalid value"
                errors.append(error(message, definition.loc, extensions={"value": given.get(name)}))
        return errors

    def arguments(self, definition: FieldDef, node: Field | Directive, on_variable: Callable | None = None) -> dict:
        """The arguments a resolver receives: the given ones coerced, defaults for the rest."""
        args = {}
        given = dict(node.args)
        for name, arg in definition.args.items():
            value = self.coerce(given[name], arg.type, True, on_variable) if name in given else ABSENT
            value = arg.default if value is ABSENT else value
            if value is not ABSENT:
                args[name] = value
        return args

    def coerce(self, value: object, type_: str, literal: bool, on_variable: Callable | None = None) -> object:
        """`value` (an AST literal, or JSON from the variables) as `type_` wants it; Invalid if not."""
        if literal and isinstance(value, Variable):
            if on_variable is not None:
                on_variable(value.name, type_)
            # Already coerced to its declared type; validation checks that type against this one.
            return self.variables.get(value.name, ABSENT)
        if value is None:
            if type_.endswith("!"):
                raise Invalid
            return None
        type_ = type_.removesuffix("!")
        if type_.startswith("["):
            # A single value where a list is wanted counts as a list of one (the spec's rule).
            items = value if isinstance(value, tuple if literal else list) else [value]
            coerced = [self.coerce(item, type_[1:-1], literal, on_variable) for item in items]
            return [None if item is ABSENT else item for item in coerced]
        kind = self.schema.types.get(type_)
        if isinstance(kind, InputObjectType):
            return self._object(value, kind, literal, on_variable)
        return self._leaf(value, type_, literal)

    def _object(self, value: object, kind: InputObjectType, literal: bool, on_variable: Callable | None) -> dict:
        """An input object: a literal `{...}` in a document, a JSON object in the variables."""
        if literal and isinstance(value, ObjectValue):
            given = dict(value.fields)
        elif not literal and isinstance(value, dict):
            given = value
        else:
            raise Invalid
        if set(given) - set(kind.fields):
            raise Invalid  # a field the type does not have
        coerced = {}
        for name, arg in kind.fields.items():
            item = self.coerce(given[name], arg.type, literal, on_variable) if name in given else ABSENT
            item = arg.default if item is ABSENT else item
            if name not in given and item is ABSENT and arg.type.endswith("!"):
                raise Invalid  # a required field missing (a variable's type is validation's business)
            if item is not ABSENT:
                coerced[name] = item
        return coerced

    def _leaf(self, value: object, type_: str, literal: bool) -> object:
        kind = self.schema.types.get(type_)
        if isinstance(kind, EnumType):
            # Enums are bare names in a document and strings in JSON variables.
            name = value.name if literal and isinstance(value, EnumValue) else None
            name = value if not literal and isinstance(value, str) else name
            if name not in kind.values:
                raise Invalid
            return name
        if isinstance(value, bool):
            if type_ != "Boolean":
                raise Invalid
            return value
        if type_ == "Int" and isinstance(value, int) and -(2**31) <= value < 2**31:
            return value
        if type_ == "Float" and isinstance(value, (int, float)):
            return float(value)
        if type_ == "ID" and isinstance(value, (int, str)):
            return str(value)
        if type_ in STRINGS and isinstance(value, str):
            return value
        raise Invalid
