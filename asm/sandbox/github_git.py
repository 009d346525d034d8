"""The git side of the sandbox GitHub: bare repositories driven by the `git` command line.

Plain `git` (no library): any git a user has installed works, and each step reads as the
command one would type to check it by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Commits the sandbox makes itself (the initial one, merges) need an identity, and a user's
# global `commit.gpgsign` must not make them wait for a passphrase.
_IDENTITY = ("-c", "user.name=asm sandbox", "-c", "user.email=sandbox@asm.invalid", "-c", "commit.gpgsign=false")
# Run from inside a git hook, GIT_DIR / GIT_INDEX_FILE would point every command at the wrong
# repository; the sandbox names its repositories explicitly, so none of those leak in.
_ENV = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
_ENV.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
_SHA = re.compile(r"[0-9a-f]{4,40}")  # what may name a commit by its sha: never an option or a revision range


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


def resolve(path: Path, ref: str) -> str | None:
    """The commit a branch name or a (possibly abbreviated) commit sha names; None for neither."""
    branch = rev_parse(path, ref)
    if branch is not None or not _SHA.fullmatch(ref):
        return branch
    done = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=path, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def is_ancestor(path: Path, commit: str, of: str) -> bool:
    """Whether `commit` is `of` or one of its ancestors."""
    return git("merge-base", "--is-ancestor", commit, of, cwd=path, check=False).returncode == 0


def commits_between(path: Path, base: str, head: str) -> list[str]:
    """The commits `head` (a sha) has that branch `base` lacks, oldest first."""
    out = git("rev-list", "--reverse", head, "--not", f"refs/heads/{base}", "--", cwd=path).stdout
    return out.split()


def diff(path: Path, base: str, head: str, file: str) -> str:
    """The diff of `file` from where `head` (a sha) left branch `base` to `head`, as a pull request shows it."""
    return git("diff", "--no-color", "--no-ext-diff", "-U3", f"refs/heads/{base}...{head}", "--", file,
               cwd=path).stdout


@dataclass(frozen=True)
class CommitInfo:
    """What `GET /repos/{owner}/{repo}/commits/{ref}` tells of a commit."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author: tuple[str, str, str]  # name, email, date (GitHub's format)
    committer: tuple[str, str, str]
    message: str
    files: tuple[tuple[str, str, int, int], ...]  # path, status letter (A, M, D, ...), lines added, lines removed


def commit_info(path: Path, sha: str) -> CommitInfo:
    """The commit `sha` names, with the files it changes against its first parent."""
    fields = "%H%n%T%n%P%n%an%n%ae%n%ad%n%cn%n%ce%n%cd%n%B"
    out = git("show", "-s", "--date=format-local:%Y-%m-%dT%H:%M:%SZ", f"--format={fields}", sha, cwd=path,
              env={"TZ": "UTC"}).stdout
    commit, tree, parents, a_name, a_mail, a_date, c_name, c_mail, c_date, message = out.split("\n", 9)
    counts = git("diff-tree", "--no-commit-id", "-r", "--root", "--numstat", sha, cwd=path).stdout.splitlines()
    kinds = git("diff-tree", "--no-commit-id", "-r", "--root", "--name-status", sha, cwd=path).stdout.splitlines()
    files = []
    for count, kind in zip(counts, kinds, strict=True):
        added, removed, name = count.split("\t", 2)
        files.append((name, kind[:1], int(added) if added.isdigit() else 0, int(removed) if removed.isdigit() else 0))
    return CommitInfo(commit, tree, tuple(parents.split()), (a_name, a_mail, a_date), (c_name, c_mail, c_date),
                      message.rstrip("\n"), tuple(files))


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
