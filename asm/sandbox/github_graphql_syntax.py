"""GraphQL documents as data: a lexer and a recursive-descent parser for executable documents.

Covers what clients send GitHub: operations with typed variables and defaults, fields with
aliases and arguments, every literal (numbers, strings and block strings, booleans, null, enums,
lists, input objects), directives, inline fragments and named fragments with their spreads.
A syntax error raises `GraphQLSyntaxError` worded as GitHub's server (graphql-ruby) words it.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from typing import NoReturn

_TOKENS = re.compile(
    r"""
      (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
    | (?P<spread>\.\.\.)
    | (?P<punct>[!$&():=@\[\]{}|])
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    | (?P<number>-?(?:0|[1-9][0-9]*)(?P<fraction>\.[0-9]+)?(?P<exponent>[eE][+-]?[0-9]+)?)
    | (?P<block>\"\"\"(?:\\\"\"\"|[\s\S])*?\"\"\")
    | (?P<string>"(?:[^"\\\n\r]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*")
    """,
    re.VERBOSE,
)
# graphql-ruby's token names, which its parse errors quote.
_PUNCT_NAMES = {
    "!": "BANG", "$": "VAR_SIGN", "&": "AMP", "(": "LPAREN", ")": "RPAREN", ":": "COLON", "=": "EQUALS",
    "@": "DIR_SIGN", "[": "LBRACKET", "]": "RBRACKET", "{": "LCURLY", "}": "RCURLY", "|": "PIPE",
    "...": "ELLIPSIS",
}


class GraphQLSyntaxError(Exception):
    """The document is not GraphQL; `line` and `column` point at the offending token."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class Location:
    """Where a node starts in the source, both counted from 1."""

    line: int
    column: int


@dataclass(frozen=True)
class Variable:
    """`$name` in a value position."""

    name: str


@dataclass(frozen=True)
class EnumValue:
    """A bare name in a value position, such as `LABELED_EVENT`."""

    name: str


@dataclass(frozen=True)
class ObjectValue:
    """An input object literal, `{key: value}`, its fields in order."""

    fields: tuple[tuple[str, object], ...]


# A value is a Variable, EnumValue, ObjectValue, a tuple of values (a list), or int, float,
# str, bool or None for the other literals.
Args = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Directive:
    name: str
    args: Args
    loc: Location


@dataclass(frozen=True)
class Field:
    """A field selection: `alias: name(args) @directives { selections }`."""

    name: str
    alias: str | None
    args: Args
    directives: tuple[Directive, ...]
    selections: tuple[Selection, ...]
    loc: Location

    @property
    def key(self) -> str:
        """Where the field's value goes in the response."""
        return self.alias or self.name


@dataclass(frozen=True)
class InlineFragment:
    """`... on Type { selections }`; without `on Type`, it only groups directives."""

    type_condition: str | None
    directives: tuple[Directive, ...]
    selections: tuple[Selection, ...]
    loc: Location


@dataclass(frozen=True)
class FragmentSpread:
    name: str
    directives: tuple[Directive, ...]
    loc: Location


Selection = Field | InlineFragment | FragmentSpread


@dataclass(frozen=True)
class VariableDefinition:
    name: str
    type: str  # in GraphQL notation, e.g. "[String!]!"
    default: object
    has_default: bool
    loc: Location


@dataclass(frozen=True)
class Operation:
    kind: str  # query, mutation or subscription
    name: str | None
    variables: tuple[VariableDefinition, ...]
    directives: tuple[Directive, ...]
    selections: tuple[Selection, ...]
    loc: Location


@dataclass(frozen=True)
class FragmentDefinition:
    name: str
    type_condition: str
    directives: tuple[Directive, ...]
    selections: tuple[Selection, ...]
    loc: Location


@dataclass(frozen=True)
class Document:
    """Everything a request's `query` defines: operations and named fragments."""

    operations: tuple[Operation, ...]
    fragments: tuple[FragmentDefinition, ...]


@dataclass(frozen=True)
class _Token:
    kind: str  # punct, spread, name, int, float, string, end
    text: str
    value: object
    loc: Location


def parse(source: str) -> Document:
    """The document `source` holds; GraphQLSyntaxError when it is not valid GraphQL."""
    return _Parser(_tokens(source)).document()


def _tokens(source: str) -> list[_Token]:
    starts = [0] + [match.end() for match in re.finditer(r"\r\n|\r|\n", source)]

    def where(offset: int) -> Location:
        line = bisect.bisect_right(starts, offset)
        return Location(line, offset - starts[line - 1] + 1)

    tokens, offset = [], 0
    while offset < len(source):
        match = _TOKENS.match(source, offset)
        if match is None or match.end() == offset:
            loc = where(offset)
            raise GraphQLSyntaxError(
                f'Parse error on "{source[offset]}" (UNKNOWN_CHAR) at [{loc.line}, {loc.column}]', loc.line, loc.column
            )
        kind, text = match.lastgroup, match.group()
        assert kind is not None  # every alternative of _TOKENS is a named group
        if kind in ("fraction", "exponent"):
            kind = "number"
        if kind != "skip":
            tokens.append(_token(kind, text, match, where(offset)))
        offset = match.end()
    tokens.append(_Token("end", "", None, where(len(source))))
    return tokens


def _token(kind: str, text: str, match: re.Match[str], loc: Location) -> _Token:
    if kind == "number":
        is_float = match.group("fraction") or match.group("exponent")
        return _Token("float" if is_float else "int", text, float(text) if is_float else int(text), loc)
    if kind == "string":
        return _Token("string", text, json.loads(text), loc)  # JSON's escapes are GraphQL's
    if kind == "block":
        return _Token("string", text, _block_string(text[3:-3]), loc)
    return _Token(kind, text, text, loc)


def _block_string(raw: str) -> str:
    """A block string's value: common indentation and blank edge lines removed (the spec's rule)."""
    lines = raw.replace('\\"""', '"""').splitlines()
    indents = [len(line) - len(line.lstrip(" \t")) for line in lines[1:] if line.strip(" \t")]
    common = min(indents, default=0)
    lines = lines[:1] + [line[common:] for line in lines[1:]]
    while lines and not lines[0].strip(" \t"):
        lines.pop(0)
    while lines and not lines[-1].strip(" \t"):
        lines.pop()
    return "\n".join(lines)


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.at = 0

    # -- token handling ------------------------------------------------------------------------

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def peek(self, text: str) -> bool:
        return self.token.kind in ("punct", "spread", "name") and self.token.text == text

    def take(self) -> _Token:
        token = self.token
        self.at += 1
        return token

    def skip(self, text: str) -> bool:
        if self.peek(text):
            self.at += 1
            return True
        return False

    def expect(self, text: str) -> _Token:
        if not self.peek(text):
            self.fail()
        return self.take()

    def name(self) -> str:
        if self.token.kind != "name":
            self.fail()
        return self.take().text

    def fail(self) -> NoReturn:
        token = self.token
        if token.kind == "end":
            raise GraphQLSyntaxError("Unexpected end of document", token.loc.line, token.loc.column)
        kind = _PUNCT_NAMES.get(token.text) or {"name": "IDENTIFIER", "string": "STRING"}.get(token.kind)
        kind = kind or token.kind.upper()
        if token.kind == "name" and token.text in ("query", "mutation", "subscription", "fragment", "on",
                                                   "true", "false", "null"):
            kind = token.text.upper()
        text = json.dumps(token.value) if token.kind == "string" else f'"{token.text}"'
        message = f"Parse error on {text} ({kind}) at [{token.loc.line}, {token.loc.column}]"
        raise GraphQLSyntaxError(message, token.loc.line, token.loc.column)

    # -- definitions ---------------------------------------------------------------------------

    def document(self) -> Document:
        operations, fragments = [], []
        while self.token.kind != "end":
            if self.peek("{"):
                loc = self.token.loc
                operations.append(Operation("query", None, (), (), self.selection_set(), loc))
            elif self.peek("fragment"):
                fragments.append(self.fragment_definition())
            elif self.token.kind == "name" and self.token.text in ("query", "mutation", "subscription"):
                operations.append(self.operation())
            else:
                self.fail()
        if not operations and not fragments:
            self.fail()
        return Document(tuple(operations), tuple(fragments))

    def operation(self) -> Operation:
        start = self.take()
        name = self.name() if self.token.kind == "name" else None
        variables = []
        if self.skip("("):
            while not self.skip(")"):
                variables.append(self.variable_definition())
        return Operation(start.text, name, tuple(variables), self.directives(), self.selection_set(), start.loc)

    def variable_definition(self) -> VariableDefinition:
        loc = self.expect("$").loc
        name = self.name()
        self.expect(":")
        type_ = self.type_reference()
        has_default = self.skip("=")
        default = self.value(const=True) if has_default else None
        self.directives()
        return VariableDefinition(name, type_, default, has_default, loc)

    def type_reference(self) -> str:
        if self.skip("["):
            inner = self.type_reference()
            self.expect("]")
            text = f"[{inner}]"
        else:
            text = self.name()
        return text + "!" if self.skip("!") else text

    def fragment_definition(self) -> FragmentDefinition:
        loc = self.expect("fragment").loc
        if self.peek("on"):
            self.fail()
        name = self.name()
        self.expect("on")
        condition = self.name()
        return FragmentDefinition(name, condition, self.directives(), self.selection_set(), loc)

    # -- selections ----------------------------------------------------------------------------

    def selection_set(self) -> tuple[Selection, ...]:
        self.expect("{")
        selections = [self.selection()]
        while not self.skip("}"):
            selections.append(self.selection())
        return tuple(selections)

    def selection(self) -> Selection:
        if self.token.kind == "spread":
            loc = self.take().loc
            if self.skip("on"):
                condition = self.name()
                return InlineFragment(condition, self.directives(), self.selection_set(), loc)
            if self.token.kind == "name":
                return FragmentSpread(self.name(), self.directives(), loc)
            return InlineFragment(None, self.directives(), self.selection_set(), loc)
        loc = self.token.loc
        alias, name = None, self.name()
        if self.skip(":"):
            alias, name = name, self.name()
        args = self.arguments(const=False)
        directives = self.directives()
        selections = self.selection_set() if self.peek("{") else ()
        return Field(name, alias, args, directives, selections, loc)

    def arguments(self, const: bool) -> Args:
        args = []
        if self.skip("("):
            while not self.skip(")"):
                name = self.name()
                self.expect(":")
                args.append((name, self.value(const)))
            if not args:
                self.fail()
        return tuple(args)

    def directives(self) -> tuple[Directive, ...]:
        found = []
        while self.peek("@"):
            loc = self.take().loc
            found.append(Directive(self.name(), self.arguments(const=False), loc))
        return tuple(found)

    # -- values --------------------------------------------------------------------------------

    def value(self, const: bool) -> object:
        token = self.token
        if token.kind in ("int", "float", "string"):
            return self.take().value
        if self.peek("$") and not const:
            self.take()
            return Variable(self.name())
        if self.skip("["):
            items = []
            while not self.skip("]"):
                items.append(self.value(const))
            return tuple(items)
        if self.skip("{"):
            fields = []
            while not self.skip("}"):
                name = self.name()
                self.expect(":")
                fields.append((name, self.value(const)))
            return ObjectValue(tuple(fields))
        if token.kind == "name":
            self.take()
            return {"true": True, "false": False, "null": None}.get(token.text, EnumValue(token.text))
        self.fail()
