"""The `asm` command: bad input gets one line and a non-zero exit, nothing queued.

The commands run in this process (`asm.commands.cli.run`, in the environment a process of asm would
get); a few run as real processes, for what only a process shows: its exit status and its stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from asm.fleet.fair import queue_length
from asm.keys import QUEUED
from asm.sandbox.fleet import Sandbox

REPO = "acme/textkit"


def asm_process(sandbox: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m asm ...` as a person runs it."""
    environment = sandbox.process_env(**env)
    for name, value in env.items():
        if value == "":
            environment.pop(name, None)
    return subprocess.run([sys.executable, "-m", "asm", *args], env=environment, capture_output=True,
                          text=True, timeout=60, cwd=sandbox.root)


@pytest.fixture
def asm(asm_command):
    return asm_command


def nothing_queued(sandbox: Sandbox) -> bool:
    client = redis.Redis.from_url(sandbox.redis_url)
    return client.hlen(QUEUED) == 0 and queue_length(client) == 0


def fill(sandbox: Sandbox) -> str:
    sandbox.create_repo(REPO)
    sandbox.add_sample_issues(2, REPO)
    closed = sandbox.add_issue(REPO, "An old one")
    sandbox.github.close_issue(REPO, closed)
    return REPO


@pytest.fixture
def repo(sandbox: Sandbox) -> str:
    return fill(sandbox)


