"""Git workspaces on a real bare repository of the sandbox GitHub: the agents' tree, asm's own repository,
the change taken out inside the sandbox, secrets refused, no token on disk, nothing of the agents' run by asm."""

from __future__ import annotations

import base64
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from asm.errors import BranchMoved, SecretInChange, WorkspaceError
from asm.guard.jail import Jail, tool_environment
from asm.guard.redaction import Secrets
from asm.keys import IssueRef
from asm.sandbox.github_state import GitHubState
from asm.workspace import Checkout, Workspaces, git_environment

TOKEN = "ghp_SECRET123workspace"
REPO = "acme/shop"
ISSUE = IssueRef(REPO, 4)
FILES = {"README.md": "# shop\n", "src/app.py": "VERSION = 1\n"}


def git(*args: str, cwd: Path | None = None) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false",
                "-c", "safe.directory=*"]  # the test reads trees that belong to the tool user
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def state(tmp_path: Path) -> GitHubState:
    state = GitHubState(tmp_path / "github", TOKEN)
    state.create_repo(REPO, FILES)
    return state


@pytest.fixture
def clone_url(state: GitHubState) -> str:
    return state.repo(REPO).clone_url


@pytest.fixture
def jail() -> Jail:
    return Jail()


@pytest.fixture
def workspaces(tmp_path: Path, jail: Jail) -> Workspaces:
    # No wait between attempts at the remote: a remote that fails here fails every attempt alike.
    return Workspaces(tmp_path / "work", TOKEN, jail, Secrets([TOKEN]), remote_backoff_seconds=0)


@pytest.fixture
def checkout(workspaces: Workspaces, clone_url: str) -> Checkout:
    return workspaces.create("worker-1", ISSUE, clone_url, "main")


def agent(workspaces: Workspaces, checkout: Checkout, command: str) -> str:
    """What an agent does with the bash tool: a command in the sandbox, in its tree."""
    with tempfile.TemporaryFile() as output:
        done = workspaces.jail.run(command, checkout.tree, checkout.scratch, tool_environment(), output, timeout=60)
        output.seek(0)
        said = output.read().decode(errors="replace")
    assert done.exit_code == 0 and not done.stopped, said
    return said


def tree_of_branch(checkout: Checkout) -> str:
    return git("ls-tree", "-r", checkout.branch, cwd=checkout.repo)


def test_clone_urls_of_the_sandbox_are_file_urls(clone_url: str) -> None:
    assert clone_url.startswith("file://")


# -- create ----------------------------------------------------------------------------------------------


def test_create_gives_the_agents_a_tree_on_the_issue_branch_and_asm_a_repository_of_its_own(
        checkout: Checkout, state: GitHubState, workspaces: Workspaces, jail: Jail) -> None:
    assert checkout.path == workspaces.root / "worker-1" / "acme__shop" / "issue-4"
    assert checkout.branch == "ai-feature/issue-4"
    assert checkout.base == "main"
    assert checkout.base_sha == state.branch_sha(REPO, "main")
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=checkout.tree).strip() == "ai-feature/issue-4"
    assert (checkout.tree / "README.md").read_text() == "# shop\n"
    assert (checkout.tree / "src" / "app.py").read_text() == "VERSION = 1\n"
    assert git("rev-parse", "--is-bare-repository", cwd=checkout.repo).strip() == "true"
    assert checkout.scratch.is_dir() and (checkout.scratch / "home").is_dir()
    assert (checkout.path.stat().st_mode & 0o777) == 0o700  # no other user of the machine reads it
    if jail.owner is not None:  # a root worker hands the tree and the scratch to the tool user
        assert (checkout.tree / "README.md").stat().st_uid == jail.owner[0]
        assert checkout.scratch.stat().st_uid == jail.owner[0]
        assert checkout.repo.stat().st_uid == 0


def test_the_agents_tree_shares_no_file_with_the_mirror(checkout: Checkout, workspaces: Workspaces) -> None:
    mirror = workspaces.root / ".mirrors" / "acme__shop.git"
    mirrored = {path.stat().st_ino for path in (mirror / "objects").rglob("*") if path.is_file()}
    in_tree = {path.stat().st_ino for path in (checkout.tree / ".git" / "objects").rglob("*") if path.is_file()}

    assert in_tree and not mirrored & in_tree


