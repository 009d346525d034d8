"""Git workspaces: a mirror per repository per machine; per issue, the agents' tree and asm's own repository.

The agents work in a tree of their own (a full clone sharing no file with anything else), only
ever through the sandbox. asm never runs git in it: it takes the change out as data (a binary diff
made inside the sandbox), applies it to a repository of its own that the sandbox never shows (a
bare clone only asm writes), checks it for secrets, and commits and pushes from there.

The token never lands in a URL or a `.git/config`: git asks a credential helper that asm passes
through `GIT_CONFIG_*` environment variables of asm's own git processes that talk to the remote,
and that reads the token from their environment. Tool commands get neither. git runs through
subprocess with exactly the environment built here (not the worker's, merged). The token is the
remote's, asked for as each such process starts (a GitHub App's differs per installation and is
replaced every hour): a push keeps the one it started with.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from asm.errors import BranchMoved, SecretInChange, WorkspaceError
from asm.github_auth import AUTHOR_EMAIL, AUTHOR_NAME, FixedToken, GitCredentials
from asm.guard.jail import SCRATCH, Jail, Limits, prepare, tool_environment
from asm.guard.redaction import Secrets
from asm.keys import IssueRef

log = logging.getLogger(__name__)

# Runs starting within this many seconds of each other share one fetch of the mirror: a base a
# few seconds old is as good as new, and a burst of issues does not fetch once per issue.
MIRROR_FRESH_SECONDS = 10.0
REMOTE_ATTEMPTS = 3
REMOTE_BACKOFF_SECONDS = 2.0
LEFT_BY_TOOLS = ("__pycache__/", "*.pyc", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".venv/",
                 "node_modules/", ".tox/", ".coverage")
MAX_CHANGE_BYTES = 100 << 20  # a bigger diff is not a change a person will review
EXTRACT_SECONDS = 300
SWITCH_SECONDS = 120
# Run inside the sandbox, in the agents' tree: everything they changed since the base, as data.
# Their own git config applies there, which is theirs to shape: only the output leaves.
# What git cannot add (an empty nested repository, an unreadable file) is left out, not fatal.
EXTRACT_COMMAND = ("git add --all --ignore-errors . >/dev/null 2>&1; git diff --cached --binary --full-index "
                   "--no-color --no-ext-diff --no-textconv --no-renames {base}")
GITLINK = "160000"  # a nested repository's entry: never part of a change asm pushes
# Commits of a branch a new run would replace that are read for their authors: past this many, a branch is
# someone's work whatever the rest are.
FOREIGN_COMMITS_READ = 500
SHOW_MAX_BYTES = 1 << 20  # read from a commit: more of a file than anyone gives a model or runs as a script
# Run inside the sandbox, in the agents' tree: the names of what they changed since the base (committed or
# not) and what they added, NUL-separated. GIT_OPTIONAL_LOCKS=0: a look must not rewrite their index.
CHANGED_COMMAND = ("export GIT_OPTIONAL_LOCKS=0; git diff --name-only -z --no-renames --no-ext-diff {base} -- "
                   "2>/dev/null; git ls-files -z --others --exclude-standard 2>/dev/null")
# What is untracked, a whole untracked directory as one name ending in / (node_modules/, not its files).
UNTRACKED_COMMAND = "export GIT_OPTIONAL_LOCKS=0; git ls-files -z --others --exclude-standard --directory 2>/dev/null"
CHANGED_LIST_BYTES = 1 << 20  # names enough for any change a person reviews; a longer list is cut
CHANGED_SECONDS = 60
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
    """An issue's workspace: the agents' tree and scratch, and asm's own repository beside them."""

    path: Path
    branch: str
    base: str
    base_sha: str

    @property
    def tree(self) -> Path:
        """The agents' working tree: a clone of their own, seen by tool commands as /workspace."""
        return self.path / "tree"

    @property
    def scratch(self) -> Path:
        """The agents' /tmp (and HOME), kept between their commands, never part of the change."""
        return self.path / "tmp"

    @property
    def repo(self) -> Path:
        """asm's own bare repository: the change is applied, committed and pushed here, never seen by tools."""
        return self.path / "asm.git"


class Pending:
    """A checkout being created on a thread; `wait()` gives it (or raises what creating it raised)."""

    def __init__(self, path: Path, future: Future[Checkout]) -> None:
        self.path = path
        self.tree = path / "tree"
        self.scratch = path / "tmp"
        self.future = future

    def wait(self) -> Checkout:
        return self.future.result()


