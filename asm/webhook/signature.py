"""GitHub's delivery signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>`."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(secret: str, body: bytes | bytearray) -> str:
    """The header value GitHub sends with `body` for a webhook whose secret is `secret`."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes | bytearray, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret`, compared in constant time.

    A missing header, another algorithm (GitHub's older `sha1=`) or a malformed value is simply wrong.
    """
    if not secret or header is None:
        return False
    # Both sides as bytes: compare_digest on str refuses non-ASCII, which a forged header may carry.
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "replace"))
