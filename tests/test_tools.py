"""The agent's bash: one command in the working tree, in the sandbox, with a timeout, cut output and no secret.

Every behaviour is checked in the sandbox (`bwrap`) and, where it still holds, unconfined (`off`).
What the sandbox keeps out (other processes, files, the network, privileges) is tests/test_jail.py's.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import running

from asm.agents.tools import (
    MAX_OUTPUT_CHARACTERS,
    BashTool,
    ToolResult,
    WorkingTree,
    truncate,
)
from asm.guard.jail import SHOWN_ROOT, Jail, prepare


@pytest.fixture(params=["bwrap", "off"])
def jail(request: pytest.FixtureRequest) -> Jail:
    return Jail(mode=request.param)


@pytest.fixture
def tree(tmp_path: Path, jail: Jail) -> WorkingTree:
    root, scratch = tmp_path / "tree", tmp_path / "scratch"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("one\ntwo\nthree\nfour\n")
    (root / "README.md").write_text("# repo\n")
    prepare(root, scratch, jail.owner)
    return WorkingTree(root, SHOWN_ROOT if jail.confined else str(root), scratch, owner=jail.owner)


@pytest.fixture
def bash(tree: WorkingTree, jail: Jail) -> BashTool:
    return BashTool(tree, jail)


@pytest.fixture
def token() -> Iterator[str]:
    """A number no other process has on its command line: `sleep <token>` is findable on the host."""
    mark = f"9{secrets.randbelow(10**7):07d}.5"
    yield mark
    for pid in running(mark):  # only when a test failed: leave nothing behind
        os.kill(pid, signal.SIGKILL)


def gone(mark: str, within: float = 10.0) -> bool:
    """Whether every process holding `mark` has ended, waiting at most `within` seconds for a kill to land."""
    deadline = time.monotonic() + within
    while running(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- one command ---------------------------------------------------------------------------------


def test_bash_runs_in_the_tree_shown_at_its_root(bash: BashTool, tree: WorkingTree) -> None:
    assert bash({"command": "pwd"}) == ToolResult(tree.shown_root + "\n")


def test_bash_sees_the_tree_files(bash: BashTool) -> None:
    assert bash({"command": "cat pkg/mod.py | wc -l"}).content.strip() == "4"


def test_bash_writes_land_in_the_tree(bash: BashTool, tree: WorkingTree) -> None:
    assert not bash({"command": "echo made > pkg/new.txt"}).is_error
    assert (tree.root / "pkg" / "new.txt").read_text() == "made\n"


def test_bash_home_is_the_issues_own_in_its_scratch(bash: BashTool, tree: WorkingTree, jail: Jail) -> None:
    if not jail.confined:
        pytest.skip("unconfined, HOME is the machine's /tmp/home: nothing is the issue's own")
    result = bash({"command": 'echo "$HOME"; echo kept > "$HOME/.note"; echo scratch > /tmp/scratch.txt'})

    assert result.content.strip() == "/tmp/home"
    assert tree.scratch is not None
    assert (tree.scratch / "home" / ".note").read_text() == "kept\n"
    assert (tree.scratch / "scratch.txt").read_text() == "scratch\n"


def test_bash_output_includes_stderr(bash: BashTool) -> None:
    assert bash({"command": "echo out; echo err >&2"}).content == "out\nerr\n"


def test_bash_nonzero_exit_is_an_error_with_the_code(bash: BashTool) -> None:
    result = bash({"command": "echo failing; exit 3"})

    assert result.is_error
    assert "failing" in result.content
    assert "exit code 3" in result.content


def test_bash_with_no_output_says_so(bash: BashTool) -> None:
    assert bash({"command": "true"}) == ToolResult("(no output)")


def test_bash_a_missing_program_is_an_error(bash: BashTool) -> None:
    result = bash({"command": "no-such-program-anywhere --help"})

    assert result.is_error
    assert "command not found" in result.content and "exit code 127" in result.content


def test_bash_without_a_command_is_an_error(bash: BashTool) -> None:
    assert bash({}).is_error
    assert bash({"command": "  "}).is_error
    assert bash({"command": 42}).is_error


def test_bash_restart_is_not_an_error(bash: BashTool) -> None:
    result = bash({"restart": True})

    assert not result.is_error and "restarted" in result.content
    assert bash({"command": "echo after"}).content == "after\n"


def test_bash_a_cd_does_not_carry_over(bash: BashTool, tree: WorkingTree) -> None:
    assert bash({"command": "cd pkg && pwd"}).content.strip() == f"{tree.shown_root}/pkg"

    assert bash({"command": "pwd"}).content.strip() == tree.shown_root


def test_bash_timeout_kills_the_command_and_its_children(tree: WorkingTree, jail: Jail, token: str) -> None:
    bash = BashTool(tree, jail, timeout=1)

    result = bash({"command": f"sleep {token} & echo started; sleep {token}; echo finished"})

    assert result.is_error
    assert "timed out after 1s" in result.content
    assert "started" in result.content and "finished" not in result.content
    assert gone(token)
    assert bash({"command": "echo next"}).content == "next\n"


def test_bash_truncates_long_output_keeping_head_and_tail(bash: BashTool) -> None:
    result = bash({"command": "seq 1 100000"})

    assert not result.is_error
    assert len(result.content) < MAX_OUTPUT_CHARACTERS + 100
    assert result.content.startswith("1\n2\n3\n")
    assert result.content.rstrip().endswith("99999\n100000")
    assert "bytes cut" in result.content


def test_truncate_keeps_short_text_whole_and_cuts_long_text_in_the_middle() -> None:
    assert truncate("abc", 10) == "abc"
    cut = truncate("H" * 10 + "m" * 100 + "T" * 10, 20)
    assert cut.startswith("H" * 10)
    assert cut.endswith("T" * 10)
    assert "100 characters cut" in cut


def test_a_flood_of_output_is_cut_without_holding_it_in_memory(bash: BashTool) -> None:
    # 50 MB through a pipe would sit in the worker's memory; it goes to a file and only the ends are read.
    result = bash({"command": "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo the-end"})

    assert not result.is_error
    assert len(result.content) < MAX_OUTPUT_CHARACTERS + 200
    assert result.content.startswith("xxxx")
    assert result.content.rstrip().endswith("the-end") and "bytes cut" in result.content


# -- the environment ---------------------------------------------------------------------------------


WORKER_SECRETS = {
    "GITHUB_TOKEN": "ghp_VALUE_OF_THE_TOKEN_123",
    "ANTHROPIC_API_KEY": "sk-ant-VALUE-OF-THE-KEY-456",
    "ASM_SOMETHING": "asm-private-value-789",
    "ASM_GIT_TOKEN": "ghp_GIT_TOKEN_VALUE_000",
}


def test_bash_environment_holds_no_secret_even_when_the_workers_does(monkeypatch: pytest.MonkeyPatch,
                                                                     tree: WorkingTree, jail: Jail) -> None:
    for name, value in WORKER_SECRETS.items():
        monkeypatch.setenv(name, value)
    bash = BashTool(tree, jail)

    output = bash({"command": "env; tr '\\0' '\\n' < /proc/self/environ; tr '\\0' '\\n' < /proc/$PPID/environ"}).content

    for name, value in WORKER_SECRETS.items():
        assert name not in output and value not in output
    assert "PATH=" in output  # not simply empty: programs are still found
    assert bash({"command": "git --version"}).content.startswith("git version")


def test_bash_environment_is_fixed_when_the_tool_is_built(monkeypatch: pytest.MonkeyPatch, tree: WorkingTree,
                                                          jail: Jail) -> None:
    bash = BashTool(tree, jail)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_SET_LATER_999")

    assert "ghp_SET_LATER_999" not in bash({"command": "env"}).content


# -- what a command leaves behind ---------------------------------------------------------------------


def test_a_background_process_does_not_hold_the_call_and_dies_with_it(bash: BashTool, token: str) -> None:
    result = bash({"command": f"sleep {token} & echo started"})

    assert result == ToolResult("started\n")  # neither held until the timeout nor an error
    assert gone(token)


def test_a_process_that_left_the_group_is_killed_too(bash: BashTool, token: str) -> None:
    result = bash({"command": f"setsid sleep {token} > /dev/null 2>&1 & echo started"})

    assert result == ToolResult("started\n")
    assert gone(token)
