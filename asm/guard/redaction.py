"""asm's secrets in every form they could leave in: plain, hex, base64, percent-encoded.

A token can leave asm in more than its plain form: an agent could print `echo $TOKEN | base64`,
`xxd -p`, a URL-encoded query string, or a Basic auth header where the token is base64'd after a
prefix. `Secrets` knows each form for a fixed set of values, compiled once, and finds or replaces
them in text and in bytes (file contents and names before a push).
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
# GitHub's token formats: ghp_ (personal), gho_ (OAuth), ghu_/ghs_ (App user and installation), ghr_ (refresh),
# and fine-grained personal tokens.
GITHUB_TOKEN_SHAPE = re.compile(r"\b(?:gh[opsur]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})\b")
MIN_PLAIN = 4  # a shorter value is too common a string to be worth replacing
MIN_ENCODED = 8  # below this an encoded form turns up in ordinary text by chance

__all__ = ["REDACTED", "MIN_PLAIN", "MIN_ENCODED", "Form", "Secrets", "forms_of"]


@dataclass(frozen=True)
class Form:
    """One way a secret can be written: what kind of encoding, and the patterns that find it."""

    kind: str  # "plain", "hex", "base64", "percent" or "utf-16"
    pattern: bytes  # a regular expression over the bytes of a file or a name
    text: str | None  # the same over str; None for a form only bytes can hold
    size: int  # characters it matches; longer forms are tried first


def forms_of(secret: str) -> list[Form]:
    """Every form of one secret worth looking for (plain only when it is short)."""
    if len(secret) < MIN_PLAIN:
        return []
    raw = secret.encode()
    forms = [Form("plain", re.escape(raw), re.escape(secret), len(secret))]
    if len(secret) < MIN_ENCODED:
        return forms
    forms.append(_ascii("hex", raw.hex().encode(), rb"[a-f]"))
    forms += [_ascii("base64", piece) for piece in _base64_pieces(raw)]
    forms += [_ascii("percent", piece, rb"(?<=%)[0-9A-F]{2}") for piece in _percent_forms(secret, raw)]
    forms += [Form("utf-16", re.escape(secret.encode(codec)), None, 2 * len(secret))
              for codec in ("utf-16-le", "utf-16-be")]
    return forms


def _ascii(kind: str, encoded: bytes, any_case: bytes | None = None) -> Form:
    """An ASCII form; the hex digits that `any_case` finds match in either case (`%2f`, `%2F`; `6a`, `6A`)."""
    def either(m: re.Match[bytes]) -> bytes:
        return b"".join(b"[%c%c]" % (c, c ^ 0x20) if c >= 0x41 else bytes([c]) for c in m.group())
    pattern = re.escape(encoded)
    if any_case:
        pattern = re.sub(any_case, either, pattern)
    return Form(kind, pattern, pattern.decode("ascii"), len(encoded))


def _base64_pieces(raw: bytes) -> set[bytes]:
    """The base64 characters only the secret's bytes decide, at each of the three alignments.

    Inside a longer stream the secret starts 0, 1 or 2 bytes into a 3-byte group; the characters
    that mix in a neighbour's bits are left out. When the stream ends with the secret, its last
    characters and padding are the secret's alone, so that longer form is kept too.
    """
    pieces = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw)
        first = -(-8 * offset // 6)  # the first character with no bit of the bytes before
        last = 8 * (offset + len(raw)) // 6  # characters after this one hold bits of the bytes after
        for piece in (encoded[first:last], encoded[first:], encoded[first:].rstrip(b"=")):
            pieces.add(piece)
            pieces.add(piece.translate(_URL_SAFE))
    return pieces


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _percent_forms(secret: str, raw: bytes) -> set[bytes]:
    """Every byte as %XX, and what quote/quote_plus make of it, where that differs from plain."""
    forms = {"".join(f"%{byte:02X}" for byte in raw), quote(secret), quote(secret, safe=""), quote_plus(secret),
             quote_plus(secret, safe="")}
    forms.discard(secret)
    return {form.encode() for form in forms}


class Secrets:
    """A fixed set of secret values, and every form of each, compiled once."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = tuple(dict.fromkeys(value for value in values if value and len(value) >= MIN_PLAIN))
        forms = sorted((form for value in self.values for form in forms_of(value)), key=lambda f: -f.size)
        self.forms = tuple(dict.fromkeys(forms))
        text = [form.text for form in self.forms if form.text is not None]
        self._text = re.compile("|".join(text)) if text else None
        self._bytes = re.compile(b"|".join(form.pattern for form in self.forms)) if self.forms else None

    def __bool__(self) -> bool:
        return bool(self.values)

    def redact(self, text: str) -> str:
        """text with every form of every secret replaced by [redacted], and anything shaped like a GitHub token
        (a GitHub App's installation tokens are minted while the process runs, after its secrets were fixed)."""
        text = self._text.sub(REDACTED, text) if self._text else text
        return GITHUB_TOKEN_SHAPE.sub(REDACTED, text)

    def found_in(self, data: bytes | str) -> bool:
        """Whether any form of any secret occurs in data (file contents or a file name)."""
        return self.form_in(data) is not None

    def form_in(self, data: bytes | str) -> str | None:
        """The kind of the first form found in data ("plain", "base64", ...), or None; never the value."""
        if isinstance(data, str):
            match = self._text.search(data) if self._text else None
            return match and next(form.kind for form in self.forms
                                  if form.text is not None and re.fullmatch(form.text, match.group()))
        found = self._bytes.search(data) if self._bytes else None
        return found and next(form.kind for form in self.forms if re.fullmatch(form.pattern, found.group()))


@functools.lru_cache(maxsize=32)
def _matcher(secrets: tuple[str, ...]) -> Secrets:
    return Secrets(secrets)  # compiled once per set of values; they are fixed for a process


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in text, plain, hex, base64 or percent-encoded; nothing asm writes may carry one."""
    return _matcher(tuple(secrets)).redact(text)


class RedactingFilter(logging.Filter):
    """A logging filter that takes secrets, in any encoding, out of every record's message and traceback."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)
        self.matcher = _matcher(self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.matcher.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Formatters print exc_text when it is set, so the traceback is cleaned once, here.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.matcher.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.matcher.redact(record.stack_info)
        return True