def test_an_agent_that_overwrites_its_objects_cannot_touch_the_mirror_or_the_next_run(
        workspaces: Workspaces, checkout: Checkout, clone_url: str) -> None:
    agent(workspaces, checkout, "for f in $(find .git/objects -type f); do chmod u+w $f; echo garbage > $f; done")
    mirror = workspaces.root / ".mirrors" / "acme__shop.git"

    git("fsck", "--strict", cwd=mirror)
    later = workspaces.create("worker-2", IssueRef(REPO, 5), clone_url, "main")
    assert (later.tree / "src" / "app.py").read_text() == "VERSION = 1\n"
    git("fsck", cwd=later.repo)


def test_create_keeps_a_mirror_per_repository_that_only_asm_reads(checkout: Checkout,
                                                                  workspaces: Workspaces) -> None:
    mirror = workspaces.root / ".mirrors" / "acme__shop.git"

    assert (mirror / "HEAD").exists()
    assert git("rev-parse", "refs/heads/main", cwd=mirror).strip() == checkout.base_sha
    assert (mirror.parent.stat().st_mode & 0o777) == 0o700


def test_create_on_a_repository_whose_default_branch_is_develop(tmp_path: Path, workspaces: Workspaces) -> None:
    state = GitHubState(tmp_path / "gh-develop", TOKEN)
    state.create_repo("acme/dev", {"DEV.md": "develop only\n"}, default_branch="develop")

    checkout = workspaces.create("worker-1", IssueRef("acme/dev", 9), state.repo("acme/dev").clone_url, "develop")

    assert checkout.base == "develop"
    assert checkout.base_sha == state.branch_sha("acme/dev", "develop")
    assert (checkout.tree / "DEV.md").read_text() == "develop only\n"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=checkout.tree).strip() == "ai-feature/issue-9"


def push_a_human_change(clone_url: str, where: Path) -> None:
    """Someone else pushes a commit to main after the mirror was made."""
    git("clone", "--quiet", clone_url, str(where))
    (where / "NEW.md").write_text("new\n")
    git("add", "--all", cwd=where)
    git("commit", "--quiet", "-m", "human change", cwd=where)
    git("push", "--quiet", "origin", "main", cwd=where)


def test_create_sees_commits_pushed_since_the_mirror_was_made(clone_url: str, tmp_path: Path,
                                                              state: GitHubState, jail: Jail) -> None:
    workspaces = Workspaces(tmp_path / "fresh", TOKEN, jail, Secrets([TOKEN]), mirror_fresh_seconds=0)
    workspaces.create("worker-1", ISSUE, clone_url, "main")
    push_a_human_change(clone_url, tmp_path / "human")

    fresh = workspaces.create("worker-2", IssueRef(REPO, 5), clone_url, "main")

    assert fresh.base_sha == state.branch_sha(REPO, "main")
    assert (fresh.tree / "NEW.md").read_text() == "new\n"


def test_runs_close_together_share_one_fetch_of_the_mirror(workspaces: Workspaces, clone_url: str,
                                                           tmp_path: Path, state: GitHubState) -> None:
    first = workspaces.create("worker-1", ISSUE, clone_url, "main")
    push_a_human_change(clone_url, tmp_path / "human")

    soon = workspaces.create("worker-2", IssueRef(REPO, 5), clone_url, "main")

    assert soon.base_sha == first.base_sha != state.branch_sha(REPO, "main")


def test_create_again_starts_from_a_clean_workspace(workspaces: Workspaces, clone_url: str,
                                                    checkout: Checkout) -> None:
    agent(workspaces, checkout, "echo from a crashed run > leftover.txt && echo scratch > /tmp/note")

    again = workspaces.create("worker-1", ISSUE, clone_url, "main")

    assert again.path == checkout.path
    assert not (again.tree / "leftover.txt").exists()
    assert list(again.scratch.iterdir()) == [again.scratch / "home"]


def test_create_from_a_missing_repository_is_a_workspace_error(workspaces: Workspaces, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="clone"):
        workspaces.create("worker-1", ISSUE, "file://" + str(tmp_path / "nowhere.git"), "main")


def test_a_remote_that_keeps_failing_is_tried_again_with_a_growing_wait(tmp_path: Path, jail: Jail) -> None:
    patient = Workspaces(tmp_path / "work", TOKEN, jail, Secrets([TOKEN]), remote_backoff_seconds=0.1)
    started = time.monotonic()
    with pytest.raises(WorkspaceError, match="clone"):
        patient.create("worker-1", ISSUE, "file://" + str(tmp_path / "nowhere.git"), "main")
    assert time.monotonic() - started >= 0.1 + 0.2  # three attempts, waiting 1 then 2 backoffs between


