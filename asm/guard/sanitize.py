"""What of an issue may reach the model: what a person reading it on GitHub sees, nothing hidden.

Issue text is hostile. Whatever GitHub does not show (HTML comments, invisible characters, alt
text, titles, hidden elements, attributes, fence info strings, reference definitions) is removed,
so a hidden instruction never reaches a role. When unsure, this module drops: losing a visible
word costs little, passing an invisible instruction costs the repository.

Two readers stand behind GitHub's page, a strict Markdown parser and a lenient browser, and a
span may be text to one and markup to the other; where they may differ, both readings' hidden
parts go. Code is kept verbatim only where it is certainly code: a top-level fenced block that
every possible reading of the lines above agrees on, and code spans on lines whose backticks all
pair up with nothing else crossing them.

One module on purpose (past the usual size): every step shares the same view of tags and code.
"""

from __future__ import annotations

import bisect
import functools
import html
import html.entities
import re
import unicodedata
from collections.abc import Callable

__all__ = ["sanitize", "strip_invisible", "is_invisible", "style_hides", "WITHHELD"]

WITHHELD = "[issue text withheld: it nests hidden markup too deeply to show safely]"
MAX_ROUNDS = 8  # honest text settles in two; each extra round undoes one level of deliberate nesting

# Unicode's Default_Ignorable_Code_Point set (not in unicodedata) and glyphs that render blank.
_BLANK_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x16FE4, 0x16FE4), (0x1BCA0, 0x1BCA3), (0x1D159, 0x1D159), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp"})


def is_invisible(char: str) -> bool:
    """True for a character that renders as nothing (tab and newline excepted)."""
    if char in "\t\n":
        return False
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _BLANK_RANGES)


class _Invisibles(dict[int, int | None]):
    """A str.translate table that learns each code point once: None deletes it."""

    def __missing__(self, code: int) -> int | None:
        kept = None if is_invisible(chr(code)) else code
        self[code] = kept
        return kept


_TABLE = _Invisibles()


def strip_invisible(text: str) -> str:
    """Text without zero-width, bidi, tag, control, private-use, unassigned or blank-glyph characters."""
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_TABLE)


def sanitize(text: str) -> str:
    """The issue text a person sees on GitHub, Markdown kept, everything hidden removed."""
    held, code = _protect_code(text)
    settled = _settle(held)
    if settled is not None:
        settled = _settle(_inline_references(settled))
    if settled is None:
        return WITHHELD
    return _PLACEHOLDER.sub(lambda m: code[int(m.group(1))], settled)


def _settle(text: str) -> str | None:
    """Remove until nothing changes (a removal may join the halves of a new hidden construct)."""
    for _ in range(MAX_ROUNDS):
        cleaned = _strip_invisible_references(_strip_link_titles(_strip_image_text(_strip_html(text))))
        if cleaned == text:
            return text
        text = cleaned
    return None


# ---------------------------------------------------------------- code a person sees as written

# Private-use characters never survive strip_invisible, so no issue can forge a placeholder.
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_FENCE = re.compile(r"( *)(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_CONTAINER = re.compile(r"[ \t]*(?:(?:>|[-+*]|\d{1,9}[.)])[ \t]*)*")
_RAW_BLOCK = re.compile(r"<(?:script|pre|style)(?:[\s>]|$)", re.I)
_RAW_BLOCK_END = re.compile(r"</(?:script|pre|style|textarea)>", re.I)
_BLANK_LINE_ENDS = "blank line"
_End = str | re.Pattern[str] | None
# Tags that open an HTML block (CommonMark's list); the unsure ones differ between its versions.
_BLOCK_TAGS = frozenset("""
    address article aside base basefont blockquote body caption center col colgroup dd details dialog dir
    div dl dt fieldset figcaption figure footer form frame frameset h1 h2 h3 h4 h5 h6 head header hr html
    iframe legend li link main menu menuitem nav noframes ol optgroup option p param section summary table
    tbody td tfoot th thead title tr track ul
""".split())
_BLOCK_TAGS_UNSURE = frozenset({"source", "search", "textarea"})
_State = tuple[str | None, _End]  # (the open fence, or where the open HTML block ends) in one reading
_NORMAL: _State = (None, None)
MAX_READINGS = 16  # past this many ways to read the lines so far, no code is taken as certain


