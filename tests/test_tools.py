"""The agent's hands: paths confined to the workspace, the editor's commands, bash with a clean environment."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from asm.tools import (
    MAX_OUTPUT_CHARACTERS,
    BashTool,
    EditorTool,
    ToolResult,
    Workspace,
    tool_identity,
    truncate,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("one\ntwo\nthree\nfour\n")
    (repo / "README.md").write_text("# repo\n")
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("[core]\n")
    return repo


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("do not read\n")
    return elsewhere


@pytest.fixture
def workspace(root: Path, tmp_path: Path) -> Workspace:
    home = tmp_path / "home"
    home.mkdir()
    return Workspace(root, home)


@pytest.fixture
def editor(workspace: Workspace) -> EditorTool:
    return EditorTool(workspace)


@pytest.fixture
def bash(workspace: Workspace) -> BashTool:
    return BashTool(workspace)


# -- Workspace.resolve -----------------------------------------------------------------------------


def test_resolve_accepts_a_relative_path(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve("pkg/mod.py") == root / "pkg" / "mod.py"


def test_resolve_accepts_an_absolute_path_inside(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve(str(root / "pkg" / "mod.py")) == root / "pkg" / "mod.py"


def test_resolve_accepts_the_root_and_a_path_not_yet_created(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve(".") == root
    assert workspace.resolve(str(root)) == root
    assert workspace.resolve("new/dir/file.py") == root / "new" / "dir" / "file.py"


def test_resolve_accepts_a_dotdot_that_stays_inside(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve("pkg/../README.md") == root / "README.md"


def test_resolve_accepts_files_named_like_git(workspace: Workspace, root: Path) -> None:
    assert workspace.resolve(".gitignore") == root / ".gitignore"
    assert workspace.resolve(".github/workflows/ci.yml") == root / ".github" / "workflows" / "ci.yml"


def test_resolve_accepts_absolute_paths_under_a_symlinked_root(tmp_path: Path, root: Path) -> None:
    """The prompt may name the root through a symlink (macOS /tmp); paths under that name are inside."""
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    workspace = Workspace(alias, tmp_path)

    assert workspace.resolve(str(alias / "pkg" / "mod.py")) == root / "pkg" / "mod.py"


@pytest.mark.parametrize("path", ["../x", "../../etc/passwd", "pkg/../../x", "/etc/passwd", "/", ""])
def test_resolve_refuses_paths_outside(workspace: Workspace, path: str) -> None:
    with pytest.raises(ValueError):
        workspace.resolve(path)


def test_resolve_refuses_an_absolute_path_in_a_sibling_with_the_same_prefix(workspace: Workspace,
                                                                            root: Path) -> None:
    sibling = root.parent / (root.name + "-other")
    sibling.mkdir()

    with pytest.raises(ValueError):
        workspace.resolve(str(sibling / "x.py"))


def test_resolve_refuses_a_symlinked_file_pointing_outside(workspace: Workspace, root: Path,
                                                           outside: Path) -> None:
    (root / "link.txt").symlink_to(outside / "secret.txt")

    with pytest.raises(ValueError, match="outside"):
        workspace.resolve("link.txt")


def test_resolve_refuses_a_path_through_a_symlinked_dir_pointing_outside(workspace: Workspace, root: Path,
                                                                         outside: Path) -> None:
    (root / "linkdir").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ValueError, match="outside"):
        workspace.resolve("linkdir/secret.txt")
    with pytest.raises(ValueError, match="outside"):
        workspace.resolve("linkdir/new.txt")


def test_resolve_refuses_a_dangling_symlink_pointing_outside(workspace: Workspace, root: Path,
                                                             outside: Path) -> None:
    (root / "later.txt").symlink_to(outside / "not-yet.txt")

    with pytest.raises(ValueError, match="outside"):
        workspace.resolve("later.txt")


@pytest.mark.parametrize("path", [".git/config", ".git", "pkg/../.git/hooks/pre-commit", "./.git/HEAD"])
def test_resolve_refuses_the_git_directory(workspace: Workspace, root: Path, path: str) -> None:
    with pytest.raises(ValueError, match=".git"):
        workspace.resolve(path)
    with pytest.raises(ValueError, match=".git"):
        workspace.resolve(str(root / path))


def test_resolve_refuses_a_symlink_into_the_git_directory(workspace: Workspace, root: Path) -> None:
    (root / "cfg").symlink_to(root / ".git" / "config")

    with pytest.raises(ValueError, match=".git"):
        workspace.resolve("cfg")


# -- EditorTool: view ----------------------------------------------------------------------------


def test_view_a_file_numbers_its_lines(editor: EditorTool) -> None:
    result = editor({"command": "view", "path": "pkg/mod.py"})

    assert result == ToolResult("1: one\n2: two\n3: three\n4: four")


def test_view_a_range(editor: EditorTool) -> None:
    assert editor({"command": "view", "path": "pkg/mod.py", "view_range": [2, 3]}).content == "2: two\n3: three"


def test_view_a_range_to_the_end(editor: EditorTool) -> None:
    assert editor({"command": "view", "path": "pkg/mod.py", "view_range": [3, -1]}).content == "3: three\n4: four"


@pytest.mark.parametrize("view_range", [[0, 2], [3, 2], [2, 9], [5, -1], [1], "1,2", ["a", 2]])
def test_view_a_bad_range_is_an_error(editor: EditorTool, view_range: object) -> None:
    result = editor({"command": "view", "path": "pkg/mod.py", "view_range": view_range})

    assert result.is_error


def test_view_a_range_with_null_is_an_error_not_an_exception(editor: EditorTool) -> None:
    result = editor({"command": "view", "path": "pkg/mod.py", "view_range": [1, None]})

    assert result.is_error


def test_view_an_empty_file(editor: EditorTool, root: Path) -> None:
    (root / "empty.py").write_text("")

    result = editor({"command": "view", "path": "empty.py"})

    assert not result.is_error
    assert "empty" in result.content


def test_view_a_directory_lists_two_levels_and_skips_hidden(editor: EditorTool, root: Path) -> None:
    (root / ".env").write_text("X=1\n")
    (root / "pkg" / ".cache").mkdir()
    (root / "pkg" / ".cache" / "junk").write_text("")
    (root / "pkg" / "deep" / "deeper").mkdir(parents=True)
    (root / "pkg" / "deep" / "deeper" / "x.py").write_text("")

    lines = editor({"command": "view", "path": "."}).content.splitlines()

    assert "README.md" in lines
    assert "pkg/" in lines
    assert "pkg/mod.py" in lines
    assert "pkg/deep/" in lines
    assert not any(".git" in line or ".env" in line or ".cache" in line for line in lines)
    assert "pkg/deep/deeper/x.py" not in lines


def test_view_a_subdirectory_shows_paths_from_the_root(editor: EditorTool) -> None:
    assert editor({"command": "view", "path": "pkg"}).content.splitlines() == ["pkg/mod.py"]


def test_view_the_root_by_its_absolute_path(editor: EditorTool, root: Path) -> None:
    assert "pkg/mod.py" in editor({"command": "view", "path": str(root)}).content.splitlines()


def test_view_a_directory_does_not_list_through_a_symlink_outside(editor: EditorTool, root: Path,
                                                                 outside: Path) -> None:
    (root / "linkdir").symlink_to(outside, target_is_directory=True)

    listing = editor({"command": "view", "path": "."}).content

    assert "linkdir/" in listing.splitlines()
    assert "secret.txt" not in listing


def test_view_a_missing_file_is_an_error(editor: EditorTool) -> None:
    assert editor({"command": "view", "path": "nope.py"}).is_error


def test_view_a_binary_file_is_an_error(editor: EditorTool, root: Path) -> None:
    (root / "blob.bin").write_bytes(b"\xff\xfe\x00\x81")

    assert editor({"command": "view", "path": "blob.bin"}).is_error


# -- EditorTool: create, str_replace, insert -------------------------------------------------------


def test_create_makes_parent_directories(editor: EditorTool, root: Path) -> None:
    result = editor({"command": "create", "path": "a/b/c/new.py", "file_text": "x = 1\n"})

    assert not result.is_error
    assert (root / "a" / "b" / "c" / "new.py").read_text() == "x = 1\n"


def test_create_overwrites(editor: EditorTool, root: Path) -> None:
    editor({"command": "create", "path": "README.md", "file_text": "new\n"})

    assert (root / "README.md").read_text() == "new\n"


def test_create_without_text_is_an_error(editor: EditorTool, root: Path) -> None:
    assert editor({"command": "create", "path": "x.py"}).is_error
    assert not (root / "x.py").exists()


def test_str_replace_replaces_the_one_match(editor: EditorTool, root: Path) -> None:
    result = editor({"command": "str_replace", "path": "pkg/mod.py", "old_str": "two\n", "new_str": "2\n"})

    assert not result.is_error
    assert (root / "pkg" / "mod.py").read_text() == "one\n2\nthree\nfour\n"


def test_str_replace_without_new_str_deletes(editor: EditorTool, root: Path) -> None:
    editor({"command": "str_replace", "path": "pkg/mod.py", "old_str": "three\n"})

    assert (root / "pkg" / "mod.py").read_text() == "one\ntwo\nfour\n"


def test_str_replace_with_no_match_is_an_error(editor: EditorTool, root: Path) -> None:
    result = editor({"command": "str_replace", "path": "pkg/mod.py", "old_str": "five", "new_str": "5"})

    assert result.is_error
    assert "no match" in result.content
    assert (root / "pkg" / "mod.py").read_text() == "one\ntwo\nthree\nfour\n"


def test_str_replace_with_two_matches_is_an_error(editor: EditorTool, root: Path) -> None:
    (root / "twice.py").write_text("x = 1\nx = 1\n")

    result = editor({"command": "str_replace", "path": "twice.py", "old_str": "x = 1", "new_str": "y"})

    assert result.is_error
    assert "2 matches" in result.content
    assert (root / "twice.py").read_text() == "x = 1\nx = 1\n"


def test_str_replace_with_an_empty_old_str_is_an_error(editor: EditorTool) -> None:
    assert editor({"command": "str_replace", "path": "pkg/mod.py", "old_str": "", "new_str": "x"}).is_error


def test_insert_with_insert_text(editor: EditorTool, root: Path) -> None:
    result = editor({"command": "insert", "path": "pkg/mod.py", "insert_line": 2, "insert_text": "two and a half"})

    assert not result.is_error
    assert (root / "pkg" / "mod.py").read_text() == "one\ntwo\ntwo and a half\nthree\nfour\n"


def test_insert_with_new_str(editor: EditorTool, root: Path) -> None:
    editor({"command": "insert", "path": "pkg/mod.py", "insert_line": 0, "new_str": "zero\n"})

    assert (root / "pkg" / "mod.py").read_text() == "zero\none\ntwo\nthree\nfour\n"


def test_insert_after_a_last_line_without_newline(editor: EditorTool, root: Path) -> None:
    (root / "short.py").write_text("a\nb")

    editor({"command": "insert", "path": "short.py", "insert_line": 2, "insert_text": "c"})

    assert (root / "short.py").read_text() == "a\nb\nc\n"


@pytest.mark.parametrize("tool_input", [{"insert_line": 9, "insert_text": "x"}, {"insert_line": -1, "insert_text": "x"},
                                        {"insert_line": "2", "insert_text": "x"}, {"insert_line": 1}])
def test_insert_with_bad_input_is_an_error(editor: EditorTool, root: Path, tool_input: dict) -> None:
    result = editor({"command": "insert", "path": "pkg/mod.py", **tool_input})

    assert result.is_error
    assert (root / "pkg" / "mod.py").read_text() == "one\ntwo\nthree\nfour\n"


@pytest.mark.parametrize("command", ["undo_edit", "delete", None, ""])
def test_an_unknown_command_is_an_error(editor: EditorTool, command: object) -> None:
    result = editor({"command": command, "path": "pkg/mod.py"})

    assert result.is_error
    assert "unknown command" in result.content


# -- every refusal is data, never an exception -------------------------------------------------------


@pytest.mark.parametrize(
    "tool_input",
    [
        {"command": "view", "path": "../elsewhere/secret.txt"},
        {"command": "view", "path": "/etc/passwd"},
        {"command": "view", "path": "link.txt"},
        {"command": "view", "path": "linkdir"},
        {"command": "create", "path": "linkdir/planted.txt", "file_text": "x"},
        {"command": "create", "path": "../planted.txt", "file_text": "x"},
        {"command": "str_replace", "path": "link.txt", "old_str": "do not", "new_str": "did"},
        {"command": "insert", "path": "link.txt", "insert_line": 0, "insert_text": "x"},
        {"command": "create", "path": ".git/config", "file_text": "[url]\n"},
        {"command": "view", "path": ".git/config"},
        {"command": "view"},
        {"command": "view", "path": ""},
        {"command": "create", "path": ".", "file_text": "x"},
        {"command": "str_replace", "path": "pkg", "old_str": "a", "new_str": "b"},
        {"command": "view", "path": "a\x00b"},
    ],
)
def test_every_refusal_is_an_error_result(editor: EditorTool, root: Path, outside: Path, tool_input: dict) -> None:
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)

    result = editor(tool_input)

    assert isinstance(result, ToolResult)
    assert result.is_error
    assert "do not read" not in result.content
    assert (outside / "secret.txt").read_text() == "do not read\n"
    assert not (outside / "planted.txt").exists()
    assert not (root.parent / "planted.txt").exists()
    assert (root / ".git" / "config").read_text() == "[core]\n"


# -- BashTool ------------------------------------------------------------------------------------------


def test_bash_runs_in_the_workspace(bash: BashTool, workspace: Workspace) -> None:
    result = bash({"command": "pwd"})

    assert result == ToolResult(str(workspace.root) + "\n")


def test_bash_sees_the_workspace_files(bash: BashTool) -> None:
    assert bash({"command": "cat pkg/mod.py | wc -l"}).content.strip() == "4"


def test_bash_home_is_the_workspace_home(bash: BashTool, workspace: Workspace) -> None:
    assert bash({"command": 'echo "$HOME"'}).content.strip() == str(workspace.home)


def test_bash_output_includes_stderr(bash: BashTool) -> None:
    assert bash({"command": "echo out; echo err >&2"}).content == "out\nerr\n"


def test_bash_nonzero_exit_is_an_error_with_the_code(bash: BashTool) -> None:
    result = bash({"command": "echo failing; exit 3"})

    assert result.is_error
    assert "failing" in result.content
    assert "exit code 3" in result.content


def test_bash_with_no_output_says_so(bash: BashTool) -> None:
    assert bash({"command": "true"}) == ToolResult("(no output)")


def test_bash_without_a_command_is_an_error(bash: BashTool) -> None:
    assert bash({}).is_error
    assert bash({"command": "  "}).is_error


def test_bash_restart_is_not_an_error(bash: BashTool) -> None:
    assert not bash({"restart": True}).is_error


def test_bash_a_cd_does_not_carry_over(bash: BashTool, workspace: Workspace) -> None:
    bash({"command": "cd pkg"})

    assert bash({"command": "pwd"}).content.strip() == str(workspace.root)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_bash_timeout_kills_the_command_and_its_children(workspace: Workspace, root: Path) -> None:
    bash = BashTool(workspace, timeout=0.5)

    result = bash({"command": "sleep 30 & echo $! > child.pid; echo started; sleep 5; echo finished"})

    assert result.is_error
    assert "timed out after 0.5s" in result.content
    assert "started" in result.content
    assert "finished" not in result.content
    child = int((root / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


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


def test_bash_environment_holds_no_secret(monkeypatch: pytest.MonkeyPatch, workspace: Workspace) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_VALUE_OF_THE_TOKEN_123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-VALUE-OF-THE-KEY-456")
    monkeypatch.setenv("ASM_SOMETHING", "asm-private-value-789")
    monkeypatch.setenv("ASM_GIT_TOKEN", "ghp_GIT_TOKEN_VALUE_000")
    bash = BashTool(workspace)

    output = bash({"command": "env; cat /proc/self/environ | tr '\\0' '\\n'"}).content

    for leaked in ("ghp_VALUE_OF_THE_TOKEN_123", "sk-ant-VALUE-OF-THE-KEY-456", "asm-private-value-789",
                   "ghp_GIT_TOKEN_VALUE_000", "GITHUB_TOKEN", "ANTHROPIC_API_KEY", "ASM_SOMETHING", "ASM_GIT_TOKEN"):
        assert leaked not in output
    assert "PATH=" in output  # the environment is not simply empty: programs are still found


def test_bash_environment_is_fixed_when_the_tool_is_built(monkeypatch: pytest.MonkeyPatch,
                                                          workspace: Workspace) -> None:
    bash = BashTool(workspace)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_SET_LATER_999")

    assert "ghp_SET_LATER_999" not in bash({"command": "env"}).content


# -- what a command leaves behind, and who it runs as ----------------------------------------------


def alive(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def test_a_background_process_does_not_hold_the_call_and_dies_with_it(bash: BashTool) -> None:
    result = bash({"command": "sleep 31.5 & echo started"})
    assert not result.is_error and "started" in result.content and "timed out" not in result.content
    assert not alive("sleep 31.5")


def test_a_process_that_left_the_group_is_killed_too(bash: BashTool) -> None:
    result = bash({"command": "setsid sleep 32.5 > /dev/null 2>&1 & echo started"})
    assert "started" in result.content
    assert not alive("sleep 32.5")


def test_a_flood_of_output_is_cut_without_holding_it_in_memory(bash: BashTool) -> None:
    result = bash({"command": "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo the-end"})
    assert len(result.content) < MAX_OUTPUT_CHARACTERS + 200
    assert result.content.rstrip().endswith("the-end") and "bytes cut" in result.content


@pytest.mark.skipif(os.geteuid() != 0, reason="starting tool commands as another user needs root")
def test_tool_commands_can_run_as_another_user_who_cannot_read_the_worker(root: Path, tmp_path: Path) -> None:
    nobody = tool_identity("nobody")
    home = tmp_path / "nobody-home"
    home.mkdir()
    for path in (root, home, *root.rglob("*")):
        os.lchown(path, *nobody)
    workspace = Workspace(root, home, owner=nobody)
    bash, editor = BashTool(workspace), EditorTool(workspace)
    assert bash({"command": "id -u"}).content.strip() == str(nobody[0])
    peek = bash({"command": f"cat /proc/{os.getpid()}/environ"})
    assert peek.is_error and "Permission denied" in peek.content
    assert not editor({"command": "create", "path": "new/made.txt", "file_text": "by the editor\n"}).is_error
    assert (root / "new" / "made.txt").stat().st_uid == nobody[0]
    edited = bash({"command": "echo more >> new/made.txt && cat new/made.txt"})
    assert not edited.is_error and "more" in edited.content
