"""The sample repository of the sandbox (`textkit`, a tiny string library) and its issues.

Each issue asks for one function in a module of its own, so parallel pull requests never touch
the same file. The scripted model knows how to solve each one (`SOLUTIONS`); its tests use only
unittest, so the demo needs nothing beyond Python.
"""

from __future__ import annotations

from dataclasses import dataclass

README = """# textkit

Small, dependency-free string helpers. Run the tests with `python -m unittest discover -s tests`.
"""

FILES: dict[str, str] = {
    "README.md": README,
    ".gitignore": "__pycache__/\n*.pyc\n.pytest_cache/\n",
    "textkit/__init__.py": '"""textkit: small string helpers, one module per helper."""\n',
    "textkit/spaces.py": (
        '"""Whitespace helpers."""\n\n\n'
        "def normalize_whitespace(text: str) -> str:\n"
        '    """Collapse every run of whitespace to one space and strip the ends."""\n'
        '    return " ".join(text.split())\n'
    ),
    "tests/__init__.py": "",
    "tests/test_spaces.py": (
        "import unittest\n\nfrom textkit.spaces import normalize_whitespace\n\n\n"
        "class NormalizeWhitespaceTest(unittest.TestCase):\n"
        "    def test_collapses_runs(self):\n"
        '        self.assertEqual(normalize_whitespace("  a \\t b\\n c "), "a b c")\n'
    ),
}


@dataclass(frozen=True)
class Solution:
    """One sample issue and what solves it: a module, its tests."""

    function: str
    title: str
    body: str
    code: str
    test: str

    @property
    def module_path(self) -> str:
        return f"textkit/{self.function}.py"

    @property
    def test_path(self) -> str:
        return f"tests/test_{self.function}.py"


def _solution(function: str, title: str, body: str, code: str, cases: list[tuple[str, str]]) -> Solution:
    lines = [f"import unittest\n\nfrom textkit.{function} import {function}\n\n\n",
             f"class {function.title().replace('_', '')}Test(unittest.TestCase):\n"]
    for index, (call, expected) in enumerate(cases):
        lines.append(f"    def test_case_{index}(self):\n        self.assertEqual({call}, {expected})\n\n")
    return Solution(function, title, body, code, "".join(lines).rstrip() + "\n")


SOLUTIONS: tuple[Solution, ...] = (
    _solution(
        "slugify", "Add `slugify` for URL slugs",
        "Add `textkit.slugify.slugify(text)`: lowercase, runs of non-alphanumerics become one `-`, no leading "
        "or trailing `-`.",
        'import re\n\n\ndef slugify(text: str) -> str:\n    """A URL slug: lowercase words joined by single dashes."""\n'
        '    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")\n',
        [('slugify("Hello, World!")', '"hello-world"'), ('slugify("  --a  b--  ")', '"a-b"'), ('slugify("")', '""')],
    ),
    _solution(
        "word_count", "Add `word_count`",
        "Add `textkit.word_count.word_count(text)` returning how many whitespace-separated words text has.",
        'def word_count(text: str) -> int:\n    """How many whitespace-separated words text has."""\n'
        "    return len(text.split())\n",
        [('word_count("one two  three")', "3"), ('word_count("")', "0"), ('word_count(" \\n ")', "0")],
    ),
    _solution(
        "is_palindrome", "Add `is_palindrome`",
        "Add `textkit.is_palindrome.is_palindrome(text)`: true when the letters and digits read the same "
        "backwards, ignoring case.",
        'def is_palindrome(text: str) -> bool:\n    """True when text\'s letters and digits read the same backwards."""\n'
        "    kept = [c.lower() for c in text if c.isalnum()]\n    return kept == kept[::-1]\n",
        [('is_palindrome("A man, a plan, a canal: Panama")', "True"), ('is_palindrome("asm")', "False")],
    ),
    _solution(
        "reverse_words", "Add `reverse_words`",
        "Add `textkit.reverse_words.reverse_words(text)`: the words of text in reverse order, single-spaced.",
        'def reverse_words(text: str) -> str:\n    """The words of text in reverse order, joined by single spaces."""\n'
        '    return " ".join(reversed(text.split()))\n',
        [('reverse_words("a b  c")', '"c b a"'), ('reverse_words("")', '""')],
    ),
    _solution(
        "truncate", "Add `truncate` with an ellipsis",
        "Add `textkit.truncate.truncate(text, width)`: text unchanged when it fits in width characters, "
        "else cut so that the result, ending in `…`, is width characters long.",
        'def truncate(text: str, width: int) -> str:\n    """Text cut to width characters, ending in an ellipsis when cut."""\n'
        "    if width < 1:\n        raise ValueError(\"width must be at least 1\")\n"
        '    return text if len(text) <= width else text[: width - 1] + "…"\n',
        [('truncate("hello", 10)', '"hello"'), ('truncate("hello world", 5)', '"hell…"')],
    ),
    _solution(
        "count_vowels", "Add `count_vowels`",
        "Add `textkit.count_vowels.count_vowels(text)`: how many of a, e, i, o, u (any case) text holds.",
        'def count_vowels(text: str) -> int:\n    """How many vowels (a, e, i, o, u, any case) text holds."""\n'
        '    return sum(1 for c in text.lower() if c in "aeiou")\n',
        [('count_vowels("Education")', "5"), ('count_vowels("xyz")', "0")],
    ),
    _solution(
        "snake_case", "Add `snake_case`",
        "Add `textkit.snake_case.snake_case(text)`: `HelloWorld` and `hello world` both become `hello_world`.",
        'import re\n\n\ndef snake_case(text: str) -> str:\n    """text in snake_case."""\n'
        '    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\\1 \\2", text)\n'
        '    return "_".join(word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word)\n',
        [('snake_case("HelloWorld")', '"hello_world"'), ('snake_case("hello  world!")', '"hello_world"')],
    ),
    _solution(
        "camel_case", "Add `camel_case`",
        "Add `textkit.camel_case.camel_case(text)`: `hello world` becomes `helloWorld`.",
        'import re\n\n\ndef camel_case(text: str) -> str:\n    """text in camelCase."""\n'
        '    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]\n'
        '    return "".join([words[0].lower(), *(w.capitalize() for w in words[1:])]) if words else ""\n',
        [('camel_case("hello world")', '"helloWorld"'), ('camel_case("")', '""')],
    ),
    _solution(
        "remove_punctuation", "Add `remove_punctuation`",
        "Add `textkit.remove_punctuation.remove_punctuation(text)`: text without ASCII punctuation.",
        'import string\n\n\ndef remove_punctuation(text: str) -> str:\n    """text without ASCII punctuation."""\n'
        '    return text.translate(str.maketrans("", "", string.punctuation))\n',
        [('remove_punctuation("a, b. c!")', '"a b c"')],
    ),
    _solution(
        "char_frequency", "Add `char_frequency`",
        "Add `textkit.char_frequency.char_frequency(text)`: a dict of each non-space character to its count.",
        'from collections import Counter\n\n\ndef char_frequency(text: str) -> dict[str, int]:\n'
        '    """Each non-space character of text, with how often it occurs."""\n'
        "    return dict(Counter(c for c in text if not c.isspace()))\n",
        [('char_frequency("a ab")', '{"a": 2, "b": 1}')],
    ),
    _solution(
        "capitalize_words", "Add `capitalize_words`",
        "Add `textkit.capitalize_words.capitalize_words(text)`: every word starts with a capital letter.",
        'def capitalize_words(text: str) -> str:\n    """text with every word capitalised, single-spaced."""\n'
        '    return " ".join(word.capitalize() for word in text.split())\n',
        [('capitalize_words("hello big world")', '"Hello Big World"')],
    ),
    _solution(
        "initials", "Add `initials`",
        "Add `textkit.initials.initials(name)`: the upper-case first letters of each word, `Ada Lovelace` -> `AL`.",
        'def initials(name: str) -> str:\n    """The upper-case initials of a name."""\n'
        '    return "".join(word[0].upper() for word in name.split())\n',
        [('initials("Ada Lovelace")', '"AL"'), ('initials("")', '""')],
    ),
)

TEST_COMMAND = "python -m unittest discover -s tests -t . -q"


def solution_for(title: str) -> Solution | None:
    """The solution of the sample issue with this title (or naming the same function)."""
    for solution in SOLUTIONS:
        if solution.title == title or f"`{solution.function}`" in title:
            return solution
    return None


def sample_issues(count: int) -> list[Solution]:
    """The first `count` sample issues; more than the catalogue holds is an error."""
    if not 1 <= count <= len(SOLUTIONS):
        raise ValueError(f"the sample repository has 1 to {len(SOLUTIONS)} issues, not {count}")
    return list(SOLUTIONS[:count])
