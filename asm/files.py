"""Files only their owner may read, written whole or not at all.

`asm up`'s credentials must never be seen half-written by a reader, or left half-written by a process
killed mid-write: they are written to a fresh file of mode 0600 beside it and renamed over the old one
in one step.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, mode 0600, in directories only its owner may enter (made as needed)."""
    for directory in reversed((path.parent, *path.parent.parents)):
        if not directory.exists():
            directory.mkdir(mode=0o700, exist_ok=True)  # two processes may make it at once
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.unlink(missing_ok=True)
    # O_EXCL: created now, by us, 0600 (a umask only takes bits away); O_NOFOLLOW: never through a link.
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(draft, path)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise
