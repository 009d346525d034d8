"""The repository's `.asm/setup.sh`: run once in the sandbox, with network, before the agents start.

Which script: the one on the repository's default branch, read from asm's own repository; never the
agents' tree, nor a pull request's head (on a follow-up run the pull request's commits are the
agents', and a script of theirs must not get the network). It runs through the jail like a tool
command (no secret in its environment, the jail's limits, a timeout) with the network on for this
one command; ASM_TOOL_NETWORK's rule holds for the agents afterwards. What it leaves in the tree and
in the scratch's HOME, the agents find. Its output goes to a file of asm's in the workspace; the
tail, redacted, is what a failure's comment quotes.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from asm.errors import SandboxUnavailable
from asm.guard.jail import SCRATCH, tool_environment
from asm.guard.sanitize import strip_invisible
from asm.quoting import code_block
from asm.workspace import Checkout, Workspaces

SETUP_PATH = ".asm/setup.sh"
SETUP_TIMEOUT_SECONDS = 600  # installing a toolchain and dependencies; the run's own time limit still holds
MAX_SCRIPT_BYTES = 1 << 20  # a setup script is a page; anything far bigger is not one
TAIL_LINES = 60
TAIL_CHARACTERS = 4_000
# Read before redacting and cutting to the tail: 4 bytes a character at most, and a margin wider than
# any secret, so a secret cut at the window's start lies outside the tail.
TAIL_WINDOW_BYTES = 4 * TAIL_CHARACTERS + 4_096
# slirp4netns names the sandbox's interface tap0: without it (a worker that cannot open /dev/net/tun)
# the script would fail on its first download with no word why.
NETWORK_CHECK = ("grep -q tap0 /proc/net/dev 2>/dev/null || "
                 "echo '[asm: the sandbox got no network: slirp4netns could not start here]' >&2\n")
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")  # colours, titles


@dataclass(frozen=True)
class SetupResult:
    """How the setup script went: not there, done, or failed (its exit code or why asm stopped it)."""

    ran: bool
    exit_code: int | None = None
    stopped: str = ""
    seconds: float = 0.0
    tail: str = ""  # the end of its output, redacted

    @property
    def ok(self) -> bool:
        """True when the agents may start: no script, or one that succeeded."""
        return not self.ran or (self.exit_code == 0 and not self.stopped)

    @property
    def reason(self) -> str:
        """Why it failed, in a few words; "" when it did not."""
        return "" if self.ok else self.stopped or f"exit code {self.exit_code}"


def run_setup(workspaces: Workspaces, checkout: Checkout, default_branch: str,
              redact: Callable[[str], str] = lambda text: text,
              timeout: float = SETUP_TIMEOUT_SECONDS) -> SetupResult:
    """Run the default branch's `.asm/setup.sh` in the sandbox with network, cwd the tree; `ran` False if none."""
    script = workspaces.show(checkout, f"refs/heads/{default_branch}", SETUP_PATH, MAX_SCRIPT_BYTES)
    if script is None:
        return SetupResult(ran=False)
    if script.clipped:
        return SetupResult(ran=True, stopped=f"not run: it is {script.size:,} bytes, and asm runs a setup "
                                             f"script of at most {MAX_SCRIPT_BYTES:,}")
    jail = workspaces.jail
    # In the scratch (the sandbox's /tmp) for the time it runs: too long for an argument, and not the tree's.
    name = f"asm-setup-{secrets.token_hex(6)}.sh"
    written = checkout.scratch / name
    descriptor = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with open(descriptor, "wb") as file:
        file.write(script.data)
    command = f"bash {shlex.quote(f'{SCRATCH}/{name}' if jail.confined else str(written))}"
    started = time.monotonic()
    try:
        with open(checkout.path / "setup.log", "w+b") as output:
            done = jail.run((NETWORK_CHECK if jail.confined else "") + command, checkout.tree, checkout.scratch,
                            tool_environment(), output, timeout=timeout, network=True)
            tail = _tail(output, redact) + "".join(f"\n[{note}]" for note in done.notes)
    except SandboxUnavailable as missing:
        return SetupResult(ran=True, stopped=str(missing))
    finally:
        written.unlink(missing_ok=True)
    return SetupResult(True, done.exit_code, done.stopped, time.monotonic() - started, tail)


def failure_details(result: SetupResult) -> str:
    """A failure comment's details: why, and the tail in a code block its text cannot close."""
    return (f"`{SETUP_PATH}` (the default branch's) failed: {result.reason}, after {result.seconds:.0f}s. "
            f"The end of its output:\n\n{code_block(result.tail or '(no output)', 'text')}")


def _tail(output: IO[bytes], redact: Callable[[str], str]) -> str:
    """The last lines of the output, redacted, without colours or anything invisible."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - TAIL_WINDOW_BYTES))
    text = redact(strip_invisible(_ESCAPES.sub("", output.read().decode(errors="replace"))))
    lines = text.rstrip("\n").split("\n")
    return "\n".join(lines[-TAIL_LINES:])[-TAIL_CHARACTERS:]