def test_create_from_a_missing_base_branch_is_a_workspace_error(workspaces: Workspaces, clone_url: str) -> None:
    with pytest.raises(WorkspaceError, match="rev-parse"):
        workspaces.create("worker-1", ISSUE, clone_url, "no-such-branch")


# -- the change: taken out in the sandbox, committed and pushed from asm's repository -----------------------


def test_commit_and_push_land_the_agents_change_on_the_remote_branch(workspaces: Workspaces, checkout: Checkout,
                                                                     clone_url: str, state: GitHubState) -> None:
    agent(workspaces, checkout, "echo 'VERSION = 2' > src/app.py && echo 'NEW = True' > src/new.py")

    sha = workspaces.commit(checkout, "Resolve #4")
    assert sha
    workspaces.push(checkout, clone_url)

    assert state.branch_sha(REPO, "ai-feature/issue-4") == sha
    assert workspaces.remote_branch_sha(clone_url, "ai-feature/issue-4") == sha
    assert state.file_at(REPO, "ai-feature/issue-4", "src/app.py") == "VERSION = 2\n"
    assert state.file_at(REPO, "ai-feature/issue-4", "src/new.py") == "NEW = True\n"
    assert state.branch_sha(REPO, "main") == checkout.base_sha  # the base is untouched
    assert workspaces.changed_files(checkout) == ["src/app.py", "src/new.py"]


def test_binary_files_modes_symlinks_and_deletions_travel_as_they_are(workspaces: Workspaces,
                                                                       checkout: Checkout) -> None:
    agent(workspaces, checkout, r"printf '\000\001\377' > blob.bin && printf '#!/bin/sh\n' > run.sh && "
                                "chmod +x run.sh && ln -s README.md docs.md && rm src/app.py")

    workspaces.commit(checkout, "many kinds")

    entries = {line.split("\t")[1]: line.split()[0] for line in tree_of_branch(checkout).splitlines()}
    assert entries == {"README.md": "100644", "blob.bin": "100644", "docs.md": "120000", "run.sh": "100755"}
    blob = subprocess.run(["git", "show", f"{checkout.branch}:blob.bin"], cwd=checkout.repo, capture_output=True)
    assert blob.stdout == b"\x00\x01\xff"


def test_what_tools_leave_behind_is_not_part_of_the_change(workspaces: Workspaces, checkout: Checkout) -> None:
    # The agents may drop the exclusions asm gave their git: asm excludes again when it applies the change.
    agent(workspaces, checkout, "mkdir -p src/__pycache__ && echo x > src/__pycache__/app.pyc && "
                                "echo y > .coverage && echo real > src/real.py && : > .git/info/exclude")

    workspaces.commit(checkout, "change")

    assert workspaces.changed_files(checkout) == ["src/real.py"]


def test_the_commit_is_asms_on_the_base_whatever_the_agents_committed(workspaces: Workspaces,
                                                                      checkout: Checkout) -> None:
    agent(workspaces, checkout, "echo x > x.txt && git add x.txt && "
                                "git -c user.name=agent -c user.email=a@b.invalid commit -qm mine")

    workspaces.commit(checkout, "Resolve #4")

    assert git("log", "-1", "--format=%an <%ae>|%s|%P", checkout.branch, cwd=checkout.repo).strip() == \
        f"asm <asm@users.noreply.github.com>|Resolve #4|{checkout.base_sha}"
    assert workspaces.changed_files(checkout) == ["x.txt"]


def test_commit_with_nothing_changed_returns_none(workspaces: Workspaces, checkout: Checkout) -> None:
    assert workspaces.commit(checkout, "nothing") is None


def test_a_change_undone_again_and_work_in_scratch_are_nothing(workspaces: Workspaces, checkout: Checkout) -> None:
    agent(workspaces, checkout, "echo tmp > tmp.txt && rm tmp.txt && echo scratch > /tmp/only-scratch")

    assert workspaces.commit(checkout, "nothing") is None


def test_commit_twice_keeps_one_commit_with_the_whole_change(workspaces: Workspaces, checkout: Checkout) -> None:
    agent(workspaces, checkout, "echo x > x.txt")
    assert workspaces.commit(checkout, "first")
    agent(workspaces, checkout, "echo y > y.txt")

    assert workspaces.commit(checkout, "second")
    assert git("rev-list", "--count", f"{checkout.base_sha}..{checkout.branch}", cwd=checkout.repo).strip() == "1"
    assert workspaces.changed_files(checkout) == ["x.txt", "y.txt"]