def _protect_code(text: str) -> tuple[str, list[str]]:
    """Swap code a person surely sees as written for placeholders; strip invisible characters everywhere.

    The block structure is read before invisible characters go: GitHub sees them, and a line
    that only looks like a fence without them is no fence. A fence counts only when every
    possible reading of the lines before it (an HTML block or not) agrees it opens one.
    """
    code: list[str] = []

    def hold(snippet: str) -> str:
        code.append(strip_invisible(snippet))
        return f"\ue000{len(code) - 1}\ue001"

    prose: list[str]
    lines, out, prose = text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), [], []
    readings: set[_State] | None = {_NORMAL}
    loose: _End = None  # HTML blocks inside lists and quotes too: where code spans are not sure
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.fullmatch(line)
        if readings == {_NORMAL} and fence and _opens_fence(fence, max_indent=1):
            out += _code_spans(prose, hold)
            prose = []
            end = _fence_end(lines, i, fence.group(2))
            out.append(hold(_fenced_block(fence, lines[i + 1:end])))
            i, loose = end, None
            continue
        roles, readings = _read(readings, line)
        if loose is None:
            loose, searched = _html_block_start(line)
        else:
            searched = line
        if roles == {"prose"} and loose is None and line.strip():
            prose.append(line)
        else:
            out += _code_spans(prose, hold)
            prose = []
            out.append(strip_invisible(line))
        loose = _html_block_continues(loose, searched)
        i += 1
    out += _code_spans(prose, hold)
    return "\n".join(out), code


def _read(readings: set[_State] | None, line: str) -> tuple[set[str], set[_State] | None]:
    """What the line is in each reading ("prose", "code", "html"), and the readings after it."""
    if readings is None:
        return {"unsure"}, None
    roles, after = set(), set()
    for fence, in_html in readings:
        if fence:
            close = _FENCE_CLOSE.fullmatch(line)
            done = close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence)
            roles.add("code")
            after.add(_NORMAL if done else (fence, None))
        elif in_html is not None:
            roles.add("html")
            after.add((None, _html_block_continues(in_html, line)))
        elif (opened := _FENCE.fullmatch(line)) and _opens_fence(opened, max_indent=3):
            roles.add("code")
            after.add((opened.group(2), None))
            if len(opened.group(1)) > 1:  # 2-3 spaces in: maybe a list item's own fence
                after.add(_NORMAL)
        elif starts := _html_starts(line):
            ends, maybe = starts
            roles.add("html")
            rest = line[line.find("<") + 2:]  # where a marker that ends the block may already stand
            after.update((None, end if end == _BLANK_LINE_ENDS else _html_block_continues(end, rest)) for end in ends)
            if maybe:
                after.add(_NORMAL)
        else:
            roles.add("prose")
            after.add(_NORMAL)
    return roles, (after if len(after) <= MAX_READINGS else None)


def _opens_fence(fence: re.Match[str], max_indent: int) -> bool:
    return len(fence.group(1)) <= max_indent and not (fence.group(2)[0] == "`" and "`" in fence.group(3))


def _html_starts(line: str) -> tuple[list[_End], bool] | None:
    """Where a top-level HTML block that this line may open ends, and whether it may open none."""
    indent = len(line) - len(line.lstrip(" "))
    if indent > 3 or line[indent:indent + 1] != "<":
        return None
    rest, maybe = line[indent:], indent > 1  # 2-3 spaces in: maybe inside a list item
    if _RAW_BLOCK.match(rest):
        return [_RAW_BLOCK_END], maybe
    for start, end in (("<!--", "-->"), ("<?", "?>"), ("<![CDATA[", "]]>")):
        if rest.startswith(start):
            return [end], maybe
    if re.match(r"<![A-Za-z]", rest):
        return [">"], maybe
    tag = re.match(r"</?([A-Za-z][A-Za-z0-9-]*)(?:[\s>]|/>|$)", rest)
    name = tag.group(1).lower() if tag else ""
    if name in _BLOCK_TAGS:
        return [_BLANK_LINE_ENDS], maybe
    if name in _BLOCK_TAGS_UNSURE:
        return [_BLANK_LINE_ENDS, _RAW_BLOCK_END], True
    if _TAG.fullmatch(rest.rstrip()):  # a tag alone on its line, unless it continues a paragraph
        return [_BLANK_LINE_ENDS], True
    return None


def _fence_end(lines: list[str], start: int, opener: str) -> int:
    for j in range(start + 1, len(lines)):
        close = _FENCE_CLOSE.fullmatch(lines[j])
        if close and close.group(1)[0] == opener[0] and len(close.group(1)) >= len(opener):
            return j + 1
    return len(lines)  # an unclosed top-level fence runs to the end of the issue


