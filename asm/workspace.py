"""Git workspaces: one mirror per repository per machine, a cheap local clone per issue, commit, push.

The token never lands in a URL or a `.git/config`: git asks a credential helper that asm passes
through `GIT_CONFIG_*` environment variables of asm's own git processes that talk to the remote,
and that reads the token from their environment. Tool commands run by the agent get neither.
git runs through subprocess with exactly the environment built here (not the worker's, merged).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from asm.errors import WorkspaceError
from asm.keys import IssueRef

log = logging.getLogger(__name__)

# Runs starting within this many seconds of each other share one fetch of the mirror: a base a
# few seconds old is as good as new, and a burst of issues does not fetch once per issue.
MIRROR_FRESH_SECONDS = 10.0
REMOTE_ATTEMPTS = 3
REMOTE_BACKOFF_SECONDS = 2.0
LEFT_BY_TOOLS = ("__pycache__/", "*.pyc", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".venv/",
                 "node_modules/", ".tox/", ".coverage")
AUTHOR_NAME = "asm"
AUTHOR_EMAIL = "asm@users.noreply.github.com"
# Answers git's credential question with ASM_GIT_TOKEN, but only for https to the host asm is
# talking to (ASM_GIT_HOST): a URL rewritten by tampered config gets no token. The empty helper
# before it drops every other helper, from any config file.
_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; host=; protocol=; '
    'while IFS== read -r key value; do case "$key" in host) host=$value;; protocol) protocol=$value;; esac; done; '
    'if [ "$protocol" = https ] && [ -n "$ASM_GIT_HOST" ] && [ "$host" = "$ASM_GIT_HOST" ]; then '
    'echo username=x-access-token; echo "password=$ASM_GIT_TOKEN"; fi; }; f'
)


def git_environment(token: str, host: str = "") -> dict[str, str]:
    """The environment of asm's own git processes: credentials for https, no hooks, fixed identity."""
    config = [
        ("credential.helper", ""),
        ("credential.helper", _CREDENTIAL_HELPER),
        # The agent could have written hooks or config; asm's own git must not run anything of theirs.
        ("core.hooksPath", os.devnull),
        ("core.fsmonitor", "false"),
        # Workspaces may belong to ASM_TOOL_USER; asm's git still works in them.
        ("safe.directory", "*"),
        # A fetch must not garbage-collect the mirror under a clone running from it.
        ("gc.auto", "0"),
        ("commit.gpgSign", "false"),
        ("protocol.file.allow", "always"),
    ]
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if name in os.environ}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",  # only the repository's own config, restored by asm, and ours
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
        GIT_CONFIG_COUNT=str(len(config)),
    )
    if token:
        env.update(ASM_GIT_TOKEN=token, ASM_GIT_HOST=host)
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


@contextmanager
def _file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """Between the worker processes of one machine: fetches of a mirror are exclusive, clones from it shared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
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

    def _git(self, *args: str, cwd: Path | None = None, remote: str = "") -> str:
        """Run git with exactly asm's environment (the token only when talking to `remote`)."""
        env = self.local_env
        if remote:
            env = {**self.remote_env, "ASM_GIT_HOST": urlsplit(remote).netloc.rpartition("@")[2]}
        attempts = REMOTE_ATTEMPTS if remote else 1
        for attempt in range(1, attempts + 1):
            done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
            if done.returncode == 0:
                return done.stdout
            if attempt < attempts:  # the network, or GitHub, having a bad moment
                time.sleep(REMOTE_BACKOFF_SECONDS * attempt)
        # stderr may quote a URL but never a token: none is ever in a URL or argument.
        raise WorkspaceError(f"git {args[0]} failed: {done.stderr.strip()[-500:]}")

    def mirror(self, repo: str, clone_url: str) -> Path:
        """This machine's mirror of the repository, fetched unless another run just fetched it."""
        owner, name = repo.split("/", 1)
        path = self.root / ".mirrors" / f"{owner}__{name}.git"
        marker = path / "asm-fetched"  # holds the clone URL; its age says when the mirror was fetched
        with _file_lock(path.with_suffix(".lock")):
            if not (path / "HEAD").exists():
                shutil.rmtree(path, ignore_errors=True)
                self._git("clone", "--mirror", "--quiet", clone_url, str(path), remote=clone_url)
            elif not (marker.exists() and marker.read_text() == clone_url
                      and time.time() - marker.stat().st_mtime < self.mirror_fresh_seconds):
                self._git("remote", "set-url", "origin", clone_url, cwd=path)
                self._git("fetch", "--prune", "--quiet", "origin", cwd=path, remote=clone_url)
            else:
                return path
            marker.write_text(clone_url)
        return path

    def path_for(self, worker: str, issue: IssueRef) -> Path:
        return self.root / worker / issue.workspace_name

    def start(self, worker: str, issue: IssueRef, clone_url: str, base: str,
              owner: tuple[int, int] | None = None) -> Pending:
        """Begin `create` on a thread, so the clone overlaps the model's first turn."""
        future = self._executor.submit(self.create, worker, issue, clone_url, base, owner)
        return Pending(self.path_for(worker, issue), future)

    def create(self, worker: str, issue: IssueRef, clone_url: str, base: str,
               owner: tuple[int, int] | None = None) -> Checkout:
        """A fresh working tree for the issue on `ai-feature/issue-N`, branched from `base`."""
        mirror = self.mirror(issue.repo, clone_url)
        path = self.path_for(worker, issue)
        shutil.rmtree(path, ignore_errors=True)  # what an interrupted attempt left
        path.parent.mkdir(parents=True, exist_ok=True)
        # A local clone hard-links the mirror's objects: no network, almost no disk.
        with _file_lock(mirror.with_suffix(".lock"), shared=True):
            self._git("clone", "--quiet", "--no-checkout", str(mirror), str(path))
        self._git("remote", "set-url", "origin", clone_url, cwd=path)
        self._git("checkout", "--quiet", "-B", issue.branch, f"origin/{base}", cwd=path)
        # What tools leave behind is never part of the change, whatever the repository ignores itself.
        (path / ".git" / "info").mkdir(exist_ok=True)
        with open(path / ".git" / "info" / "exclude", "a") as exclude:
            exclude.write("\n".join(("", *LEFT_BY_TOOLS, "")))
        base_sha = self._git("rev-parse", "HEAD", cwd=path).strip()
        checkout = Checkout(path, issue.branch, base, base_sha, (path / ".git" / "config").read_text())
        shutil.rmtree(checkout.home, ignore_errors=True)
        checkout.home.mkdir()
        if owner is not None:  # tool commands run as another user: the tree is theirs, .git stays ours
            for top in (checkout.path, checkout.home):
                for directory, subdirectories, files in os.walk(top):
                    if Path(directory) == checkout.path:
                        subdirectories.remove(".git")
                    for name in (directory, *(os.path.join(directory, f) for f in files)):
                        os.lchown(name, *owner)
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
                  remote=clone_url)

    def remote_branch_sha(self, clone_url: str, branch: str) -> str | None:
        """The tip of `branch` on the remote, or None."""
        line = self._git("ls-remote", clone_url, f"refs/heads/{branch}", remote=clone_url).strip()
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