@pytest.fixture(scope="module")
def shared(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for the commands that must change nothing."""
    box = Sandbox(tmp_path_factory.mktemp("cli"), model_latency=0.0, redis_url=redis_server.url).start()
    fill(box)
    yield box
    box.stop()


BAD_INPUT = [
    (["enqueue", "abc"], {}, "not a positive number"),
    (["enqueue", "-3"], {}, "not a positive number"),
    (["enqueue", "1", "--repo", "not-a-repo"], {}, "not in owner/name form"),
    (["enqueue", "99"], {}, "was not found"),
    (["enqueue", "3"], {}, "is closed"),
    (["enqueue", "1", "--repo", "acme/missing"], {"ASM_REPOS": "acme/textkit,acme/missing"}, "not found"),
    (["enqueue", "1", "--repo", "evil/elsewhere"], {}, "not in ASM_REPOS"),
    (["enqueue", "1"], {"GITHUB_TOKEN": ""}, "GITHUB_TOKEN is not set"),
    (["enqueue", "1"], {"ASM_REPOS": "acme/textkit,acme/other"}, "--repo"),
    (["enqueue", "1"], {"ASM_MAX_TURNS": "many"}, "ASM_MAX_TURNS"),
    (["enqueue", "1"], {"ASM_REPOS": "bad repo"}, "ASM_REPOS"),
    (["scan"], {"ASM_REPOS": ""}, "ASM_REPOS is not set"),
    (["scan"], {"ASM_GITHUB_URL": "not a url"}, "ASM_GITHUB_URL"),
    (["scan"], {"ASM_REPOS": "acme/textkit,acme/missing"}, "acme/missing was not found"),
    (["status"], {"ASM_REDIS_URL": "redis://:hunter2@localhost:70000/0"}, "port"),
    (["status"], {"ASM_REDIS_URL": "http://localhost"}, "ASM_REDIS_URL"),
    (["status", "--watch", "soon"], {}, "not a number of seconds"),
    (["demo", "--workers", "0"], {}, "not a positive whole number"),
    (["demo", "--issues", "99"], {}, "1 to 12 issues"),
    (["demo", "--model-latency", "-1"], {}, "not a number of seconds"),
    (["bench", "--workers", "1,two"], {}, "not a list of worker counts"),
    ([], {}, "required"),
    (["frobnicate"], {}, "invalid choice"),
]


@pytest.mark.parametrize(("args", "env", "says"), BAD_INPUT, ids=[" ".join(a) or "no-command" for a, _, _ in BAD_INPUT])
def test_bad_input_gets_one_clear_line_and_a_non_zero_exit(shared: Sandbox, asm, args: list[str],
                                                          env: dict[str, str], says: str) -> None:
    redis.Redis.from_url(shared.redis_url).flushall()
    done = asm(shared, *args, **env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert nothing_queued(shared)


def test_the_password_of_a_bad_redis_url_is_not_echoed(shared: Sandbox, asm) -> None:
    done = asm(shared, "status", ASM_REDIS_URL="redis://:hunter2@localhost:70000/0")
    assert done.returncode == 2 and "hunter2" not in done.stderr


def test_nothing_is_queued_while_the_fleet_is_paused(shared: Sandbox, asm) -> None:
    client = redis.Redis.from_url(shared.redis_url)
    client.flushall()
    client.set("asm:paused", "the model account is out of credit")
    for args in (["enqueue", "1"], ["scan"]):
        done = asm(shared, *args)
        assert done.returncode == 1 and "paused" in done.stderr and "asm resume" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert nothing_queued(shared)
    client.delete("asm:paused")


def test_an_unreachable_redis_is_one_line_and_exit_1(shared: Sandbox, asm) -> None:
    done = asm(shared, "enqueue", "1", ASM_REDIS_URL="redis://127.0.0.1:1/0")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "cannot reach Redis" in done.stderr


def test_a_token_github_refuses_is_one_line_and_exit_1(shared: Sandbox, asm) -> None:
    redis.Redis.from_url(shared.redis_url).flushall()
    done = asm(shared, "enqueue", "1", GITHUB_TOKEN="ghp_wrong")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "401" in done.stderr and "ghp_wrong" not in done.stderr
    assert nothing_queued(shared)


def test_enqueue_queues_once_and_labels_the_issue(sandbox: Sandbox, repo: str, asm) -> None:
    unlabelled = sandbox.add_issue(REPO, "Add `initials`", labels=())
    first = asm(sandbox, "enqueue", str(unlabelled))
    assert first.returncode == 0 and f"queued {REPO}#{unlabelled}" in first.stdout
    again = asm(sandbox, "enqueue", f"#{unlabelled}")
    assert again.returncode == 0 and "already queued" in again.stdout
    client = redis.Redis.from_url(sandbox.redis_url)
    assert queue_length(client) == 1 and client.hexists(QUEUED, f"{REPO}#{unlabelled}")
    assert "ready-for-dev" in sandbox.github.issue(REPO, unlabelled).labels


def test_scan_queues_every_ready_issue_once_and_skips_pull_requests(sandbox: Sandbox, repo: str, asm) -> None:
    first = asm(sandbox, "scan")
    assert first.returncode == 0, first.stderr
    assert "2 queued" in first.stdout
    second = asm(sandbox, "scan")
    assert "0 queued, 2 already in hand" in second.stdout
    assert queue_length(redis.Redis.from_url(sandbox.redis_url)) == 2


def test_status_json_shows_queued_issues_and_caps(sandbox: Sandbox, repo: str, asm) -> None:
    asm(sandbox, "scan")
    done = asm(sandbox, "status", "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    assert set(snap["queued"]) == {f"{REPO}#1", f"{REPO}#2"}
    assert snap["spend"]["caps_usd"] == {"per_issue": 5.0, "per_repo_day": 25.0, "fleet_day": 100.0}
    table = asm(sandbox, "status")
    assert "ASM FLEET STATUS" in table.stdout and f"queued   {REPO}#1" in table.stdout


PROCESS_CASES = [
    (["enqueue", "abc"], {}, 2, "not a positive number"),  # bad input
    (["status", "--watch", "soon"], {}, 2, "not a number of seconds"),  # a usage error, from argparse
    (["scan"], {"ASM_GITHUB_URL": "not a url"}, 2, "ASM_GITHUB_URL"),  # a malformed setting
    (["resume"], {"ASM_REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "cannot reach Redis"),  # a service away
]


@pytest.mark.parametrize(("args", "env", "status", "says"), PROCESS_CASES, ids=[" ".join(a) for a, *_ in PROCESS_CASES])
def test_as_a_process_a_failure_is_one_line_on_stderr_and_an_exit_status(shared: Sandbox, args: list[str],
                                                                        env: dict[str, str], status: int,
                                                                        says: str) -> None:
    done = asm_process(shared, *args, **env)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_as_a_process_status_prints_the_table(shared: Sandbox) -> None:
    done = asm_process(shared, "status")
    assert done.returncode == 0 and "ASM FLEET STATUS" in done.stdout and done.stderr == ""