def _html_block_start(line: str) -> tuple[_End, str]:
    """Where an HTML block that may start on this line, in a list or quote too, ends; and the part
    of the line after its opening, where that end may already be."""
    container = _CONTAINER.match(line)
    assert container is not None  # the pattern matches the empty string too
    rest = line[container.end():]
    if not rest.startswith("<"):
        return None, line
    if _RAW_BLOCK.match(rest):
        return _RAW_BLOCK_END, rest
    for start, end in (("<!--", "-->"), ("<?", "?>"), ("<![CDATA[", "]]>"), ("<!", ">")):
        if rest.startswith(start):
            return end, rest[2:]
    return (_BLANK_LINE_ENDS if re.match(r"</?[A-Za-z]", rest) else None), rest


def _html_block_continues(end: _End, line: str) -> _End:
    if end is None or (end == _BLANK_LINE_ENDS and not line.strip()):
        return None
    if isinstance(end, re.Pattern):
        return None if end.search(line) else end
    return None if end != _BLANK_LINE_ENDS and end in line else end


_LANGUAGE = re.compile(r"[\w+#.-]{1,32}")


def _fenced_block(fence: re.Match[str], body: list[str]) -> str:
    """A fenced block as shown: its info string is a hidden class name, so only a plain language word stays."""
    words = fence.group(3).split()
    language = words[0] if words and _LANGUAGE.fullmatch(words[0]) else ""
    return "\n".join([fence.group(1) + fence.group(2) + language, *_drop_diagram_comments(language, body)])


def _drop_diagram_comments(language: str, block: list[str]) -> list[str]:
    """A mermaid or math block renders as a picture: its comments and accessibility text never show."""
    if language.lower() == "mermaid":
        kept, skipping = [], False
        for line in block:
            bare = line.strip()
            if skipping:
                skipping = "}" not in bare
            elif re.match(r"accDescr\s*\{", bare):
                skipping = "}" not in bare
            elif not (bare.startswith("%%") or re.match(r"acc(?:Title|Descr)\s*:", bare)):
                kept.append(line)
        return kept
    if language.lower() == "math":
        return [re.sub(r"(?<!\\)%.*", "", line) for line in block]
    return block


_TABLE_DELIMITER = re.compile(r"^[ \t>]*(?:[-+*][ \t]+)?\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$", re.M)
_DEFINITION_LINE = re.compile(r"^[ \t>]*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+)*\[[^\]]*\]:", re.M)
_INLINE_SPECIAL = re.compile(r"[\\`<]|\]\(")
_RUN = re.compile(r"`+")
_QUOTED_TO_GT = re.compile(r"""<(?:[^>"']++|"[^"]*+"|'[^']*+')*+>""")


def _code_spans(lines: list[str], hold: Callable[[str], str]) -> list[str]:
    """Hold the code spans of one paragraph, if telling them from HTML and links is certain.

    Certain means: every backtick run pairs up within its line, and no tag, comment or link tail
    crosses a line or holds a backtick. Then the line's pairing is GitHub's whatever the paragraph
    boundaries, and a span found here is a span there. Tables and reference definitions never are.
    """
    chunk = "\n".join(lines)
    held = [_line_spans(line) for line in lines]
    if _TABLE_DELIMITER.search(chunk) or _DEFINITION_LINE.search(chunk) or None in held:
        return [strip_invisible(line) for line in lines]
    out = []
    for line, spans in zip(lines, held, strict=True):
        assert spans is not None  # None in held returned above
        pieces, at = [], 0
        for start, end in spans:
            pieces += [strip_invisible(line[at:start]), hold(line[start:end])]
            at = end
        out.append("".join(pieces) + strip_invisible(line[at:]))
    return out


