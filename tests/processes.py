"""Finding this machine's processes by what they were started with: how the tests see what a command left."""

from __future__ import annotations

import os
from pathlib import Path


def running(mark: str, anywhere: bool = False) -> list[int]:
    """The processes of this machine that have `mark` as one of their arguments (or in one, if `anywhere`)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                arguments = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone meanwhile
            if any(mark.encode() == argument or anywhere and mark.encode() in argument for argument in arguments):
                found.append(int(entry.name))
    return found
