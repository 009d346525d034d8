"""Git workspaces: one mirror per repository per machine, a cheap local clone per issue, commit, push.

The token never lands in a URL or a `.git/config`: git asks a credential helper that asm passes
through `GIT_CONFIG_*` environment variables of asm's own git processes, and that reads the
token from their environment. Tool commands run by the agent get neither.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import git

from asm.errors import WorkspaceError
from asm.keys import IssueRef

log = logging.getLogger(__name__)

# Runs starting within this many seconds of each other share one fetch of the mirror: a base a
# few seconds old is as good as new, and a burst of issues does not fetch once per issue.
MIRROR_FRESH_SECONDS = 10.0
AUTHOR_NAME = "asm"
AUTHOR_EMAIL = "asm@users.noreply.github.com"
# Answers git's credential question from ASM_GIT_TOKEN; the empty helper first drops any other helper.
_CREDENTIAL_HELPER = '!f() { test "$1" = get && echo username=x-access-token && echo "password=$ASM_GIT_TOKEN"; }; f'


def git_environment(token: str) -> dict[str, str]:
    """The environment of asm's own git processes: credentials for https, no hooks, fixed identity."""
    config = [
        ("credential.helper", ""),
        ("credential.helper", _CREDENTIAL_HELPER),
        # The agent could have written hooks or config; asm's own git must not run anything of theirs.
        ("core.hooksPath", os.devnull),
        ("core.fsmonitor", "false"),
        ("commit.gpgSign", "false"),
        ("protocol.file.allow", "always"),
    ]
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if name in os.environ}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
        GIT_CONFIG_COUNT=str(len(config)),
    )
    if token:
        env["ASM_GIT_TOKEN"] = token
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise mirror updates between the worker processes of one machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Checkout:
    """An issue's working tree on its branch."""

    path: Path
    branch: str
    base: str
    base_sha: str
    git_config: str  # .git/config as asm wrote it, restored before asm runs git again

    @property
    def home(self) -> Path:
        """HOME for tool commands: next to the working tree, so nothing they keep lands in the commit."""
        return self.path.with_name(f".home-{self.path.name}")


class Pending:
    """A checkout being created on a thread; `wait()` gives it (or raises what creating it raised)."""

    def __init__(self, path: Path, future: Future[Checkout]) -> None:
        self.path = path
        self.home = path.with_name(f".home-{path.name}")
        self.future = future

    def wait(self) -> Checkout:
        return self.future.result()