def _line_spans(line: str) -> list[tuple[int, int]] | None:
    spans, i = [], 0
    autolinked: list[tuple[int, int]] | None = None  # found at the line's first backtick, once
    while m := _INLINE_SPECIAL.search(line, i):
        i, char = m.start(), m.group()
        if char == "\\":
            i += 2
        elif char == "`":
            run_match = _RUN.match(line, i)
            assert run_match is not None  # a backtick is at i
            run = len(run_match.group())
            if autolinked is None:
                autolinked = _autolinked(line)
            if _reaches(autolinked, i):
                return None
            j = i + run
            while (close := _RUN.search(line, j)) and len(close.group()) != run:
                j = close.end()
            if close is None:
                return None  # an unpaired run may pair across lines: not certain
            spans.append((i, close.end()))
            i = close.end()
        elif char == "<":
            if not (i + 1 < len(line) and (line[i + 1].isascii() and line[i + 1].isalpha() or line[i + 1] in "/!?")):
                i += 1
                continue
            if line.startswith("<!--", i):
                end = line.find("-->", i + 4)
                end = -1 if end == -1 else end + 3
            else:
                tag = _QUOTED_TO_GT.match(line, i)
                end = tag.end() if tag else -1
            if end == -1 or "`" in line[i:end]:
                return None  # a tag or comment that crosses the line, or holds a backtick
            i = end
        else:  # "](": a link's destination and title are never code
            paren_end = _paren_end(line, i + 2)
            if paren_end is None or "`" in line[i:paren_end]:
                return None
            i = paren_end
    return spans


_LINK_MARK = re.compile(r"www\.|://|@", re.I)
_BLANK = re.compile(r"[ \t]")


def _autolinked(line: str) -> list[tuple[int, int]]:
    """Where GitHub would link a bare URL or address: from just after its first `www.`, `://` or `@` to the
    next space or tab, backticks and all. Found in one pass: looking back from every backtick run for
    its word's start would cost the line's length per run."""
    zones: list[tuple[int, int]] = []
    for mark in _LINK_MARK.finditer(line):
        if zones and mark.start() < zones[-1][1]:
            continue  # within a word already linked
        blank = _BLANK.search(line, mark.end())
        zones.append((mark.end(), blank.start() if blank else len(line)))
    return zones


def _reaches(zones: list[tuple[int, int]], at: int) -> bool:
    """Whether a backtick at `at` is inside a linked word, after its mark."""
    index = bisect.bisect_right(zones, at, key=lambda zone: zone[0]) - 1
    return index >= 0 and zones[index][0] <= at < zones[index][1]


# A link tail up to its closing ')': quoted titles whole, one level of parentheses, escapes skipped.
_TAIL = re.compile(r"""(?:\\.|"(?:\\.|[^"\\])*+"|'(?:\\.|[^'\\])*+'|\((?:\\.|[^()\\])*+\)|[^()\\"'])*+\)""", re.S)


def _paren_end(text: str, start: int) -> int | None:
    """The index after the ')' closing a link tail that starts at `start`."""
    tail = _TAIL.match(text, start)
    return tail.end() if tail else None


# ---------------------------------------------------------------- HTML: comments, hidden elements, attributes

_TAG = re.compile(r"""
    <(/?)([A-Za-z][^\s/>]*+)
    ((?>[\s/]++|[^\s/>=][^\s/>=]*+(?>\s*+=\s*+(?>"[^"]*+"|'[^']*+'|(?!["'])[^\s>]*+))?+)*+)
    >""", re.X)