@dataclass(frozen=True)
class Blob:
    """A file as a commit of asm's repository holds it: its object id, its whole size, its first bytes."""

    sha: str
    size: int
    data: bytes  # at most the `max_bytes` asked for

    @property
    def clipped(self) -> bool:
        return len(self.data) < self.size


class Workspaces:
    """Creates, commits, pushes and removes issue workspaces under one root."""

    def __init__(self, root: Path, credentials: str | GitCredentials, jail: Jail, secrets: Secrets,
                 mirror_fresh_seconds: float = MIRROR_FRESH_SECONDS,
                 remote_backoff_seconds: float = REMOTE_BACKOFF_SECONDS) -> None:
        self.root = Path(os.path.abspath(root))
        self.jail = jail
        self.secrets = secrets
        self.mirror_fresh_seconds = mirror_fresh_seconds
        self.remote_backoff_seconds = remote_backoff_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workspace")
        # Only commands that talk to the remote get a token (a string: the one token for every remote); local ones
        # run without it.
        self.credentials = FixedToken(credentials) if isinstance(credentials, str) else credentials
        self.local_env = git_environment("")

    def _git(self, *args: str, cwd: Path | None = None, remote: str = "", env: dict[str, str] | None = None,
             stdin: bytes | None = None) -> str:
        """Run git with exactly asm's environment (the token only when talking to `remote`)."""
        base = self.local_env
        if remote:  # one token for every attempt: asked for once, as the command starts
            base = git_environment(self.credentials.git_token(remote), urlsplit(remote).netloc.rpartition("@")[2])
        attempts = REMOTE_ATTEMPTS if remote else 1
        for attempt in range(1, attempts + 1):
            done = subprocess.run(["git", *args], cwd=cwd, env={**base, **(env or {})}, input=stdin,
                                  capture_output=True)
            if done.returncode == 0:
                return done.stdout.decode(errors="replace")
            if attempt < attempts:  # the network, or GitHub, having a bad moment
                time.sleep(self.remote_backoff_seconds * attempt)
        # stderr may quote a URL but never a token: none is ever in a URL or argument.
        raise WorkspaceError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()[-500:]}")

    def _private(self, path: Path) -> Path:
        """A directory of asm's that no other user of the machine may read (mirrors may be private).

        Unconfined tool commands run as another user must still reach the tree: they may pass through.
        """
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700 if self.jail.confined or self.jail.owner is None else 0o711)
        return path

    def mirror(self, repo: str, clone_url: str, needs: str = "") -> Path:
        """This machine's mirror of the repository, fetched unless another run just fetched it (and it holds
        the commit `needs`, when one is named)."""
        owner, name = repo.split("/", 1)
        path = self._private(self.root / ".mirrors") / f"{owner}__{name}.git"
        marker = path / "asm-fetched"  # holds the clone URL; its age says when the mirror was fetched
        with _file_lock(path.with_suffix(".lock")):
            if not (path / "HEAD").exists():
                shutil.rmtree(path, ignore_errors=True)
                self._git("clone", "--mirror", "--quiet", clone_url, str(path), remote=clone_url)
            elif not (marker.exists() and marker.read_text() == clone_url
                      and time.time() - marker.stat().st_mtime < self.mirror_fresh_seconds
                      and (not needs or self._has_commit(path, needs))):
                self._git("remote", "set-url", "origin", clone_url, cwd=path)
                self._git("fetch", "--prune", "--quiet", "origin", cwd=path, remote=clone_url)
            else:
                return path
            marker.write_text(clone_url)
        return path

    def path_for(self, worker: str, issue: IssueRef) -> Path:
        return self.root / worker / issue.workspace_name

    def start(self, worker: str, issue: IssueRef, clone_url: str, base: str, at: str = "") -> Pending:
        """Begin `create` on a thread, so the clone overlaps the model's first turn."""
        future = self._executor.submit(self.create, worker, issue, clone_url, base, at)
        return Pending(self.path_for(worker, issue), future)

    def create(self, worker: str, issue: IssueRef, clone_url: str, base: str, at: str = "") -> Checkout:
        """A fresh workspace: asm's repository, and the agents' tree on `ai-feature/issue-N` from the branch `base`.

        `at`: a commit the branch has reached (a pull request's head, which a follow-up run starts from): a mirror
        without it is fetched first, however fresh. The tree starts from the branch's tip.
        """
        mirror = self.mirror(issue.repo, clone_url, needs=at)
        self._private(self.root)
        path = self.path_for(worker, issue)
        shutil.rmtree(path, ignore_errors=True)  # what an interrupted attempt left
        self._private(path)
        checkout = Checkout(path, issue.branch, base, "")
        with _file_lock(mirror.with_suffix(".lock"), shared=True):
            # asm's repository may share the mirror's objects (hard links): only asm writes either.
            self._git("clone", "--bare", "--quiet", str(mirror), str(checkout.repo))
            # The agents' tree must share nothing: a hard-linked object written through it would
            # change the mirror, and every later run of every issue.
            self._git("clone", "--quiet", "--no-hardlinks", "--no-checkout", str(mirror), str(checkout.tree))
        try:
            base_sha = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{base}^{{commit}}",
                                 cwd=checkout.repo).strip()
        except WorkspaceError:
            raise WorkspaceError(f"git rev-parse failed: the base branch {base} is not in {issue.repo}") from None
        # The last time asm runs git in the tree: freshly cloned, nothing of the agents' in it yet.
        self._git("remote", "set-url", "origin", clone_url, cwd=checkout.tree)
        self._git("checkout", "--quiet", "-B", issue.branch, base_sha, cwd=checkout.tree)
        # What tools leave behind stays out of the agents' `git status`, whatever the repository ignores.
        with open(checkout.tree / ".git" / "info" / "exclude", "a") as exclude:
            exclude.write("\n".join(("", *LEFT_BY_TOOLS, "")))
        prepare(checkout.tree, checkout.scratch, self.jail.owner)
        return Checkout(path, issue.branch, base, base_sha)

    def extract(self, checkout: Checkout) -> bytes:
        """The team's change as a binary diff against the base, made inside the sandbox."""
        errors_path = checkout.path / "extract.err"
        env = {**tool_environment(), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        limits = Limits(file_bytes=MAX_CHANGE_BYTES)
        with open(checkout.path / "change.patch", "w+b") as patch, open(errors_path, "w+b") as errors:
            done = self.jail.run(EXTRACT_COMMAND.format(base=checkout.base_sha), checkout.tree, checkout.scratch,
                                 env, patch, errors, timeout=EXTRACT_SECONDS, limits=limits)
            errors.seek(0)
            said = errors.read()[-1000:].decode(errors="replace").strip()
            if done.stopped or done.exit_code != 0:
                raise WorkspaceError("could not take the team's change out of the working tree "
                                     f"({done.stopped or f'exit code {done.exit_code}'}): {said[-500:]}")
            patch.seek(0)
            return patch.read()

    def commit(self, checkout: Checkout, message: str) -> str | None:
        """Apply the team's change to asm's repository and commit it on the issue branch; None if nothing changed.

        SecretInChange when a file the change writes (or its name) holds one of asm's secrets.
        """
        change = self.extract(checkout)
        if not change.strip():
            return None
        patch = checkout.path / "change.patch"
        index = {"GIT_INDEX_FILE": str(checkout.path / "asm.index")}
        repo = checkout.repo
        self._git("read-tree", checkout.base_sha, cwd=repo, env=index)
        # git apply refuses paths in .git, outside the tree, or beyond a symbolic link.
        self._git("apply", "--cached", "--binary", "--whitespace=nowarn", *_excludes(LEFT_BY_TOOLS), str(patch),
                  cwd=repo, env=index)
        written = self._written(checkout, index)
        nested = [path for mode, _, path in written if mode == GITLINK]
        if nested:  # mode 0 removes an entry, and needs no work tree (asm's repository has none)
            removal = "".join(f"0 {'0' * 40}\t{path}\0" for path in nested).encode()
            self._git("update-index", "-z", "--index-info", cwd=repo, env=index, stdin=removal)
        self._refuse_secrets(checkout, [(sha, path) for mode, sha, path in written if mode != GITLINK])
        tree = self._git("write-tree", cwd=repo, env=index).strip()
        if tree == self._git("rev-parse", f"{checkout.base_sha}^{{tree}}", cwd=repo).strip():
            return None
        name, email = self.credentials.git_identity()  # asm's, or a GitHub App's bot
        identity = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
                    "GIT_COMMITTER_EMAIL": email}
        head = self._git("commit-tree", tree, "-p", checkout.base_sha, "-m", message, cwd=repo, env=identity).strip()
        self._git("update-ref", f"refs/heads/{checkout.branch}", head, cwd=repo)
        return head

    def _written(self, checkout: Checkout, index: dict[str, str]) -> list[tuple[str, str, str]]:
        """(mode, blob, path) of every file the applied change adds or modifies."""
        raw = self._git("diff", "--cached", "--raw", "-z", "--no-renames", "--diff-filter=AM", checkout.base_sha,
                        cwd=checkout.repo, env=index)
        fields = raw.split("\0")
        # Each entry is ":old_mode new_mode old_sha new_sha status" then the path.
        return [(fields[i].split()[1], fields[i].split()[3], fields[i + 1])
                for i in range(0, len(fields) - 1, 2) if fields[i]]

    def _refuse_secrets(self, checkout: Checkout, written: list[tuple[str, str]]) -> None:
        """Raise SecretInChange naming every file written that holds a secret (or has one in its name)."""
        leaking = [path for _, path in written if self.secrets.found_in(path)]
        if written:
            shas = "".join(f"{sha}\n" for sha, _ in written).encode()
            blobs = subprocess.run(["git", "cat-file", "--batch"], cwd=checkout.repo, env=self.local_env,
                                   input=shas, capture_output=True, check=True).stdout
            for (_, path), content in zip(written, _batch_contents(blobs), strict=True):
                if path not in leaking and self.secrets.found_in(content):
                    leaking.append(path)
        if leaking:
            # A secret can sit in a file's name too: the names are shown redacted.
            named = ", ".join(f"`{self.secrets.redact(path)}`" for path in sorted(leaking)[:20])
            raise SecretInChange(f"the change writes one of asm's own secrets into {named}; nothing was pushed. "
                                 "The files are named here, the secret is not.")

    def push(self, checkout: Checkout, clone_url: str) -> None:
        """Push the branch's new commit on top of the remote branch (a follow-up on a pull request): git
        refuses to drop anyone's commits."""
        ref = f"refs/heads/{checkout.branch}"
        self._git("push", "--quiet", clone_url, f"{ref}:{ref}", cwd=checkout.repo, remote=clone_url)

    def replace(self, checkout: Checkout, clone_url: str, tip: str | None) -> None:
        """Make the remote branch asm's new commit, in place of `tip` (None: the branch must not exist yet),
        which `foreign_commits` found to hold nothing but asm's own work. BranchMoved, and nothing pushed,
        when the branch is no longer at `tip`: someone pushed while the team worked."""
        ref = f"refs/heads/{checkout.branch}"
        try:
            self._git("push", "--quiet", f"--force-with-lease={ref}:{tip or ''}", clone_url, f"{ref}:{ref}",
                      cwd=checkout.repo, remote=clone_url)
        except WorkspaceError:
            now = self.remote_branch_sha(clone_url, checkout.branch)
            if now != tip:
                raise BranchMoved(checkout.branch, now) from None
            raise

    def foreign_commits(self, checkout: Checkout, clone_url: str, tip: str) -> list[str]:
        """The commits the remote branch has at `tip`, beyond the base, that asm did not both write and
        commit (a person's, or one made on GitHub): a new run must not replace them."""
        if not self._has_commit(checkout.repo, tip):  # pushed since the mirror was fetched
            self._git("fetch", "--quiet", clone_url, f"refs/heads/{checkout.branch}", cwd=checkout.repo,
                      remote=clone_url)
        if not self._has_commit(checkout.repo, tip):
            raise BranchMoved(checkout.branch, self.remote_branch_sha(clone_url, checkout.branch))
        _, email = self.credentials.git_identity()
        listed = self._git("log", f"--max-count={FOREIGN_COMMITS_READ}", "--format=%H%x00%ae%x00%ce", tip, "--not",
                           checkout.base_sha, cwd=checkout.repo)
        return [sha for sha, author, committer in (line.split("\0") for line in listed.splitlines())
                if (author, committer) != (email, email)]

    def diff(self, checkout: Checkout, against: str, names_only: bool = False) -> str:
        """The change of the commit the workspace started from, against the branch `against` (a pull
        request's diff: from where they meet to its head), as text, or the names of the files it changes."""
        base = self._git("merge-base", f"refs/heads/{against}", checkout.base_sha, cwd=checkout.repo).strip()
        return self._git("diff", "--no-color", "--no-ext-diff", "--no-textconv", *(["--name-only"] * names_only),
                         base, checkout.base_sha, cwd=checkout.repo)

    def _has_commit(self, repository: Path, sha: str) -> bool:
        done = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=repository, env=self.local_env,
                              capture_output=True)
        return done.returncode == 0

    def remote_branch_sha(self, clone_url: str, branch: str) -> str | None:
        """The tip of `branch` on the remote, or None."""
        line = self._git("ls-remote", clone_url, f"refs/heads/{branch}", remote=clone_url).strip()
        return line.split()[0] if line else None

    def changed_files(self, checkout: Checkout) -> list[str]:
        output = self._git("diff", "--name-only", checkout.base_sha, f"refs/heads/{checkout.branch}",
                           cwd=checkout.repo)
        return [line for line in output.splitlines() if line]

    # -- reading the repository as a commit holds it (asm's repository; never the agents' tree) -----------

    def resolve(self, checkout: Checkout, rev: str) -> str:
        """The commit `rev` names in asm's repository (a branch as `refs/heads/NAME`, or a sha)."""
        if not rev or rev.startswith("-") or ":" in rev:
            raise WorkspaceError(f"not a revision asm reads from: {rev!r}")
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=checkout.repo).strip()
        except WorkspaceError:
            raise WorkspaceError(f"git rev-parse failed: {rev} is not in asm's copy of the repository") from None

    def show(self, checkout: Checkout, rev: str, path: str, max_bytes: int = SHOW_MAX_BYTES) -> Blob | None:
        """The file at `path` in commit `rev` of asm's repository, its first `max_bytes` read; None if there is none.

        A symbolic link is followed inside the commit (git does it, from the objects: nothing on disk);
        one that leads out of the commit, a directory or a nested repository is None. However big the
        file, only `max_bytes` of it are read.
        """
        commit = self.resolve(checkout, rev)
        if not path or "\n" in path:  # cat-file's batch protocol is one request a line
            return None
        with subprocess.Popen(["git", "cat-file", "--batch", "--follow-symlinks"], cwd=checkout.repo,
                              env=self.local_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) as reader:
            assert reader.stdin is not None and reader.stdout is not None  # both piped above
            reader.stdin.write(f"{commit}:{path}\n".encode(errors="surrogateescape"))
            reader.stdin.close()
            # "<sha> blob <size>", or "<name> missing", "symlink <size>" (out of the commit), "dangling <size>"...
            header = reader.stdout.readline().split()
            found = len(header) == 3 and header[1] == b"blob"
            data = reader.stdout.read(min(int(header[2]), max_bytes)) if found else b""
            reader.kill()  # the rest of a big file is not wanted
        return Blob(header[0].decode(), int(header[2]), data) if found else None

    def paths_named(self, checkout: Checkout, rev: str, name: str) -> list[str]:
        """Every file called `name` in commit `rev` of asm's repository, shallowest first."""
        commit = self.resolve(checkout, rev)
        done = subprocess.run(["git", "ls-tree", "-r", "-z", "--full-tree", commit], cwd=checkout.repo,
                              env=self.local_env, capture_output=True)
        if done.returncode != 0:
            raise WorkspaceError(f"git ls-tree failed: {done.stderr.decode(errors='replace').strip()[-500:]}")
        found = []
        for entry in done.stdout.split(b"\0"):
            meta, _, raw = entry.partition(b"\t")  # "<mode> <type> <sha>\t<path>"
            path = raw.decode(errors="surrogateescape")
            if meta.split()[1:2] == [b"blob"] and path.rpartition("/")[2] == name:
                found.append(path)
        return sorted(found, key=lambda path: (path.count("/"), path))

    def changed_in_tree(self, checkout: Checkout) -> list[str]:
        """The paths the team has changed or added in its tree so far, as names (the look runs in the sandbox).

        Names only, and the agents' to make up: use them to choose, never to run or open anything (bytes
        that are not UTF-8 stay as surrogates: clean a name before showing it). A tree whose git the agents
        broke gives what could be read, or nothing.
        """
        env = {**tool_environment(), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        with open(checkout.path / "changed.list", "w+b") as listing:
            self.jail.run(CHANGED_COMMAND.format(base=checkout.base_sha), checkout.tree, checkout.scratch, env,
                          listing, subprocess.DEVNULL, timeout=CHANGED_SECONDS,
                          limits=Limits(file_bytes=CHANGED_LIST_BYTES))
            listing.seek(0)
            names = listing.read().split(b"\0")
        names.pop()  # after the last NUL: empty, or a name cut short
        return sorted({name.decode(errors="surrogateescape") for name in names if name})

    def set_aside_untracked(self, checkout: Checkout) -> list[str]:
        """Keep what is untracked in the tree now (what the setup script made: dependencies, builds) out of the
        team's change, as `.git/info/exclude` entries; the names set aside. Listed inside the sandbox."""
        env = {**tool_environment(), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        with open(checkout.path / "untracked.list", "w+b") as listing:
            self.jail.run(UNTRACKED_COMMAND, checkout.tree, checkout.scratch, env, listing, subprocess.DEVNULL,
                          timeout=CHANGED_SECONDS, limits=Limits(file_bytes=CHANGED_LIST_BYTES))
            listing.seek(0)
            names = listing.read().split(b"\0")
        names.pop()  # after the last NUL: empty, or a name cut short
        # A name with a line break cannot be written as a pattern (the setup script is the repository's own).
        found = [name.decode(errors="surrogateescape") for name in names if name and b"\n" not in name]
        if found:
            # Appended inside the sandbox: the script could have made the tree's .git/info a link to anywhere
            # the worker may write, and only inside does a link lead nowhere but the tree.
            patterns = "".join(f"/{_literal_pattern(name)}\n" for name in found).encode(errors="surrogateescape")
            name = f"asm-exclude-{secrets.token_hex(6)}"
            written = checkout.scratch / name
            with open(os.open(written, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "wb") as file:
                file.write(patterns)
            source = f"{SCRATCH}/{name}" if self.jail.confined else str(written)
            try:
                with open(checkout.path / "exclude.log", "w+b") as output:
                    self.jail.run(f"cat {shlex.quote(source)} >> .git/info/exclude", checkout.tree, checkout.scratch,
                                  env, output, timeout=CHANGED_SECONDS, network=False)
            finally:
                written.unlink(missing_ok=True)
        return found

    def switch(self, checkout: Checkout, sha: str) -> Checkout:
        """Move the agents' tree to the commit `sha` (a pull request's head) on the issue branch, inside the
        sandbox with the network off. A follow-up's setup script runs on the default branch's tree first:
        code the agents wrote never runs with the network. What the script left untracked stays."""
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise WorkspaceError(f"not a commit: {sha!r}")
        env = {**tool_environment(), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        command = f"git -c core.hooksPath=/dev/null checkout -q -f -B {shlex.quote(checkout.branch)} {sha}"
        with open(checkout.path / "switch.log", "w+b") as output:
            done = self.jail.run(command, checkout.tree, checkout.scratch, env, output, timeout=SWITCH_SECONDS,
                                 network=False)
            output.seek(0)
            said = output.read()[-500:].decode(errors="replace").strip()
        if done.stopped or done.exit_code != 0:
            raise WorkspaceError(f"could not check out {sha[:12]} in the working tree "
                                 f"({done.stopped or f'exit code {done.exit_code}'}): {said}")
        return Checkout(checkout.path, checkout.branch, checkout.branch, sha)

    def remove(self, checkout: Checkout | Pending) -> None:
        """Delete the workspace: the agents' tree and scratch, asm's repository, whatever was left in them."""
        if isinstance(checkout, Pending):
            wait([checkout.future])  # never delete under a clone still running
        shutil.rmtree(checkout.path, ignore_errors=True)


def _literal_pattern(name: str) -> str:
    """A gitignore pattern matching exactly `name` (a directory's ends in /)."""
    escaped = re.sub(r"([\\*?\[\]])", r"\\\1", name)
    escaped = re.sub(r"^([#!])", r"\\\1", escaped)
    return re.sub(r" $", "\\ ", escaped)


def _excludes(patterns: tuple[str, ...]) -> list[str]:
    """`git apply --exclude` options for gitignore-style patterns, at any depth."""
    options = []
    for pattern in patterns:
        glob = f"{pattern}*" if pattern.endswith("/") else pattern
        options += [f"--exclude={glob}", f"--exclude=*/{glob}"]
    return options


def _batch_contents(output: bytes) -> Iterator[bytes]:
    """The contents of the objects in `git cat-file --batch` output, in order."""
    at = 0
    while at < len(output):
        header_end = output.index(b"\n", at)
        size = int(output[at:header_end].split()[2])
        yield output[header_end + 1: header_end + 1 + size]
        at = header_end + 1 + size + 1
