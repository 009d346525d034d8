"""A repository on disk that workspaces clone from (`file://`), and a clone of it to commit to its branches."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Link:
    """A symbolic link to commit, pointing at `target`."""

    target: str


Content = str | bytes | Link | None  # None: the file is deleted


def git(*args: str, cwd: Path | None = None) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false",
                "-c", "safe.directory=*"]  # trees that belong to the tool user are read too
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, check=True).stdout.decode()


class Origin:
    """The remote: a bare repository, and a working clone whose commits are pushed to it."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "origin.git"
        self.work = root / "origin-work"
        git("init", "--quiet", "--bare", "-b", "main", str(self.bare))
        git("init", "--quiet", "-b", "main", str(self.work))
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, files: dict[str, Content], branch: str = "main") -> str:
        """Commit `files` on `branch` (a new branch starts from main) and push it; the commit's sha."""
        if git("branch", "--show-current", cwd=self.work).strip() != branch:
            known = git("branch", "--list", branch, cwd=self.work).strip()
            git("checkout", "--quiet", *([] if known else ["-b"]), branch, cwd=self.work)
        for name, content in files.items():
            path = self.work / name
            if path.is_symlink() or path.is_file():
                path.unlink()
            if content is None:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Link):
                os.symlink(content.target, path)
            else:
                path.write_bytes(content.encode() if isinstance(content, str) else content)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", f"change on {branch}", cwd=self.work)
        git("push", "--quiet", "origin", branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).strip()