_ATTRIBUTE = re.compile(r"""([^\s/>=][^\s/>=]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")
_CROSSES_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_AUTOLINK = re.compile(r"<(?:[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*|[\w.!#$%&'*+/=?^`{|}~-]+@[A-Za-z0-9.-]+)>")

_ELEMENTS = frozenset("""
    a abbr address article aside b bdi bdo big blockquote br caption center cite code col colgroup dd
    del details dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 header hr i img ins
    input kbd li main mark nav nobr ol p picture pre q rp rt ruby s samp section small source span strike
    strong sub summary sup table tbody td textarea tfoot th thead time tr tt u ul var wbr
""".split())
_CONTENT_HIDDEN = frozenset("""
    script style template noscript noembed noframes iframe object head title datalist audio video
    canvas
""".split())
_RAW_TEXT = {name: re.compile(rf"</{name}(?=[\s/>])", re.I)  # content that is text, never tags
             for name in "script style textarea title xmp iframe noembed noframes noscript plaintext".split()}
_VOID = frozenset("area base br col embed hr img input keygen link meta param source track wbr".split())

_SIZE = re.compile(r"\s*\d{1,5}(?:\.\d+)?(?:%|px)?\s*")
_ALIGN = re.compile(r"\s*(?:left|right|center|justify|top|middle|bottom|baseline)\s*", re.I)
_LIST_TYPE = re.compile(r"\s*(?:[1aAiI]|disc|circle|square|checkbox)\s*")
# What a kept tag may keep: a URL (shown on hover), or a value too narrow to carry words.
_KEPT_ATTRIBUTES: dict[str, re.Pattern[str] | None] = {
    "href": None, "src": None, "srcset": None, "width": _SIZE, "height": _SIZE, "colspan": _SIZE,
    "rowspan": _SIZE, "span": _SIZE, "start": _SIZE, "align": _ALIGN, "valign": _ALIGN, "type": _LIST_TYPE,
}
_FLAGS = frozenset({"open", "checked", "disabled", "reversed"})


def _strip_html(text: str) -> str:
    """Drop comments, declarations, hidden elements with their content, unknown tags and all but safe attributes."""
    out, i = [], 0
    while (j := text.find("<", i)) != -1:
        out.append(text[i:j])
        i = _at_angle(text, j, out)
    out.append(text[i:])
    return "".join(out)


def _at_angle(text: str, j: int, out: list[str], cover: bool = True) -> int:
    """Handle what starts at text[j] == '<'; append what stays; return where to go on."""
    if text.startswith("<!--", j):
        end = _comment_end(text, j)
    elif text.startswith("<![CDATA[", j):
        end = _end_after(text, j, "]]>", ">")
    elif text.startswith(("<!", "<?", "</"), j) and not _TAG.match(text, j):
        # Declarations, processing instructions and bogus comments render as nothing.
        end = j + 3 if text.startswith("</>", j) else _end_after(text, j, "?>" if text[j + 1] == "?" else ">", ">")
    elif not (text[j + 1:j + 2].isascii() and text[j + 1:j + 2].isalpha()) and text[j + 1:j + 2] != "/":
        out.append("<")
        return j + 1
    elif (link := _AUTOLINK.match(text, j)) or (link := _angle_destination(text, j)):
        out.append(link.group())
        return link.end()
    else:
        return _at_tag(text, j, out, cover)
    return _cover(text, j, end) if cover else end


@functools.lru_cache(maxsize=8)
def _last_close(text: str) -> int:
    """Where the text's last `>` is (-1 for none): asked once per text, not once per `<`."""
    return text.rfind(">")


def _at_tag(text: str, j: int, out: list[str], cover: bool) -> int:
    if _last_close(text) < j:
        # Not HTML to anyone: with no `>` after it, GitHub escapes it and shows `x<y ...` as written.
        out.append("<")
        return j + 1
    tag = _TAG.match(text, j)
    if tag is None or _CROSSES_BLANK_LINE.search(tag.group(3)) or (
            "\n" in tag.group(3) and _after_container_marker(text, j)):
        # A browser drops an unterminated tag and all after it. A quote left open across a blank
        # line, or past the end of a list item or quote, runs on through the Markdown after it,
        # where GitHub escapes the closing quote.
        return len(text)
    closing, name = tag.group(1), tag.group(2).lower()
    attributes = [] if closing else _attributes(tag.group(3))
    if not closing and (name in _CONTENT_HIDDEN or _hidden(name, attributes)):
        end = tag.end() if name in _VOID else _element_end(text, tag.end(), name)
        return _cover(text, j, end) if cover else end
    if cover and (widened := _cover(text, j, tag.end())) > tag.end():
        return widened  # read as plain text, the tag would open something that runs on past it
    if name in _ELEMENTS:
        kept = _kept(attributes)
        if closing:
            out.append(f"</{tag.group(2)}>")
        elif kept == [raw for _, raw, _ in attributes]:
            out.append(tag.group())  # nothing to take out: leave it as written
        else:
            slash = " /" if tag.group(3).rstrip().endswith("/") else ""
            out.append(f"<{tag.group(2)}{''.join(f' {raw}' for raw in kept)}{slash}>")
    return tag.end()


_OPENER = re.compile(r"<|!\[|\]\(")
MAX_OPENERS = 256  # inside one span; past that, honest text is rare enough that the rest may go


def _cover(text: str, start: int, end: int) -> int:
    """Widen a span dropped or kept whole over every construct that opens inside it and reaches beyond.

    GitHub may read the span as plain text (its Markdown parser is stricter than a browser) and
    then parse what is inside: a `<script>` or an image's `![` there can hide text past the span.
    """
    k, seen = start + 1, 0
    while end < len(text) and (opener := _OPENER.search(text, k, end)):
        seen += 1
        if seen > MAX_OPENERS:
            return len(text)
        k = opener.start()
        if opener.group() == "<":
            reach = _at_angle(text, k, [], cover=False)
        elif opener.group() == "![":
            reach = _bracket_pairs(text).get(k + 1, k + 1) + 1
        else:
            reach = _link_tail_end(text, k)
        end = max(end, reach)
        k += 1
    return end


def _link_tail_end(text: str, at: int) -> int:
    """The index after a link tail `](url "title")` starting at `at`, else just after the "]("."""
    destination = _DESTINATION.match(text, at + 2)
    assert destination is not None  # the pattern matches the empty string too
    after = destination.end()
    if text.startswith(")", after):
        return after + 1
    title = _TITLE.match(text, after)
    return title.end() if title else at + 2


_ANGLE_DESTINATION = re.compile(r"<[^<>\n]*>")
_GAP = r"[ \t]*(?:\n[ \t]*)?"  # a link's parts may be a line apart, never a blank line apart
_TAIL_AFTER_DESTINATION = re.compile(
    _GAP + r"""(?:\)|(?:"(?:\\.|[^"\\])*+"|'(?:\\.|[^'\\])*+'|\((?:\\.|[^()\\])*+\))""" + _GAP + r"\))")


def _angle_destination(text: str, j: int) -> re.Match[str] | None:
    """`<url with spaces>` after "](" is a link's destination, not a tag, when a valid link surrounds it."""
    gap = re.search(_GAP + r"\Z", text[max(0, j - 40):j])
    bracket = j - len(gap.group()) - 2 if gap else -1
    if bracket < 0 or not text.startswith("](", bracket) or bracket not in _bracket_pairs(text).values():
        return None
    dest = _ANGLE_DESTINATION.match(text, j)
    return dest if dest and _TAIL_AFTER_DESTINATION.match(text, dest.end()) else None


def _comment_end(text: str, j: int) -> int:
    for empty in ("<!-->", "<!--->"):  # HTML closes these at once
        if text.startswith(empty, j):
            return j + len(empty)
    end = _end_after(text, j + 3, "-->")
    if (_CROSSES_BLANK_LINE.search(text, j, end) and not _opens_block(text, j)) or (
            "\n" in text[j:end] and _after_container_marker(text, j)):
        # Opened inside an HTML block, or one a list item or quote may close early, it runs on
        # through the Markdown after, where GitHub escapes every "-->": nothing after it shows.
        return len(text)
    return end


def _opens_block(text: str, j: int) -> bool:
    """Whether text[j] surely begins a top-level block: first on its line, after a blank line or none."""
    line_start = text.rfind("\n", 0, j) + 1
    if j - line_start > 3 or text[line_start:j].strip(" "):
        return False
    previous = text.rfind("\n", 0, max(line_start - 1, 0)) + 1
    return line_start == 0 or not text[previous:line_start].strip()


def _after_container_marker(text: str, j: int) -> bool:
    """Whether only list or quote markers stand before text[j] on its line."""
    prefix = text[text.rfind("\n", 0, j) + 1:j]
    return bool(prefix.strip()) and bool(_CONTAINER.fullmatch(prefix))


def _end_after(text: str, start: int, *markers: str) -> int:
    """After the first of `markers` found (tried in order), else the end of the text."""
    for marker in markers:
        if (found := text.find(marker, start + 1)) != -1:
            return found + len(marker)
    return len(text)


def _attributes(source: str) -> list[tuple[str, str, str]]:
    """(lower-case name, source text, decoded value) of each attribute."""
    found = []
    for m in _ATTRIBUTE.finditer(source):
        value = m.group(2) or ""
        if value[:1] in "\"'" and len(value) >= 2:
            value = value[1:-1]
        found.append((m.group(1).lower(), m.group(), html.unescape(value)))
    return found


def _kept(attributes: list[tuple[str, str, str]]) -> list[str]:
    kept = []
    for name, raw, value in attributes:
        if name in _FLAGS:
            kept.append(raw if raw.lower() == name else name)
        elif name in _KEPT_ATTRIBUTES:
            check = _KEPT_ATTRIBUTES[name]
            if check is None or check.fullmatch(value):
                kept.append(raw)
    return kept


def _hidden(name: str, attributes: list[tuple[str, str, str]]) -> bool:
    for attribute, _, value in attributes:
        if attribute == "hidden" or (attribute == "style" and style_hides(value)):
            return True
        if name == "input" and attribute == "type" and value.strip().lower() == "hidden":
            return True
    return False


def _element_end(text: str, start: int, name: str) -> int:
    """Where the element opened just before `start` ends, its closing tag included; else the text's end."""
    if name in _RAW_TEXT:
        close = _RAW_TEXT[name].search(text, start)
        tag = close and _TAG.match(text, close.start())
        return tag.end() if tag else len(text)
    depth, i = 1, start
    while (j := text.find("<", i)) != -1:
        if text.startswith("<!--", j):
            i = _comment_end(text, j)
            continue
        tag = _TAG.match(text, j)
        if tag is None:
            if re.match(r"</?[A-Za-z]", text[j:j + 3]):
                return len(text)
            # "<!x", "<?x" and "</" before no letter are bogus comments to the next ">": a "</div>"
            # inside one closes nothing.
            i = _end_after(text, j, ">") if text.startswith(("<!", "<?", "</"), j) else j + 1
            continue
        inner = tag.group(2).lower()
        if inner == name:
            depth += -1 if tag.group(1) else (0 if inner in _VOID else 1)
            if depth == 0:
                return tag.end()
        elif inner in _RAW_TEXT and not tag.group(1):
            i = _element_end(text, tag.end(), inner)
            continue
        i = tag.end()
    return len(text)


_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})\s?|(.))", re.S)
_LENGTH = re.compile(r"(-?(?:\d+\.?\d*|\.\d+))([a-z%]*)")
_PX = {"": 1, "px": 1, "pt": 4 / 3, "pc": 16, "in": 96, "cm": 37.8, "mm": 3.78, "q": 0.945, "em": 16,
       "rem": 16, "ex": 8, "ch": 8, "%": 0.16, "vw": 10, "vh": 10, "vmin": 10, "vmax": 10}