def a_person_pushes(state: GitHubState, branch: str, where: Path) -> str:
    """A commit by someone other than asm on `branch`, pushed as a person would; its sha."""
    git("clone", "--quiet", "-b", branch, str(state.repo(REPO).path), str(where))
    (where / "theirs.txt").write_text("a person's work\n")
    git("add", "theirs.txt", cwd=where)
    git("commit", "--quiet", "-m", "mine", cwd=where)
    git("push", "--quiet", "origin", branch, cwd=where)
    return git("rev-parse", "HEAD", cwd=where).strip()


def test_replace_takes_the_place_of_an_earlier_attempt_of_asms(workspaces: Workspaces, clone_url: str,
                                                               state: GitHubState) -> None:
    first = workspaces.create("worker-1", ISSUE, clone_url, "main")
    agent(workspaces, first, "echo one > attempt.txt")
    earlier = workspaces.commit(first, "attempt 1")
    workspaces.replace(first, clone_url, None)

    second = workspaces.create("worker-2", ISSUE, clone_url, "main")
    agent(workspaces, second, "echo two > attempt.txt")
    head = workspaces.commit(second, "attempt 2")
    assert workspaces.remote_branch_sha(clone_url, second.branch) == earlier
    assert workspaces.foreign_commits(second, clone_url, earlier) == []
    workspaces.replace(second, clone_url, earlier)

    assert state.file_at(REPO, "ai-feature/issue-4", "attempt.txt") == "two\n"
    assert state.branch_sha(REPO, "ai-feature/issue-4") == head


def test_a_persons_commit_is_foreign_and_never_replaced(workspaces: Workspaces, clone_url: str, state: GitHubState,
                                                        tmp_path: Path) -> None:
    first = workspaces.create("worker-1", ISSUE, clone_url, "main")
    agent(workspaces, first, "echo one > attempt.txt")
    ours = workspaces.commit(first, "attempt 1")
    workspaces.replace(first, clone_url, None)
    second = workspaces.create("worker-2", ISSUE, clone_url, "main")  # its mirror is fresh: it lacks what follows
    theirs = a_person_pushes(state, ISSUE.branch, tmp_path / "person")

    assert workspaces.foreign_commits(second, clone_url, theirs) == [theirs]  # fetched: the mirror was behind
    agent(workspaces, second, "echo two > attempt.txt")
    workspaces.commit(second, "attempt 2")
    with pytest.raises(BranchMoved) as moved:  # what the run saw was asm's own commit; the branch moved on
        workspaces.replace(second, clone_url, ours)
    assert moved.value.now == theirs
    with pytest.raises(BranchMoved):  # and a run that found no branch never replaces one made meanwhile
        workspaces.replace(second, clone_url, None)
    with pytest.raises(WorkspaceError):  # a follow-up's plain push never drops a commit either
        workspaces.push(second, clone_url)
    assert state.branch_sha(REPO, ISSUE.branch) == theirs


def test_a_commit_made_on_github_for_asm_is_not_asms(workspaces: Workspaces, clone_url: str, state: GitHubState,
                                                     tmp_path: Path) -> None:
    first = workspaces.create("worker-1", ISSUE, clone_url, "main")
    agent(workspaces, first, "echo one > attempt.txt")
    workspaces.commit(first, "attempt 1")
    workspaces.replace(first, clone_url, None)
    name, email = workspaces.credentials.git_identity()
    where = tmp_path / "web"
    git("clone", "--quiet", "-b", ISSUE.branch, str(state.repo(REPO).path), str(where))
    # Written as asm (a suggestion accepted on GitHub keeps its author), committed by someone else.
    subprocess.run(["git", "-c", f"user.name={name}", "-c", f"user.email={email}", "-c", "commit.gpgsign=false",
                    "commit", "--quiet", "--allow-empty", "-m", "Apply suggestion"], cwd=where, check=True,
                   env={"PATH": "/usr/bin:/bin", "GIT_COMMITTER_NAME": "GitHub",
                        "GIT_COMMITTER_EMAIL": "noreply@github.com"})
    git("push", "--quiet", "origin", ISSUE.branch, cwd=where)
    tip = git("rev-parse", "HEAD", cwd=where).strip()

    second = workspaces.create("worker-2", ISSUE, clone_url, "main")
    assert workspaces.foreign_commits(second, clone_url, tip) == [tip]


