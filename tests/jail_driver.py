"""Runs commands in asm's sandbox the way a worker that is not root does: a JSON request in, JSON results out.

tests/test_jail.py copies this file next to copies of asm/guard/jail.py and asm/errors.py (which need only
the standard library) and starts it as an unprivileged user, so the jail's user-namespace path is
driven by a real unprivileged process. Request: {"tree", "scratch", "limits": {...}, "network",
"steps": [{"command", "timeout", "mark"}]}; each step's result says which processes holding its
`mark` as an argument were still running on the machine once the command had returned.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from asm.errors import SandboxUnavailable  # noqa: E402
from asm.guard.jail import Jail, Limits, prepare, tool_environment  # noqa: E402


def running(mark: str) -> list[int]:
    """The processes of this machine that have `mark` as one of their arguments."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                arguments = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark.encode() in arguments:
                found.append(int(entry.name))
    return found


def main() -> None:
    request = json.load(sys.stdin)
    jail = Jail(network=request.get("network", False), limits=Limits(**request["limits"]))
    tree, scratch = Path(request["tree"]), Path(request["scratch"])
    prepare(tree, scratch, jail.owner)
    try:
        jail.check()
    except SandboxUnavailable as problem:
        json.dump({"uid": os.geteuid(), "check": str(problem), "steps": []}, sys.stdout)
        return
    steps = []
    for step in request["steps"]:
        with tempfile.TemporaryFile() as output:
            done = jail.run(step["command"], tree, scratch, tool_environment(), output, timeout=step["timeout"])
            survivors = running(step["mark"]) if step.get("mark") else []
            output.seek(0)
            said = output.read().decode(errors="replace")
        steps.append({"output": said, "exit_code": done.exit_code, "stopped": done.stopped, "survivors": survivors})
    json.dump({"uid": os.geteuid(), "check": "", "steps": steps}, sys.stdout)


if __name__ == "__main__":
    main()