def style_hides(css: str) -> bool:
    """True when an inline style makes its element's text unseen (none, hidden, tiny, clear, clipped, off-screen)."""
    css = re.sub(r"/\*.*?(?:\*/|$)", "", css, flags=re.S)
    css = _CSS_ESCAPE.sub(_css_char, css).lower()
    for declaration in css.split(";"):
        prop, _, value = declaration.partition(":")
        prop, value = prop.strip(), value.replace("!important", "").strip()
        words = value.split()
        if ((prop == "display" and "none" in words) or (prop == "visibility" and value in ("hidden", "collapse"))
                or (prop == "content-visibility" and value == "hidden")
                or (prop in ("clip", "clip-path") and value not in ("", "auto", "none"))
                or (prop == "color" and _transparent(value))
                or (prop == "transform" and re.search(r"scale[xy3d]*\(\s*0*\.?0*\s*[,)]", value))):
            return True
        number = _number(value) if prop == "opacity" else _length(value)
        if number is None:
            continue
        if (prop == "opacity" and (number / 100 if value.endswith("%") else number) <= 0.1
                or prop == "font-size" and number < 4
                or prop in ("height", "width", "max-height", "max-width") and number <= 0
                or prop in ("text-indent", "left", "top", "margin-left", "margin-top") and number <= -500):
            return True
    return False