def test_remote_branch_sha_of_a_missing_branch_is_none(workspaces: Workspaces, clone_url: str) -> None:
    assert workspaces.remote_branch_sha(clone_url, "ai-feature/issue-404") is None


# -- a secret in the change is never pushed ------------------------------------------------------------------


@pytest.mark.parametrize("encoded", [
    TOKEN,
    base64.b64encode(TOKEN.encode()).decode(),
    base64.b64encode(b"prefix:" + TOKEN.encode()).decode(),
    TOKEN.encode().hex(),
    "".join(f"%{byte:02X}" for byte in TOKEN.encode()),
], ids=["plain", "base64", "base64-inside", "hex", "url"])
def test_a_change_that_adds_a_secret_is_refused_naming_the_file_not_the_secret(
        workspaces: Workspaces, checkout: Checkout, state: GitHubState, encoded: str) -> None:
    agent(workspaces, checkout, f"mkdir -p conf && echo 'key = {encoded}' > conf/settings.ini && echo ok > fine.txt")

    with pytest.raises(SecretInChange) as refused:
        workspaces.commit(checkout, "leak")

    assert "conf/settings.ini" in str(refused.value) and "fine.txt" not in str(refused.value)
    assert not Secrets([TOKEN]).found_in(str(refused.value))
    assert state.branch_sha(REPO, "ai-feature/issue-4") is None


def test_a_secret_in_a_file_name_or_a_binary_file_is_refused(workspaces: Workspaces, checkout: Checkout) -> None:
    agent(workspaces, checkout, f"echo x > 'notes-{TOKEN}.txt' && printf '\\000{TOKEN}\\000' > data.bin")

    with pytest.raises(SecretInChange) as refused:
        workspaces.commit(checkout, "leak")

    assert "data.bin" in str(refused.value) and "notes-[redacted].txt" in str(refused.value)
    assert not Secrets([TOKEN]).found_in(str(refused.value))


# -- asm's git never runs what the agents wrote ------------------------------------------------------------


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A host file that exists only if something of the agents' ran outside the sandbox."""
    return tmp_path / "agent-code-ran-on-the-host"


PLANTED = """
for hook in pre-commit commit-msg post-commit pre-push post-checkout reference-transaction; do
  printf '#!/bin/sh\\n{run}\\n' > .git/hooks/$hook; chmod +x .git/hooks/$hook
done
git config core.fsmonitor '{run}; false'
git config core.hooksPath "$PWD/.git/hooks"
git config filter.evil.clean '{run}; cat'
git config filter.evil.smudge '{run}; cat'
git config 'url.file://{trap}.insteadOf' '{remote}'
git config core.sshCommand '{run}'
echo '* filter=evil' > .gitattributes
mkdir -p nested && cd nested && git init -q && git config core.fsmonitor '{run}; false' && cd ..
echo changed > src/app.py
"""


def test_nothing_the_agents_wrote_in_their_git_runs_when_asm_commits_and_pushes(
        workspaces: Workspaces, checkout: Checkout, clone_url: str, state: GitHubState, marker: Path,
        tmp_path: Path) -> None:
    trap = tmp_path / "trap.git"
    git("init", "--quiet", "--bare", str(trap))
    agent(workspaces, checkout, PLANTED.format(run=f"touch {marker}", trap=trap, remote=clone_url))

    sha = workspaces.commit(checkout, "change")
    workspaces.push(checkout, clone_url)

    assert not marker.exists()
    assert state.branch_sha(REPO, "ai-feature/issue-4") == sha
    assert state.file_at(REPO, "ai-feature/issue-4", "src/app.py") == "changed\n"
    assert git("for-each-ref", cwd=trap).strip() == ""  # nothing went to the trap


def test_nested_repositories_are_left_out_of_the_change(workspaces: Workspaces, checkout: Checkout) -> None:
    agent(workspaces, checkout, "git init -q empty && git init -q vendored && echo v > vendored/v.txt && "
                                "git -C vendored add v.txt && git -C vendored -c user.name=a -c user.email=a@b.invalid "
                                "commit -qm v && echo mine > mine.txt")

    workspaces.commit(checkout, "change")

    assert workspaces.changed_files(checkout) == ["mine.txt"]


