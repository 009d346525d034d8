"""Git workspaces on a real bare repository of the sandbox GitHub: mirror, branch, commit, push, no token on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from asm.errors import WorkspaceError
from asm.keys import IssueRef
from asm.sandbox.github_state import GitHubState
from asm.workspace import Checkout, Workspaces, git_environment

TOKEN = "ghp_SECRET123"
REPO = "acme/shop"
ISSUE = IssueRef(REPO, 4)
FILES = {"README.md": "# shop\n", "src/app.py": "VERSION = 1\n"}


def git(*args: str, cwd: Path | None = None) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
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
def workspaces(tmp_path: Path) -> Workspaces:
    return Workspaces(tmp_path / "work", TOKEN)


@pytest.fixture
def checkout(workspaces: Workspaces, clone_url: str) -> Checkout:
    return workspaces.create("worker-1", ISSUE, clone_url, "main")


def test_clone_urls_of_the_sandbox_are_file_urls(clone_url: str) -> None:
    assert clone_url.startswith("file://")


# -- create ----------------------------------------------------------------------------------------------


def test_create_checks_out_the_issue_branch_from_the_base(checkout: Checkout, state: GitHubState,
                                                          workspaces: Workspaces) -> None:
    assert checkout.path == workspaces.root / "worker-1" / "acme__shop" / "issue-4"
    assert checkout.branch == "ai-feature/issue-4"
    assert checkout.base == "main"
    assert checkout.base_sha == state.branch_sha(REPO, "main")
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=checkout.path).strip() == "ai-feature/issue-4"
    assert (checkout.path / "README.md").read_text() == "# shop\n"
    assert (checkout.path / "src" / "app.py").read_text() == "VERSION = 1\n"


def test_create_makes_an_empty_tool_home_outside_the_working_tree(checkout: Checkout,
                                                                  workspaces: Workspaces, clone_url: str) -> None:
    assert checkout.home.is_dir()
    assert checkout.path not in checkout.home.parents
    assert checkout.home != checkout.path
    (checkout.home / ".bash_history").write_text("ls\n")

    again = workspaces.create("worker-1", ISSUE, clone_url, "main")

    assert list(again.home.iterdir()) == []
    assert workspaces.commit(again, "nothing") is None  # the home is never part of the commit


def test_create_keeps_a_mirror_per_repository(checkout: Checkout, workspaces: Workspaces) -> None:
    mirror = workspaces.root / ".mirrors" / "acme__shop.git"

    assert (mirror / "HEAD").exists()
    assert git("rev-parse", "refs/heads/main", cwd=mirror).strip() == checkout.base_sha


def test_create_on_a_repository_whose_default_branch_is_develop(tmp_path: Path, workspaces: Workspaces) -> None:
    state = GitHubState(tmp_path / "gh-develop", TOKEN)
    state.create_repo("acme/dev", {"DEV.md": "develop only\n"}, default_branch="develop")

    checkout = workspaces.create("worker-1", IssueRef("acme/dev", 9), state.repo("acme/dev").clone_url, "develop")

    assert checkout.base == "develop"
    assert checkout.base_sha == state.branch_sha("acme/dev", "develop")
    assert (checkout.path / "DEV.md").read_text() == "develop only\n"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=checkout.path).strip() == "ai-feature/issue-9"


def push_a_human_change(clone_url: str, where: Path) -> None:
    """Someone else pushes a commit to main after the mirror was made."""
    git("clone", "--quiet", clone_url, str(where))
    (where / "NEW.md").write_text("new\n")
    git("add", "--all", cwd=where)
    git("commit", "--quiet", "-m", "human change", cwd=where)
    git("push", "--quiet", "origin", "main", cwd=where)


def test_create_sees_commits_pushed_since_the_mirror_was_made(clone_url: str, tmp_path: Path,
                                                              state: GitHubState) -> None:
    workspaces = Workspaces(tmp_path / "fresh", TOKEN, mirror_fresh_seconds=0)
    workspaces.create("worker-1", ISSUE, clone_url, "main")
    push_a_human_change(clone_url, tmp_path / "human")

    fresh = workspaces.create("worker-2", IssueRef(REPO, 5), clone_url, "main")

    assert fresh.base_sha == state.branch_sha(REPO, "main")
    assert (fresh.path / "NEW.md").read_text() == "new\n"


def test_runs_close_together_share_one_fetch_of_the_mirror(workspaces: Workspaces, clone_url: str,
                                                           tmp_path: Path, state: GitHubState) -> None:
    first = workspaces.create("worker-1", ISSUE, clone_url, "main")
    push_a_human_change(clone_url, tmp_path / "human")

    soon = workspaces.create("worker-2", IssueRef(REPO, 5), clone_url, "main")

    assert soon.base_sha == first.base_sha != state.branch_sha(REPO, "main")


def test_create_again_starts_from_a_clean_tree(workspaces: Workspaces, clone_url: str, checkout: Checkout) -> None:
    (checkout.path / "leftover.txt").write_text("from a crashed run\n")

    again = workspaces.create("worker-1", ISSUE, clone_url, "main")

    assert again.path == checkout.path
    assert not (again.path / "leftover.txt").exists()


def test_create_from_a_missing_repository_is_a_workspace_error(workspaces: Workspaces, tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="clone"):
        workspaces.create("worker-1", ISSUE, "file://" + str(tmp_path / "nowhere.git"), "main")


def test_create_from_a_missing_base_branch_is_a_workspace_error(workspaces: Workspaces, clone_url: str) -> None:
    with pytest.raises(WorkspaceError, match="checkout"):
        workspaces.create("worker-1", ISSUE, clone_url, "no-such-branch")


# -- commit and push -----------------------------------------------------------------------------------


def test_commit_and_push_land_on_the_remote_branch(workspaces: Workspaces, checkout: Checkout, clone_url: str,
                                                   state: GitHubState) -> None:
    (checkout.path / "src" / "app.py").write_text("VERSION = 2\n")
    (checkout.path / "src" / "new.py").write_text("NEW = True\n")

    sha = workspaces.commit(checkout, "Resolve #4")
    assert sha
    workspaces.push(checkout, clone_url)

    assert state.branch_sha(REPO, "ai-feature/issue-4") == sha
    assert workspaces.remote_branch_sha(clone_url, "ai-feature/issue-4") == sha
    assert git("ls-remote", clone_url, "refs/heads/ai-feature/issue-4").split()[0] == sha
    assert state.file_at(REPO, "ai-feature/issue-4", "src/app.py") == "VERSION = 2\n"
    assert state.file_at(REPO, "ai-feature/issue-4", "src/new.py") == "NEW = True\n"
    assert state.branch_sha(REPO, "main") == checkout.base_sha  # the base is untouched
    assert workspaces.changed_files(checkout) == ["src/app.py", "src/new.py"]


def test_the_commit_is_asms(workspaces: Workspaces, checkout: Checkout) -> None:
    (checkout.path / "x.txt").write_text("x\n")
    workspaces.commit(checkout, "Resolve #4")

    assert git("log", "-1", "--format=%an <%ae>|%s", cwd=checkout.path).strip() == \
        "asm <asm@users.noreply.github.com>|Resolve #4"


def test_commit_includes_deletions(workspaces: Workspaces, checkout: Checkout) -> None:
    (checkout.path / "README.md").unlink()

    assert workspaces.commit(checkout, "drop the readme")
    assert workspaces.changed_files(checkout) == ["README.md"]


def test_commit_with_nothing_changed_returns_none(workspaces: Workspaces, checkout: Checkout) -> None:
    assert workspaces.commit(checkout, "nothing") is None
    assert git("rev-parse", "HEAD", cwd=checkout.path).strip() == checkout.base_sha


def test_commit_after_a_commit_with_nothing_new_still_has_the_change(workspaces: Workspaces,
                                                                     checkout: Checkout) -> None:
    (checkout.path / "x.txt").write_text("x\n")
    assert workspaces.commit(checkout, "first")

    assert workspaces.commit(checkout, "second") is not None  # the branch still differs from its base
    assert git("rev-list", "--count", f"{checkout.base_sha}..HEAD", cwd=checkout.path).strip() == "1"


def test_push_replaces_an_earlier_attempt(workspaces: Workspaces, clone_url: str, state: GitHubState) -> None:
    first = workspaces.create("worker-1", ISSUE, clone_url, "main")
    (first.path / "attempt.txt").write_text("one\n")
    workspaces.commit(first, "attempt 1")
    workspaces.push(first, clone_url)

    second = workspaces.create("worker-2", ISSUE, clone_url, "main")
    (second.path / "attempt.txt").write_text("two\n")
    workspaces.commit(second, "attempt 2")
    workspaces.push(second, clone_url)

    assert state.file_at(REPO, "ai-feature/issue-4", "attempt.txt") == "two\n"
    assert state.branch_sha(REPO, "ai-feature/issue-4") == git("rev-parse", "HEAD", cwd=second.path).strip()


def test_remote_branch_sha_of_a_missing_branch_is_none(workspaces: Workspaces, clone_url: str) -> None:
    assert workspaces.remote_branch_sha(clone_url, "ai-feature/issue-404") is None


# -- no token on disk, hooks and config the agent wrote do not run -------------------------------------------


def test_no_token_in_the_workspace_or_mirror_config(workspaces: Workspaces, checkout: Checkout,
                                                    clone_url: str) -> None:
    (checkout.path / "x.txt").write_text("x\n")
    workspaces.commit(checkout, "change")
    workspaces.push(checkout, clone_url)
    mirror = workspaces.root / ".mirrors" / "acme__shop.git"

    for repo, config in ((checkout.path, checkout.path / ".git" / "config"), (mirror, mirror / "config")):
        assert TOKEN not in config.read_text()
        remotes = git("remote", "-v", cwd=repo)
        assert clone_url in remotes
        assert TOKEN not in remotes


def test_no_token_anywhere_under_the_workspace_root(workspaces: Workspaces, checkout: Checkout,
                                                    clone_url: str) -> None:
    (checkout.path / "x.txt").write_text("x\n")
    workspaces.commit(checkout, "change")
    workspaces.push(checkout, clone_url)

    for path in workspaces.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_tampered_git_config_is_restored_before_push(workspaces: Workspaces, checkout: Checkout,
                                                       clone_url: str, state: GitHubState,
                                                       tmp_path: Path) -> None:
    trap = tmp_path / "trap.git"
    git("init", "--quiet", "--bare", str(trap))
    config = checkout.path / ".git" / "config"
    original = config.read_text()
    with config.open("a") as handle:
        handle.write(f'[url "file://{trap}"]\n\tinsteadOf = {clone_url}\n'
                     f"[core]\n\thooksPath = {tmp_path / 'evil-hooks'}\n")
    (checkout.path / "x.txt").write_text("x\n")

    workspaces.commit(checkout, "change")
    workspaces.push(checkout, clone_url)

    assert config.read_text() == original
    assert state.file_at(REPO, "ai-feature/issue-4", "x.txt") == "x\n"
    assert git("for-each-ref", cwd=trap).strip() == ""  # nothing went to the trap


@pytest.mark.parametrize("hook", ["pre-commit", "commit-msg", "post-commit", "pre-push"])
def test_hooks_the_agent_wrote_do_not_run(workspaces: Workspaces, checkout: Checkout, clone_url: str,
                                          state: GitHubState, hook: str) -> None:
    marker = checkout.path.parent / f"{hook}-ran"
    script = checkout.path / ".git" / "hooks" / hook
    script.parent.mkdir(exist_ok=True)
    script.write_text(f"#!/bin/sh\necho ran > {marker}\nexit 1\n")
    script.chmod(0o755)
    (checkout.path / "x.txt").write_text("x\n")

    assert workspaces.commit(checkout, "change")
    workspaces.push(checkout, clone_url)

    assert not marker.exists()
    assert state.file_at(REPO, "ai-feature/issue-4", "x.txt") == "x\n"


def test_hooks_path_set_in_the_repo_config_does_not_run_hooks(workspaces: Workspaces, checkout: Checkout,
                                                              tmp_path: Path) -> None:
    hooks = tmp_path / "evil-hooks"
    hooks.mkdir()
    marker = tmp_path / "ran"
    (hooks / "pre-commit").write_text(f"#!/bin/sh\necho ran > {marker}\n")
    (hooks / "pre-commit").chmod(0o755)
    git("config", "core.hooksPath", str(hooks), cwd=checkout.path)
    (checkout.path / "x.txt").write_text("x\n")

    workspaces.commit(checkout, "change")

    assert not marker.exists()


def test_a_command_in_the_repo_config_does_not_run(workspaces: Workspaces, checkout: Checkout,
                                                   tmp_path: Path) -> None:
    marker = tmp_path / "fsmonitor-ran"
    git("config", "core.fsmonitor", f"touch {marker}; false", cwd=checkout.path)
    (checkout.path / "x.txt").write_text("x\n")

    workspaces.commit(checkout, "change")

    assert not marker.exists()


def test_config_smuggled_through_commondir_does_not_run_with_the_secrets(
        workspaces: Workspaces, checkout: Checkout, clone_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-WORKER-KEY-42")
    # What a tool command can do with bash inside the workspace: point .git at a common dir it wrote.
    smuggled = tmp_path / "smuggled"
    git("clone", "--quiet", "--bare", str(checkout.path), str(smuggled))
    leak = tmp_path / "leak.txt"
    (smuggled / "config").write_text(f'[core]\n\trepositoryformatversion = 0\n\tbare = false\n'
                                     f'\tfsmonitor = "env > {leak}; false"\n')
    (checkout.path / ".git" / "commondir").write_text(f"{smuggled}\n")
    (checkout.path / "x.txt").write_text("x\n")

    try:
        workspaces.commit(checkout, "change")
        workspaces.push(checkout, clone_url)
    except WorkspaceError:  # refusing the tampered workspace is a fine answer too
        pass

    leaked = leak.read_text() if leak.exists() else ""
    assert TOKEN not in leaked
    assert "sk-ant-WORKER-KEY-42" not in leaked


def test_a_replaced_dot_git_is_refused(workspaces: Workspaces, checkout: Checkout, tmp_path: Path,
                                       clone_url: str) -> None:
    elsewhere = tmp_path / "elsewhere.git"
    (checkout.path / ".git").rename(elsewhere)
    (checkout.path / ".git").symlink_to(elsewhere)

    with pytest.raises(WorkspaceError, match=".git"):
        workspaces.commit(checkout, "change")
    with pytest.raises(WorkspaceError, match=".git"):
        workspaces.push(checkout, clone_url)


# -- remove ------------------------------------------------------------------------------------------------


def test_remove_deletes_the_workspace_and_its_home(workspaces: Workspaces, checkout: Checkout) -> None:
    (checkout.path / "build").mkdir()
    (checkout.path / "build" / "out.bin").write_bytes(b"\x00")
    (checkout.home / ".cache").mkdir()

    workspaces.remove(checkout)

    assert not checkout.path.exists()
    assert not checkout.home.exists()
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