def _css_char(m: re.Match[str]) -> str:
    if m.group(1):
        code = int(m.group(1), 16)
        return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"
    return m.group(2)


def _transparent(color: str) -> bool:
    if color == "transparent" or re.fullmatch(r"#(?:[0-9a-f]{3}0|[0-9a-f]{6}00)", color):
        return True
    m = re.fullmatch(r"(?:rgb|hsl)a?\((.*)\)", color)
    parts = re.split(r"[\s,/]+", m.group(1).strip()) if m else []
    return len(parts) == 4 and _number(parts[3]) == 0


def _number(value: str) -> float | None:
    m = re.fullmatch(r"\s*(-?(?:\d+\.?\d*|\.\d+))%?\s*", value)
    return float(m.group(1)) if m else None


def _length(value: str) -> float | None:
    """A CSS length in pixels, roughly; a bare number as it is."""
    m = _LENGTH.fullmatch(value.strip())
    if not m or m.group(2) not in _PX:
        return None
    return float(m.group(1)) * _PX[m.group(2)]


# ---------------------------------------------------------------- Markdown: alt text, titles, references

def _strip_image_text(text: str) -> str:
    """![alt](url) -> ![](url): alt text is never shown."""
    if "![" not in text:
        return text
    closing = _bracket_pairs(text)
    out, i = [], 0
    while (j := text.find("![", i)) != -1:
        end = closing.get(j + 1)
        if end is None:
            out.append(text[i:j + 2])
            i = j + 2
            continue
        out.append(text[i:j] + "![]")
        i = end + 1
    out.append(text[i:])
    return "".join(out)