def test_a_dot_git_swapped_for_another_repository_pushes_nothing_foreign(
        workspaces: Workspaces, checkout: Checkout, state: GitHubState, marker: Path) -> None:
    agent(workspaces, checkout, f"""
        mv .git /tmp/real-git
        git init -q /tmp/other && git -C /tmp/other config core.fsmonitor 'touch {marker}; false'
        printf 'gitdir: /tmp/other/.git\\n' > .git
        echo changed > src/app.py
    """)

    with pytest.raises(WorkspaceError, match="take the team's change out"):
        workspaces.commit(checkout, "change")

    assert not marker.exists()
    assert state.branch_sha(REPO, "ai-feature/issue-4") is None


def test_a_deleted_dot_git_ends_with_a_clear_error(workspaces: Workspaces, checkout: Checkout) -> None:
    agent(workspaces, checkout, "rm -rf .git && echo changed > src/app.py")

    with pytest.raises(WorkspaceError, match="take the team's change out"):
        workspaces.commit(checkout, "change")


# -- no token on disk ------------------------------------------------------------------------------------


def test_no_token_anywhere_under_the_workspace_root(workspaces: Workspaces, checkout: Checkout,
                                                    clone_url: str) -> None:
    agent(workspaces, checkout, "echo x > x.txt")
    workspaces.commit(checkout, "change")
    workspaces.push(checkout, clone_url)

    for path in workspaces.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in git("remote", "-v", cwd=checkout.tree) + git("config", "--list", cwd=checkout.repo)


# -- remove ------------------------------------------------------------------------------------------------


def test_remove_deletes_the_tree_its_scratch_and_asms_repository(workspaces: Workspaces,
                                                                 checkout: Checkout) -> None:
    agent(workspaces, checkout, "mkdir build && echo x > build/out.bin && mkdir -p /tmp/home/.cache")

    workspaces.remove(checkout)

    assert not checkout.path.exists()
    assert (workspaces.root / ".mirrors" / "acme__shop.git").exists()  # the mirror stays for the next issue


def test_remove_of_a_workspace_already_gone_is_no_error(workspaces: Workspaces, checkout: Checkout) -> None:
    workspaces.remove(checkout)
    workspaces.remove(checkout)

    assert not checkout.path.exists()


# -- git_environment -----------------------------------------------------------------------------------------


def config_pairs(env: dict[str, str]) -> list[tuple[str, str]]:
    return [(env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"]) for i in range(int(env["GIT_CONFIG_COUNT"]))]


def test_git_environment_has_a_credential_helper_and_no_token_in_config() -> None:
    env = git_environment(TOKEN)
    pairs = config_pairs(env)

    helpers = [value for key, value in pairs if key == "credential.helper"]
    assert helpers[0] == ""  # drops any helper the machine configured
    assert helpers[-1]
    assert ("core.hooksPath", "/dev/null") in pairs
    assert all(TOKEN not in value for _, value in pairs)
    assert all(TOKEN not in value for name, value in env.items() if name.startswith("GIT_"))


def ask_for_credentials(env: dict[str, str], protocol: str, host: str, cwd: Path) -> str:
    """What `git credential fill` answers (git asks on the terminal when no helper does: it may not)."""
    done = subprocess.run(["git", "credential", "fill"], input=f"protocol={protocol}\nhost={host}\n\n",
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
    return done.stdout


def test_the_credential_helper_answers_with_the_token(tmp_path: Path) -> None:
    answer = ask_for_credentials(git_environment(TOKEN, "github.com"), "https", "github.com", tmp_path)

    assert "username=x-access-token" in answer.splitlines()
    assert f"password={TOKEN}" in answer.splitlines()


@pytest.mark.parametrize(("protocol", "host"), [("https", "evil.example"), ("http", "github.com"),
                                                ("https", "github.com.evil.example")])
def test_the_credential_helper_gives_nothing_to_another_host_or_plain_http(tmp_path: Path, protocol: str,
                                                                           host: str) -> None:
    answer = ask_for_credentials(git_environment(TOKEN, "github.com"), protocol, host, tmp_path)

    assert TOKEN not in answer


def test_git_environment_holds_no_other_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-NOT-FOR-GIT")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_NOT_PASSED_BY_NAME")

    env = git_environment(TOKEN)

    assert "ANTHROPIC_API_KEY" not in env and "GITHUB_TOKEN" not in env
    assert "sk-ant-NOT-FOR-GIT" not in env.values()
