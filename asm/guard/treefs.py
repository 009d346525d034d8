"""File access confined to one directory tree that others may change while asm works in it.

Whoever runs tool commands in the tree can swap any directory or file for a symbolic link, a FIFO
or a device at any moment, and asm may be root. So no path is handed to the kernel whole: each
operation opens the root, then reaches every component relative to its parent's descriptor with
O_NOFOLLOW, so a link met anywhere is refused whenever it was planted. A file is judged through
the very descriptor that reads and writes it (fstat), never by a name that could change meanwhile.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from asm.errors import AsmError

MAX_READ_BYTES = 10 * 1024 * 1024
MANAGED = ".git"  # asm's own: what the tree's commands did to it is undone before every commit
# O_PATH (Linux): walking needs no read permission and opens nothing that could react to being opened.
_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_DIRECTORY = _PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO or a device swapped in after the check must not hold the open; fstat refuses it next.
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFREG: "a regular file", stat.S_IFLNK: "a symbolic link",
          stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


class TreeRefused(AsmError):
    """A path or file the tree will not touch; the message says why, and what to do instead."""


class ConfinedTree:
    """Reads, writes and lists files under `root`, never outside it and never through a link.

    Paths are relative to the root, or absolute under `shown_root` (the name the model uses for
    it). `owner` is the (uid, gid) every file and directory written here is handed to.
    """

    def __init__(self, root: Path, shown_root: str | None = None, owner: tuple[int, int] | None = None,
                 max_bytes: int = MAX_READ_BYTES) -> None:
        self.root = Path(root)
        self.shown_root = _absolute(shown_root or str(root))
        self.owner = owner
        self.max_bytes = max_bytes

    def relative(self, path: object) -> str:
        """`path` as a normalised path relative to the root (`.` for the root), or TreeRefused."""
        if not isinstance(path, str) or not path:
            raise TreeRefused("a path is required: relative to the repository root, "
                              f"or absolute under {self.shown_root}")
        if "\0" in path:
            raise TreeRefused("the path contains a NUL byte")
        if path.startswith("/"):
            inside = _under(_absolute(path), self.shown_root)
            if inside is None:
                raise TreeRefused(f"`{path}` is outside the repository at {self.shown_root}; "
                                  "use a path relative to it, or absolute under it")
        else:
            # Lexically, before any lookup: `pkg/../x` is `x` whatever `pkg` is on disk.
            inside = posixpath.normpath(path)
            if _leaves(inside):
                raise TreeRefused(f"`{path}` leads out of the repository; paths must stay inside it")
        if _parts(inside)[:1] == [MANAGED]:
            raise TreeRefused(f"`{MANAGED}` is managed by asm; the editor does not touch it")
        return inside

    def is_directory(self, path: str) -> bool:
        """Whether `path` is a directory; a link there is refused, a missing path too."""
        parts = _parts(self.relative(path))
        if not parts:
            return True
        with self._directory(parts, len(parts) - 1) as parent:
            mode = self._mode(parent, parts[-1])
            if mode is None:
                raise TreeRefused(f"`{_join(parts)}` does not exist")
            if stat.S_ISLNK(mode):
                raise TreeRefused(self._link_message(parent, parts, len(parts) - 1))
        return stat.S_ISDIR(mode)

    def read_text(self, path: str) -> str:
        """The UTF-8 text of the regular file at `path`."""
        with self._file(path, os.O_RDONLY) as (fd, shown):
            return self._read(fd, shown)

    def write_text(self, path: str, text: str) -> None:
        """Make or overwrite the regular file at `path`, and any directory above it that is missing."""
        with self._file(path, os.O_WRONLY | os.O_CREAT, make_parents=True) as (fd, _):
            _rewrite(fd, text.encode())
            if self.owner is not None:
                os.fchown(fd, *self.owner)

    def edit_text(self, path: str, change: Callable[[str], str]) -> None:
        """Replace the text of the file at `path` with `change(text)`, read and written through one descriptor."""
        with self._file(path, os.O_RDWR) as (fd, shown):
            _rewrite(fd, change(self._read(fd, shown)).encode())

    def listing(self, path: str, depth: int = 2) -> list[str]:
        """Paths from the root of what lies under the directory `path`, `depth` levels down, hidden ones skipped.

        Directories end in `/`, links in `@`; a link is never listed through.
        """
        parts = _parts(self.relative(path))
        with self._directory(parts) as fd:
            found = self._scan(fd, tuple(parts), depth)
        return [shown for _, shown in sorted(found)]

    # -- the walk ---------------------------------------------------------------------------------

    @contextmanager
    def _directory(self, parts: list[str], depth: int | None = None, make: bool = False) -> Iterator[int]:
        """An O_PATH descriptor of the directory `parts[:depth]`, reached from the root one link-free step at a time.

        The whole of `parts` is only for messages: a link met on the way is named with the path to use instead.
        """
        try:
            # The root's own path is asm's, not the tree's: it may be reached through a link.
            fd = os.open(self.root, _PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as problem:
            raise TreeRefused(f"the repository is not there ({problem.strerror})") from None
        try:
            for step in range(len(parts) if depth is None else depth):
                child = self._step(fd, parts, step, make)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _step(self, parent: int, parts: list[str], depth: int, make: bool) -> int:
        try:
            return os.open(parts[depth], _DIRECTORY, dir_fd=parent)
        except FileNotFoundError:
            if not make:
                raise TreeRefused(f"`{_join(parts[:depth + 1])}` does not exist") from None
        except OSError as problem:
            raise self._refusal(parent, parts, depth, "a directory", problem) from None
        return self._make_directory(parent, parts, depth)

    def _make_directory(self, parent: int, parts: list[str], depth: int) -> int:
        try:
            os.mkdir(parts[depth], 0o777, dir_fd=parent)
            made = True
        except FileExistsError:
            made = False  # someone made it meanwhile: whatever is there now meets the same rules
        try:
            fd = os.open(parts[depth], _DIRECTORY, dir_fd=parent)
        except OSError as problem:
            raise self._refusal(parent, parts, depth, "a directory", problem) from None
        if made and self.owner is not None:
            try:
                # "." from the descriptor is the directory itself: no name another process could swap.
                os.chown(".", *self.owner, dir_fd=fd, follow_symlinks=False)
            except OSError:
                os.close(fd)
                raise
        return fd

    @contextmanager
    def _file(self, path: str, flags: int, make_parents: bool = False) -> Iterator[tuple[int, str]]:
        """A descriptor of the regular file at `path`, checked through itself, and its path for messages."""
        parts = _parts(self.relative(path))
        if not parts:
            raise TreeRefused("`.` is the repository root, a directory; name a file in it")
        shown, last = _join(parts), len(parts) - 1
        with self._directory(parts, last, make_parents) as parent:
            mode = self._mode(parent, parts[-1])
            if mode is not None and not stat.S_ISREG(mode):
                # Refused before opening: opening some devices is enough to make them act.
                raise self._refusal(parent, parts, last, "a regular file")
            try:
                fd = os.open(parts[-1], flags | _FILE, 0o666, dir_fd=parent)
            except OSError as problem:
                raise self._refusal(parent, parts, last, "a regular file", problem) from None
        try:
            _check_file(fd, shown)
            yield fd, shown
        finally:
            os.close(fd)

    def _read(self, fd: int, shown: str) -> str:
        size = os.fstat(fd).st_size
        if size > self.max_bytes:
            raise self._too_big(shown, size)
        chunks, total = [], 0
        while chunk := os.read(fd, self.max_bytes + 1 - total):
            chunks.append(chunk)
            total += len(chunk)
            if total > self.max_bytes:  # it grew while we read
                raise self._too_big(shown, total)
        try:
            return b"".join(chunks).decode()
        except UnicodeDecodeError:
            raise TreeRefused(f"`{shown}` is not UTF-8 text; the editor works on text files only") from None

    def _too_big(self, shown: str, size: int) -> TreeRefused:
        return TreeRefused(f"`{shown}` is {size / 2**20:.1f} MB, more than the {self.max_bytes / 2**20:g} MB "
                           "the editor reads; look at parts of it with bash (head, sed -n, grep)")

    def _scan(self, fd: int, prefix: tuple[str, ...], depth: int) -> list[tuple[tuple[str, ...], str]]:
        readable = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            with os.scandir(readable) as entries:  # scandir reads a duplicate; ours is closed below
                # Kinds come from the entries (lstat-like), never from following a link.
                kinds = [(entry.name, entry.is_symlink(), entry.is_dir(follow_symlinks=False))
                         for entry in entries if not entry.name.startswith(".")]
        finally:
            os.close(readable)
        found = []
        for name, is_link, is_dir in kinds:
            parts = (*prefix, name)
            found.append((parts, _join(parts) + ("@" if is_link else "/" if is_dir else "")))
            if is_dir and not is_link and depth > 1:
                found.extend(self._scan_below(fd, parts, depth - 1))
        return found

    def _scan_below(self, parent: int, parts: tuple[str, ...], depth: int) -> list[tuple[tuple[str, ...], str]]:
        try:
            fd = os.open(parts[-1], _DIRECTORY, dir_fd=parent)
        except OSError:
            return []  # replaced since it was listed (by a link, say): nothing to show under it
        try:
            return self._scan(fd, parts, depth)
        finally:
            os.close(fd)

    # -- refusals the model can act on --------------------------------------------------------------

    @staticmethod
    def _mode(parent: int, name: str) -> int | None:
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None

    def _refusal(self, parent: int, parts: list[str], depth: int, wanted: str,
                 problem: OSError | None = None) -> TreeRefused:
        """Why component `depth` of `parts` cannot be used as `wanted`; only the message depends on this lstat."""
        shown = _join(parts[:depth + 1])
        try:
            mode = self._mode(parent, parts[depth])
        except OSError:
            mode = None
        if mode is not None and stat.S_ISLNK(mode):
            return TreeRefused(self._link_message(parent, parts, depth))
        if mode is not None and _kind(mode) != wanted:
            return TreeRefused(f"`{shown}` is {_kind(mode)}, not {wanted}")
        if mode is None and isinstance(problem, FileNotFoundError):
            return TreeRefused(f"`{shown}` does not exist")
        reason = problem.strerror if problem is not None and problem.strerror else "it changed while being opened"
        return TreeRefused(f"`{shown}` cannot be opened: {reason}")

    def _link_message(self, parent: int, parts: list[str], depth: int) -> str:
        shown = _join(parts[:depth + 1])
        try:
            target = os.readlink(parts[depth], dir_fd=parent)
        except OSError:
            return f"`{shown}` is a symbolic link; the editor does not follow links"
        inside = self._link_target(parts[:depth], target)
        if inside is None:
            return f"`{shown}` is a symbolic link to a path outside the repository; the editor does not follow links"
        if _parts(inside)[:1] == [MANAGED]:
            return f"`{shown}` is a symbolic link into {MANAGED}, which asm manages; the editor does not touch it"
        instead = posixpath.normpath(posixpath.join(inside, *parts[depth + 1:]))
        if instead == _join(parts):  # a link to itself, or a loop: no better path to offer
            return f"`{shown}` is a symbolic link to `{target}`; the editor does not follow links"
        return f"`{shown}` is a symbolic link to `{target}`; the editor does not follow links: use `{instead}` instead"

    def _link_target(self, directory: list[str], target: str) -> str | None:
        """Where a link points, as a path relative to the root, or None when outside (read lexically, for
        advice only)."""
        if target.startswith("/"):
            for name in (self.shown_root, _absolute(str(self.root))):
                inside = _under(_absolute(target), name)
                if inside is not None:
                    return inside
            return None
        inside = posixpath.normpath(posixpath.join(*directory, target))
        return None if _leaves(inside) else inside


def _check_file(fd: int, shown: str) -> None:
    """Refuse what the descriptor turned out to be, if not a plain file of its own."""
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        raise TreeRefused(f"`{shown}` is {_kind(status.st_mode)}, not a regular file")
    if status.st_nlink > 1:
        # Another name of the same file may lie outside the tree: writing here would write there.
        raise TreeRefused(f"`{shown}` has {status.st_nlink} hard links; the editor does not open hard-linked "
                          "files (copy it to a new file with bash first)")


def _rewrite(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    view, written = memoryview(data), 0
    while written < len(data):
        written += os.pwrite(fd, view[written:], written)


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "an unknown kind of file")


def _absolute(path: str) -> str:
    # Leading "//" is left alone by normpath (POSIX lets it mean something else); here it does not.
    return posixpath.normpath("/" + path.lstrip("/"))


def _under(path: str, base: str) -> str | None:
    """`path` relative to `base` when it lies under it (both normalised, absolute), else None."""
    if path == base:
        return "."
    prefix = base if base.endswith("/") else base + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def _leaves(relative: str) -> bool:
    return relative == ".." or relative.startswith("../")


def _parts(relative: str) -> list[str]:
    return [] if relative == "." else relative.split("/")


def _join(parts: list[str] | tuple[str, ...]) -> str:
    return "/".join(parts) or "."