_BRACKET = re.compile(r"\\.|[\[\]]", re.S)


@functools.lru_cache(maxsize=2)  # one text is asked many times in a row; str caches its hash
def _bracket_pairs(text: str) -> dict[int, int]:
    """Index of each '[' -> index of its matching ']' (backslash escapes respected)."""
    pairs, stack = {}, []
    for m in _BRACKET.finditer(text):
        if m.group() == "[":
            stack.append(m.start())
        elif m.group() == "]" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


_DESTINATION = re.compile(r"\s*(<[^<>\n]*>|(?![\"'(])(?:\\.|[^\s()\\]|\((?:\\.|[^\s()\\])*\))+)?\s*", re.S)
_TITLE = re.compile(r"""(?:"(?:\\.|[^"\\])*+"|'(?:\\.|[^'\\])*+'|\((?:\\.|[^()\\])*+\))\s*\)""", re.S)


def _strip_link_titles(text: str) -> str:
    """](url "title") -> ](url): link and image titles are only ever a tooltip."""
    if "](" not in text:
        return text
    out, i, last_paren = [], 0, text.rfind(")")
    while (j := text.find("](", i)) != -1:
        dest = _DESTINATION.match(text, j + 2)
        assert dest is not None  # the pattern matches the empty string too
        after = dest.end()
        if after > last_paren:  # no ')' at all: not a link, just text
            break
        if text[after] == ")":
            out.append(text[i:after + 1])
            i = after + 1
            continue
        title = _TITLE.match(text, after)
        end = title.end() if title else text.find(")", after) + 1  # not a valid title: drop to the ')'
        # A destination on a later line may be no link's at all but a definition's hidden label.
        url = "" if "\n" in text[j:dest.start(1) if dest.group(1) else after] else dest.group(1) or ""
        out.append(text[i:j] + "](" + url + ")")
        i = end
    out.append(text[i:])
    return "".join(out)


_DEFINITION = re.compile(r"""
    ^[ \t>]*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+)*\[(?!\^)((?:[^\[\]\\]|\\.){1,999})\]:
    [ \t]*\n?[ \t]*(<[^<>\n]*>|\S+)?
    (?:[ \t]*\n?[ \t]*(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)))?
    [^\n]*(?:\n|$)""", re.M | re.X)
_REFERENCE = re.compile(r"(!?)\[((?:[^\[\]\\]|\\.)*)\](?:\[((?:[^\[\]\\]|\\.)*)\])?(?![(:])")


def _label(text: str) -> str:
    return " ".join(text.split()).casefold()


def _inline_references(text: str) -> str:
    """[text][label] -> [text](url), and every definition goes: its label and title never show."""
    targets: dict[str, str] = {}

    def take(m: re.Match[str]) -> str:
        if not m.group(1).strip():
            return m.group()  # "[ ]:" is no definition
        if m.group(2):
            targets.setdefault(_label(m.group(1)), m.group(2))
        return ""

    text = _DEFINITION.sub(take, text)
    if not targets:
        return text

    def resolve(m: re.Match[str]) -> str:
        url = targets.get(_label(m.group(3) or m.group(2)))
        return m.group() if url is None else f"{m.group(1)}[{m.group(2)}]({url})"

    return _REFERENCE.sub(resolve, text)


# ---------------------------------------------------------------- character references

# Numeric references, named ones with ';', and the legacy names browsers also read without it.
_REFERENCE_CHAR = re.compile(r"&(?:#[xX][0-9a-fA-F]+;?|#[0-9]+;?|[A-Za-z][A-Za-z0-9]*;|(?:%s))" % "|".join(
    sorted((name for name in html.entities.html5 if not name.endswith(";")), key=len, reverse=True)))


def _strip_invisible_references(text: str) -> str:
    """Drop &#x200B;, &zwj;, &shy; and every reference that decodes to an invisible character."""
    if "&" not in text:
        return text
    return _REFERENCE_CHAR.sub(lambda m: _visible_reference(m.group()), text)


@functools.lru_cache(maxsize=4096)
def _visible_reference(reference: str) -> str:
    decoded = html.unescape(reference)
    return "" if not decoded or any(map(is_invisible, decoded)) else reference
