"""The editor tool: paths confined to the working tree, its commands, and a tree that fights back."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asm.agents.editor import EditorTool
from asm.agents.tools import ToolResult, WorkingTree
from asm.guard.treefs import MAX_READ_BYTES

SECRET = "do not read\n"


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
    (elsewhere / "secret.txt").write_text(SECRET)
    return elsewhere


@pytest.fixture
def editor(root: Path) -> EditorTool:
    return EditorTool(WorkingTree(root, str(root)))


def view(editor: EditorTool, path: str) -> ToolResult:
    return editor({"command": "view", "path": path})


# -- which paths are inside -----------------------------------------------------------------------


def test_a_relative_path_is_inside(editor: EditorTool) -> None:
    assert view(editor, "pkg/mod.py").content.startswith("1: one")


def test_an_absolute_path_under_the_shown_root_is_inside(editor: EditorTool, root: Path) -> None:
    assert view(editor, str(root / "pkg" / "mod.py")).content.startswith("1: one")


def test_paths_under_a_sandbox_root_name_the_tree(root: Path) -> None:
    editor = EditorTool(WorkingTree(root, "/workspace"))

    assert view(editor, "/workspace/pkg/mod.py").content.startswith("1: one")
    assert "pkg/mod.py" in view(editor, "/workspace").content.splitlines()
    refused = view(editor, str(root / "pkg" / "mod.py"))  # the host's name is not the model's
    assert refused.is_error
    assert "/workspace" in refused.content


def test_the_root_and_paths_not_yet_created(editor: EditorTool, root: Path) -> None:
    assert "pkg/mod.py" in view(editor, ".").content.splitlines()
    assert "pkg/mod.py" in view(editor, str(root)).content.splitlines()
    assert not editor({"command": "create", "path": "new/dir/file.py", "file_text": "x\n"}).is_error
    assert (root / "new" / "dir" / "file.py").read_text() == "x\n"


def test_a_dotdot_that_stays_inside(editor: EditorTool) -> None:
    assert view(editor, "pkg/../README.md").content == "1: # repo"


def test_files_named_like_git_are_ordinary(editor: EditorTool, root: Path) -> None:
    assert not editor({"command": "create", "path": ".gitignore", "file_text": "*.pyc\n"}).is_error
    assert not editor({"command": "create", "path": ".github/workflows/ci.yml", "file_text": "on: push\n"}).is_error
    assert (root / ".github" / "workflows" / "ci.yml").read_text() == "on: push\n"
    assert not editor({"command": "create", "path": "pkg/.git", "file_text": "gitdir: x\n"}).is_error


def test_a_root_named_through_a_symlink(tmp_path: Path, root: Path) -> None:
    """The prompt may name the root through a symlink (macOS /tmp); paths under that name are inside."""
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    editor = EditorTool(WorkingTree(alias, str(alias)))

    assert view(editor, str(alias / "pkg" / "mod.py")).content.startswith("1: one")


def test_the_tree_is_made_ready_before_it_is_touched(tmp_path: Path) -> None:
    later = tmp_path / "cloned-later"
    editor = EditorTool(WorkingTree(later, str(later), ready=lambda: later.mkdir()))

    assert not editor({"command": "create", "path": "a.txt", "file_text": "a\n"}).is_error
    assert (later / "a.txt").read_text() == "a\n"


@pytest.mark.parametrize("path", ["../x", "../../etc/passwd", "pkg/../../x", "/etc/passwd", "/", "", "a\x00b"])
def test_paths_outside_are_refused(editor: EditorTool, path: str) -> None:
    assert view(editor, path).is_error
    assert editor({"command": "create", "path": path, "file_text": "x"}).is_error


def test_a_sibling_with_the_same_prefix_is_outside(editor: EditorTool, root: Path) -> None:
    sibling = root.parent / (root.name + "-other")
    sibling.mkdir()

    assert editor({"command": "create", "path": str(sibling / "x.py"), "file_text": "x"}).is_error
    assert not (sibling / "x.py").exists()


def test_a_symlinked_file_pointing_outside(editor: EditorTool, root: Path, outside: Path) -> None:
    (root / "link.txt").symlink_to(outside / "secret.txt")

    result = view(editor, "link.txt")

    assert result.is_error
    assert "outside" in result.content
    assert "do not read" not in result.content


def test_a_path_through_a_symlinked_dir_pointing_outside(editor: EditorTool, root: Path, outside: Path) -> None:
    (root / "linkdir").symlink_to(outside, target_is_directory=True)

    for tool_input in ({"command": "view", "path": "linkdir/secret.txt"},
                       {"command": "create", "path": "linkdir/new.txt", "file_text": "x"},
                       {"command": "create", "path": "linkdir/deeper/new.txt", "file_text": "x"}):
        result = editor(tool_input)
        assert result.is_error
        assert "`linkdir` is a symbolic link" in result.content
        assert "outside" in result.content
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_a_dangling_symlink_pointing_outside(editor: EditorTool, root: Path, outside: Path) -> None:
    (root / "later.txt").symlink_to(outside / "not-yet.txt")

    result = editor({"command": "create", "path": "later.txt", "file_text": "planted"})

    assert result.is_error
    assert "outside" in result.content
    assert not (outside / "not-yet.txt").exists()


@pytest.mark.parametrize("path", [".git/config", ".git", "pkg/../.git/hooks/pre-commit", "./.git/HEAD"])
def test_the_git_directory_is_refused(editor: EditorTool, root: Path, path: str) -> None:
    for given in (path, str(root / path)):
        for tool_input in ({"command": "view", "path": given},
                           {"command": "create", "path": given, "file_text": "[url]\n"}):
            result = editor(tool_input)
            assert result.is_error
            assert ".git" in result.content
    assert (root / ".git" / "config").read_text() == "[core]\n"
    assert not (root / ".git" / "hooks").exists()


def test_a_symlink_into_the_git_directory(editor: EditorTool, root: Path) -> None:
    (root / "cfg").symlink_to(root / ".git" / "config")
    (root / "hooks").symlink_to(".git/hooks")

    for tool_input in ({"command": "view", "path": "cfg"},
                       {"command": "str_replace", "path": "cfg", "old_str": "[core]", "new_str": "[url]"},
                       {"command": "create", "path": "hooks/pre-commit", "file_text": "#!/bin/sh\n"}):
        result = editor(tool_input)
        assert result.is_error
        assert ".git" in result.content
    assert (root / ".git" / "config").read_text() == "[core]\n"


def test_a_symlink_inside_the_tree_names_the_path_to_use(editor: EditorTool, root: Path) -> None:
    (root / "docs").mkdir()
    (root / "docs" / "x.md").symlink_to("../README.md")

    result = editor({"command": "str_replace", "path": "docs/x.md", "old_str": "repo", "new_str": "mine"})

    assert result.is_error
    assert "`docs/x.md` is a symbolic link to `../README.md`" in result.content
    assert "use `README.md` instead" in result.content
    assert (root / "README.md").read_text() == "# repo\n"


def test_a_symlinked_directory_inside_names_the_path_to_use(editor: EditorTool, root: Path) -> None:
    (root / "src").symlink_to("pkg")

    result = view(editor, "src/mod.py")

    assert result.is_error
    assert "`src` is a symbolic link to `pkg`" in result.content
    assert "use `pkg/mod.py` instead" in result.content


def test_an_absolute_symlink_under_the_sandbox_root_names_the_path_to_use(root: Path) -> None:
    (root / "notes.md").symlink_to("/workspace/pkg/mod.py")
    editor = EditorTool(WorkingTree(root, "/workspace"))

    result = view(editor, "notes.md")

    assert result.is_error
    assert "use `pkg/mod.py` instead" in result.content


# -- view ------------------------------------------------------------------------------------------


def test_view_a_file_numbers_its_lines(editor: EditorTool) -> None:
    assert view(editor, "pkg/mod.py") == ToolResult("1: one\n2: two\n3: three\n4: four")


def test_view_a_range(editor: EditorTool) -> None:
    assert editor({"command": "view", "path": "pkg/mod.py", "view_range": [2, 3]}).content == "2: two\n3: three"


def test_view_a_range_to_the_end(editor: EditorTool) -> None:
    assert editor({"command": "view", "path": "pkg/mod.py", "view_range": [3, -1]}).content == "3: three\n4: four"


@pytest.mark.parametrize("view_range", [[0, 2], [3, 2], [2, 9], [5, -1], [1], "1,2", ["a", 2], [1, None], [True, 2]])
def test_view_a_bad_range_is_an_error(editor: EditorTool, view_range: object) -> None:
    assert editor({"command": "view", "path": "pkg/mod.py", "view_range": view_range}).is_error


def test_view_an_empty_file(editor: EditorTool, root: Path) -> None:
    (root / "empty.py").write_text("")

    result = view(editor, "empty.py")

    assert not result.is_error
    assert "empty" in result.content


def test_view_a_directory_lists_two_levels_and_skips_hidden(editor: EditorTool, root: Path) -> None:
    (root / ".env").write_text("X=1\n")
    (root / "pkg" / ".cache").mkdir()
    (root / "pkg" / ".cache" / "junk").write_text("")
    (root / "pkg" / "deep" / "deeper").mkdir(parents=True)
    (root / "pkg" / "deep" / "deeper" / "x.py").write_text("")

    lines = view(editor, ".").content.splitlines()

    assert lines == ["README.md", "pkg/", "pkg/deep/", "pkg/mod.py"]


def test_view_a_subdirectory_shows_paths_from_the_root(editor: EditorTool) -> None:
    assert view(editor, "pkg").content.splitlines() == ["pkg/mod.py"]


def test_view_a_directory_shows_links_without_listing_through_them(editor: EditorTool, root: Path,
                                                                   outside: Path) -> None:
    (root / "linkdir").symlink_to(outside, target_is_directory=True)

    listing = view(editor, ".").content

    assert "linkdir@" in listing.splitlines()
    assert "secret.txt" not in listing


def test_view_a_missing_file_is_an_error(editor: EditorTool) -> None:
    result = view(editor, "nope.py")

    assert result.is_error
    assert "`nope.py` does not exist" in result.content


def test_view_a_binary_file_is_an_error(editor: EditorTool, root: Path) -> None:
    (root / "blob.bin").write_bytes(b"\xff\xfe\x00\x81")

    result = view(editor, "blob.bin")

    assert result.is_error
    assert "UTF-8" in result.content


# -- create, str_replace, insert -------------------------------------------------------------------


def test_create_makes_parent_directories(editor: EditorTool, root: Path) -> None:
    result = editor({"command": "create", "path": "a/b/c/new.py", "file_text": "x = 1\n"})

    assert result == ToolResult("Created a/b/c/new.py")
    assert (root / "a" / "b" / "c" / "new.py").read_text() == "x = 1\n"


def test_create_overwrites(editor: EditorTool, root: Path) -> None:
    editor({"command": "create", "path": "README.md", "file_text": "new\n"})

    assert (root / "README.md").read_text() == "new\n"


def test_create_a_shorter_file_leaves_nothing_of_the_longer_one(editor: EditorTool, root: Path) -> None:
    editor({"command": "create", "path": "pkg/mod.py", "file_text": "1\n"})

    assert (root / "pkg" / "mod.py").read_text() == "1\n"


def test_create_without_text_is_an_error(editor: EditorTool, root: Path) -> None:
    assert editor({"command": "create", "path": "x.py"}).is_error
    assert not (root / "x.py").exists()


def test_create_through_a_file_is_an_error(editor: EditorTool) -> None:
    result = editor({"command": "create", "path": "README.md/x.py", "file_text": "x"})

    assert result.is_error
    assert "`README.md` is a regular file, not a directory" in result.content


def test_str_replace_replaces_the_one_match(editor: EditorTool, root: Path) -> None:
    result = editor({"command": "str_replace", "path": "pkg/mod.py", "old_str": "two\n", "new_str": "2\n"})

    assert result == ToolResult("Edited pkg/mod.py")
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

    assert result == ToolResult("Inserted after line 2 of pkg/mod.py")
    assert (root / "pkg" / "mod.py").read_text() == "one\ntwo\ntwo and a half\nthree\nfour\n"


def test_insert_with_new_str(editor: EditorTool, root: Path) -> None:
    editor({"command": "insert", "path": "pkg/mod.py", "insert_line": 0, "new_str": "zero\n"})

    assert (root / "pkg" / "mod.py").read_text() == "zero\none\ntwo\nthree\nfour\n"


def test_insert_after_a_last_line_without_newline(editor: EditorTool, root: Path) -> None:
    (root / "short.py").write_text("a\nb")

    editor({"command": "insert", "path": "short.py", "insert_line": 2, "insert_text": "c"})

    assert (root / "short.py").read_text() == "a\nb\nc\n"


@pytest.mark.parametrize("tool_input", [{"insert_line": 9, "insert_text": "x"}, {"insert_line": -1, "insert_text": "x"},
                                        {"insert_line": "2", "insert_text": "x"}, {"insert_line": 1},
                                        {"insert_line": True, "insert_text": "x"}])
def test_insert_with_bad_input_is_an_error(editor: EditorTool, root: Path, tool_input: dict) -> None:
    result = editor({"command": "insert", "path": "pkg/mod.py", **tool_input})

    assert result.is_error
    assert (root / "pkg" / "mod.py").read_text() == "one\ntwo\nthree\nfour\n"


@pytest.mark.parametrize("command", ["undo_edit", "delete", None, "", ["view"]])
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
        {"command": "view", "path": 7},
        {"command": "create", "path": ".", "file_text": "x"},
        {"command": "str_replace", "path": "pkg", "old_str": "a", "new_str": "b"},
        {"command": "view", "path": "a\x00b"},
        {"command": "create", "path": "x" * 300, "file_text": "x"},
        {"command": "view", "path": "README.md/x"},
        {"command": "view", "path": "loop/x"},
        {"command": "create", "path": "loop", "file_text": "x"},
    ],
)
def test_every_refusal_is_an_error_result(editor: EditorTool, root: Path, outside: Path, tool_input: dict) -> None:
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to("loop")

    result = editor(tool_input)

    assert isinstance(result, ToolResult)
    assert result.is_error
    assert "do not read" not in result.content
    assert (outside / "secret.txt").read_text() == SECRET
    assert not (outside / "planted.txt").exists()
    assert not (root.parent / "planted.txt").exists()
    assert (root / ".git" / "config").read_text() == "[core]\n"


# -- special, huge and hard-linked files -----------------------------------------------------------


def promptly(call: Callable[[], ToolResult], seconds: float = 10) -> ToolResult:
    """`call()`'s result, failing the test (instead of hanging it) when it blocks."""
    results: list[ToolResult] = []
    worker = threading.Thread(target=lambda: results.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert results, f"the editor blocked for {seconds}s"
    return results[0]


def every_command(path: str) -> list[dict]:
    return [{"command": "view", "path": path},
            {"command": "view", "path": path, "view_range": [1, 1]},
            {"command": "create", "path": path, "file_text": "x\n"},
            {"command": "str_replace", "path": path, "old_str": "a", "new_str": "b"},
            {"command": "insert", "path": path, "insert_line": 0, "insert_text": "x"}]


def test_a_fifo_is_refused_without_blocking(editor: EditorTool, root: Path) -> None:
    os.mkfifo(root / "pipe")

    for tool_input in every_command("pipe"):
        result = promptly(lambda tool_input=tool_input: editor(tool_input))
        assert result.is_error
        assert "named pipe" in result.content


def test_a_fifo_with_a_writer_is_refused_without_reading(editor: EditorTool, root: Path) -> None:
    """With a writer holding it open, a plain open would succeed and the read would wait forever."""
    os.mkfifo(root / "pipe")
    writer = os.open(root / "pipe", os.O_RDWR | os.O_NONBLOCK)
    try:
        for tool_input in every_command("pipe"):
            assert promptly(lambda tool_input=tool_input: editor(tool_input)).is_error
    finally:
        os.close(writer)


def test_a_socket_is_refused(editor: EditorTool, root: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    here = os.getcwd()
    os.chdir(root)  # a relative name: the socket's path may be longer than AF_UNIX allows
    try:
        server.bind("sock")
    finally:
        os.chdir(here)
    try:
        for tool_input in every_command("sock"):
            result = promptly(lambda tool_input=tool_input: editor(tool_input))
            assert result.is_error
            assert "socket" in result.content
    finally:
        server.close()


def make_device(path: Path, major: int, minor: int) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")


@pytest.mark.parametrize("name, numbers", [("zero", (1, 5)), ("null", (1, 3)), ("random", (1, 8))])
def test_a_device_is_refused(editor: EditorTool, root: Path, name: str, numbers: tuple[int, int]) -> None:
    make_device(root / name, *numbers)

    for tool_input in every_command(name):
        result = promptly(lambda tool_input=tool_input: editor(tool_input))
        assert result.is_error
        assert "character device" in result.content
    assert stat.S_ISCHR(os.lstat(root / name).st_mode)


def test_a_huge_file_is_refused(editor: EditorTool, root: Path) -> None:
    with open(root / "huge.log", "wb") as huge:
        huge.truncate(MAX_READ_BYTES + 1)  # sparse: big to the editor, nothing on disk

    for tool_input in every_command("huge.log")[:2] + every_command("huge.log")[3:]:
        result = editor(tool_input)
        assert result.is_error
        assert "MB" in result.content and "head" in result.content
    assert (root / "huge.log").stat().st_size == MAX_READ_BYTES + 1


def test_a_file_of_the_largest_size_is_read(editor: EditorTool, root: Path) -> None:
    (root / "big.txt").write_bytes(b"x" * (MAX_READ_BYTES - 1) + b"\n")

    assert not editor({"command": "view", "path": "big.txt", "view_range": [1, 1]}).is_error


def test_a_hard_link_to_a_file_outside_is_refused(editor: EditorTool, root: Path, outside: Path) -> None:
    os.link(outside / "secret.txt", root / "hard.txt")

    for tool_input in every_command("hard.txt"):
        result = editor(tool_input)
        assert result.is_error
        assert "hard link" in result.content
    assert (outside / "secret.txt").read_text() == SECRET


# -- ownership -------------------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root")
def test_what_the_editor_creates_belongs_to_the_owner(root: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    owner = (nobody.pw_uid, nobody.pw_gid)
    editor = EditorTool(WorkingTree(root, str(root), owner=owner))

    assert not editor({"command": "create", "path": "a/b/new.py", "file_text": "x\n"}).is_error
    assert not editor({"command": "create", "path": "README.md", "file_text": "y\n"}).is_error
    assert not editor({"command": "str_replace", "path": "pkg/mod.py", "old_str": "one", "new_str": "1"}).is_error

    for made in ("a", "a/b", "a/b/new.py", "README.md"):
        status = (root / made).stat()
        assert (status.st_uid, status.st_gid) == owner, made
    for kept in (".", "pkg", "pkg/mod.py"):  # not made by the editor: left as they were
        assert (root / kept).stat().st_uid == 0, kept


# -- a tree that changes under the editor ------------------------------------------------------------

RENAME_EXCHANGE = 2
ITERATIONS = 3000


def exchanger() -> Callable[[Path, Path], None]:
    """Atomically swap two names (renameat2 RENAME_EXCHANGE): neither is ever missing, the attacker's best."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        pytest.skip("this C library has no renameat2")
    at_fdcwd = -100

    def exchange(a: Path, b: Path) -> None:
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return exchange


class Swapper:
    """A thread that keeps exchanging two names until stopped; ctypes drops the GIL, so swaps run
    truly alongside the editor's own system calls."""

    def __init__(self, a: Path, b: Path) -> None:
        self.exchange = exchanger()
        self.exchange(a, b)
        self.exchange(a, b)  # the file system can do it
        self.a, self.b = a, b
        self.swaps = 0
        self.failures: list[BaseException] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.exchange(self.a, self.b)
                self.swaps += 1
        except BaseException as problem:  # reported by the test, not lost in a thread
            self.failures.append(problem)

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks() -> Iterator[None]:
    before = open_descriptors()
    yield
    assert open_descriptors() == before


def tally(outcomes: dict[str, int], result: ToolResult) -> None:
    assert isinstance(result, ToolResult)
    outcomes["refused" if result.is_error else "done"] += 1


def test_a_directory_swapped_for_a_link_outside_never_leads_outside(editor: EditorTool, root: Path, outside: Path,
                                                                     no_leaks: None) -> None:
    (root / "swap").mkdir()
    (root / "swap" / "file.txt").write_text("inside\n")
    (outside / "file.txt").write_text("SECRET\n")
    (outside / "outside-only.txt").write_text("SECRET\n")
    (root / "parked").symlink_to(outside, target_is_directory=True)
    outcomes = {"done": 0, "refused": 0}

    with Swapper(root / "swap", root / "parked") as swapper:
        for i in range(ITERATIONS):
            read = view(editor, "swap/file.txt")
            listed = view(editor, "swap")
            assert "SECRET" not in read.content and "outside-only" not in listed.content
            for result in (read, listed,
                           editor({"command": "create", "path": f"swap/new-{i % 10}.txt", "file_text": "new\n"}),
                           editor({"command": "create", "path": f"swap/sub{i % 10}/deep.txt", "file_text": "x\n"}),
                           editor({"command": "str_replace", "path": "swap/file.txt", "old_str": "SECRET",
                                   "new_str": "PWNED"}),
                           editor({"command": "insert", "path": "swap/file.txt", "insert_line": 0,
                                   "insert_text": "PWNED"})):
                tally(outcomes, result)

    assert not swapper.failures
    assert sorted(os.listdir(outside)) == ["file.txt", "outside-only.txt", "secret.txt"]
    assert {name: (outside / name).read_text() for name in os.listdir(outside)} == {
        "file.txt": "SECRET\n", "outside-only.txt": "SECRET\n", "secret.txt": SECRET}
    assert swapper.swaps > ITERATIONS
    assert outcomes["done"] and outcomes["refused"], outcomes  # both states of the tree were met


def test_a_file_swapped_for_a_link_outside_is_never_read_or_written(editor: EditorTool, root: Path, outside: Path,
                                                                    no_leaks: None) -> None:
    (root / "target.txt").write_text("inside\n")
    (root / "parked.txt").symlink_to(outside / "secret.txt")
    outcomes = {"done": 0, "refused": 0}

    with Swapper(root / "target.txt", root / "parked.txt") as swapper:
        for i in range(ITERATIONS):
            read = view(editor, "target.txt")
            assert "do not read" not in read.content
            for result in (read,
                           editor({"command": "create", "path": "target.txt", "file_text": f"inside {i}\n"}),
                           editor({"command": "str_replace", "path": "target.txt", "old_str": "do not",
                                   "new_str": "did"}),
                           editor({"command": "insert", "path": "target.txt", "insert_line": 0,
                                   "insert_text": "planted"})):
                tally(outcomes, result)

    assert not swapper.failures
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == SECRET
    assert outcomes["done"] and outcomes["refused"], outcomes


def test_a_file_swapped_for_a_fifo_never_blocks(editor: EditorTool, root: Path, no_leaks: None) -> None:
    (root / "target.txt").write_text("inside\n")
    os.mkfifo(root / "parked")
    outcomes = {"done": 0, "refused": 0}

    def attack() -> ToolResult:
        for _ in range(ITERATIONS // 3):
            for tool_input in every_command("target.txt"):
                tally(outcomes, editor(tool_input))
        return ToolResult("survived")

    with Swapper(root / "target.txt", root / "parked") as swapper:
        assert promptly(attack, seconds=120) == ToolResult("survived")

    assert not swapper.failures
    assert outcomes["done"] and outcomes["refused"], outcomes

