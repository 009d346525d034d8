"""The git side of the sandbox GitHub: bare repositories driven by the `git` command line.

Plain `git` (no library): any git a user has installed works, and each step reads as the
command one would type to check it by hand.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

# Commits the sandbox makes itself (the initial one, merges) need an identity, and a user's
# global `commit.gpgsign` must not make them wait for a passphrase.
_IDENTITY = ("-c", "user.name=asm sandbox", "-c", "user.email=sandbox@asm.invalid", "-c", "commit.gpgsign=false")
# Run from inside a git hook, GIT_DIR / GIT_INDEX_FILE would point every command at the wrong
# repository; the sandbox names its repositories explicitly, so none of those leak in.
_ENV = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
_ENV.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")


class GitFailed(Exception):
    """A git command exited non-zero; the message holds its stderr."""


def git(
    *args: str,
    cwd: Path | None = None,
    check: bool = True,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["git", *_IDENTITY, *args],
        cwd=cwd,
        env={**_ENV, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise GitFailed(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def init_bare(path: Path, files: dict[str, str], default_branch: str) -> None:
    """A bare repository whose `default_branch` holds one commit with `files`, and HEAD on it.

    Built with plumbing straight into the bare repository: half the time of a clone, commit
    and push, which every test that seeds a repo pays.
    """
    path.mkdir(parents=True)
    git("init", "--quiet", "--bare", str(path))
    git("symbolic-ref", "HEAD", f"refs/heads/{default_branch}", cwd=path)
    blobs = [(git("hash-object", "-w", "--stdin", cwd=path, stdin=text).stdout.strip(), name)
             for name, text in files.items()]
    with tempfile.TemporaryDirectory(prefix="asm-sandbox-init-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        listing = "".join(f"100644 {sha}\t{name}\n" for sha, name in blobs)
        git("update-index", "--add", "--index-info", cwd=path, stdin=listing, env=index)
        tree = git("write-tree", cwd=path, env=index).stdout.strip()
    commit = git("commit-tree", tree, "-m", "Initial commit", cwd=path).stdout.strip()
    git("update-ref", f"refs/heads/{default_branch}", commit, cwd=path)


def branch_heads(path: Path) -> dict[str, str]:
    """Every branch of the repository and the commit it points at, in one git call."""
    out = git("for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads", cwd=path).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def rev_parse(path: Path, branch: str) -> str | None:
    done = git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", cwd=path, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def show_file(path: Path, branch: str, file: str) -> str | None:
    done = git("show", f"refs/heads/{branch}:{file}", cwd=path, check=False)
    return done.stdout if done.returncode == 0 else None


def commits_ahead(path: Path, base: str, head: str) -> int:
    """How many commits `head` has that `base` lacks (GitHub refuses a PR with none)."""
    out = git("rev-list", "--count", f"refs/heads/{base}..refs/heads/{head}", cwd=path).stdout
    return int(out.strip())


class MergeConflict(Exception):
    """The head does not merge cleanly into the base."""


def merge(path: Path, base: str, head: str, message: str, squash: bool) -> str:
    """Merge `head` into `base` inside the bare repo through a throwaway clone; the new base sha.

    The push back is a normal push, so if someone pushed to `base` meanwhile it fails rather
    than losing their commit.
    """
    with tempfile.TemporaryDirectory(prefix="asm-sandbox-merge-") as tmp:
        work = Path(tmp) / "work"
        git("clone", "--quiet", "--branch", base, str(path), str(work))
        if squash:
            done = git("merge", "--squash", f"origin/{head}", cwd=work, check=False)
            if done.returncode == 0:
                git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        else:
            done = git("merge", "--no-ff", "-m", message, f"origin/{head}", cwd=work, check=False)
        if done.returncode != 0:
            raise MergeConflict(done.stdout.strip() or done.stderr.strip())
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{base}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).stdout.strip()