class Workspaces:
    """Creates, commits, pushes and removes issue workspaces under one root."""

    def __init__(self, root: Path, token: str, mirror_fresh_seconds: float = MIRROR_FRESH_SECONDS) -> None:
        self.root = Path(os.path.abspath(root))
        self.mirror_fresh_seconds = mirror_fresh_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workspace")
        # Only commands that talk to the remote get the token; local ones run without it.
        self.remote_env = git_environment(token)
        self.local_env = git_environment("")

    def _git(self, *args: str, cwd: Path | None = None, remote: bool = False) -> str:
        env = self.remote_env if remote else self.local_env
        try:
            return git.Git(str(cwd) if cwd else None).execute(["git", *args], env=env)  # type: ignore[return-value]
        except git.GitCommandError as error:
            # stderr may quote a URL but never a token: none is ever in a URL or argument.
            raise WorkspaceError(f"git {args[0]} failed: {str(error.stderr).strip()[-500:]}") from None

    def mirror(self, repo: str, clone_url: str) -> Path:
        """This machine's mirror of the repository, fetched unless another run just fetched it."""
        owner, name = repo.split("/", 1)
        path = self.root / ".mirrors" / f"{owner}__{name}.git"
        marker = path / "asm-fetched"  # holds the clone URL; its age says when the mirror was fetched
        with _file_lock(path.with_suffix(".lock")):
            if not (path / "HEAD").exists():
                shutil.rmtree(path, ignore_errors=True)
                self._git("clone", "--mirror", "--quiet", clone_url, str(path), remote=True)
            elif not (marker.exists() and marker.read_text() == clone_url
                      and time.time() - marker.stat().st_mtime < self.mirror_fresh_seconds):
                self._git("remote", "set-url", "origin", clone_url, cwd=path)
                self._git("fetch", "--prune", "--quiet", "origin", cwd=path, remote=True)
            else:
                return path
            marker.write_text(clone_url)
        return path

    def path_for(self, worker: str, issue: IssueRef) -> Path:
        return self.root / worker / issue.workspace_name

    def start(self, worker: str, issue: IssueRef, clone_url: str, base: str) -> Pending:
        """Begin `create` on a thread, so the clone overlaps the model's first turn."""
        future = self._executor.submit(self.create, worker, issue, clone_url, base)
        return Pending(self.path_for(worker, issue), future)

    def create(self, worker: str, issue: IssueRef, clone_url: str, base: str) -> Checkout:
        """A fresh working tree for the issue on `ai-feature/issue-N`, branched from `base`."""
        mirror = self.mirror(issue.repo, clone_url)
        path = self.path_for(worker, issue)
        shutil.rmtree(path, ignore_errors=True)  # what an interrupted attempt left
        path.parent.mkdir(parents=True, exist_ok=True)
        # A local clone hard-links the mirror's objects: no network, almost no disk.
        self._git("clone", "--quiet", "--no-checkout", str(mirror), str(path))
        self._git("remote", "set-url", "origin", clone_url, cwd=path)
        self._git("checkout", "--quiet", "-B", issue.branch, f"origin/{base}", cwd=path)
        base_sha = self._git("rev-parse", "HEAD", cwd=path).strip()
        checkout = Checkout(path, issue.branch, base, base_sha, (path / ".git" / "config").read_text())
        shutil.rmtree(checkout.home, ignore_errors=True)
        checkout.home.mkdir()
        return checkout

    def _reclaim(self, checkout: Checkout) -> None:
        """Undo what a tool command may have done to `.git` that would make asm's git act for it."""
        dot_git = checkout.path / ".git"
        if dot_git.is_symlink() or not dot_git.is_dir():
            raise WorkspaceError("the workspace's .git was replaced; refusing to commit or push from it")
        # e.g. a url.*.insteadOf would send the push (and the token) elsewhere.
        (dot_git / "config").write_text(checkout.git_config)
        # Both make git read config (and commands to run) from elsewhere.
        for smuggler in ("commondir", "config.worktree"):
            target = dot_git / smuggler
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)

    def commit(self, checkout: Checkout, message: str) -> str | None:
        """Commit everything the team changed; the branch's head, or None when it changed nothing."""
        self._reclaim(checkout)
        self._git("add", "--all", cwd=checkout.path)
        if self._git("status", "--porcelain", cwd=checkout.path).strip():
            self._git("commit", "--quiet", "--no-verify", "-m", message, cwd=checkout.path)
        head = self._git("rev-parse", "HEAD", cwd=checkout.path).strip()
        return head if head != checkout.base_sha else None

    def push(self, checkout: Checkout, clone_url: str) -> None:
        """Push the issue branch, replacing what an earlier, interrupted attempt pushed."""
        self._reclaim(checkout)
        self._git("push", "--quiet", "--force", clone_url, f"HEAD:refs/heads/{checkout.branch}", cwd=checkout.path,
                  remote=True)

    def remote_branch_sha(self, clone_url: str, branch: str) -> str | None:
        """The tip of `branch` on the remote, or None."""
        line = self._git("ls-remote", clone_url, f"refs/heads/{branch}", remote=True).strip()
        return line.split()[0] if line else None

    def changed_files(self, checkout: Checkout) -> list[str]:
        output = self._git("diff", "--name-only", f"{checkout.base_sha}..HEAD", cwd=checkout.path)
        return [line for line in output.splitlines() if line]

    def remove(self, checkout: Checkout | Pending) -> None:
        """Delete the workspace, its tool HOME and whatever the agent left in them."""
        if isinstance(checkout, Pending):
            wait([checkout.future])  # never delete under a clone still running
        for path in (checkout.path, checkout.home):
            shutil.rmtree(path, ignore_errors=True)
