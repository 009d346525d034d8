"""Flower, started for real against a real worker: its API shows asm's tasks with their issue and
stage, its /metrics carries asm's metrics beside its own, and its tasks page renders in Chromium;
every page but /healthcheck asks for the login, and without a login Flower does not start."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from asm.commands.up import FLOWER_OPTIONS
from asm.fleet.queue import enqueue
from asm.keys import IssueRef
from asm.observe.status import read_workers
from asm.sandbox.fleet import Sandbox, point_process_at, wait_for
from asm.sandbox.redis_server import RedisServer

REPO = "acme/textkit"
STAGES = {"ARCHITECT", "SECURITY", "TESTER", "PO"}
LOGIN = "watcher:" + secrets.token_urlsafe(12)
PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, login: str | None = LOGIN) -> urllib.request.Request:
    """A GET with basic auth (the watching test's login unless told otherwise)."""
    prepared = urllib.request.Request(url)
    if login:
        prepared.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    return prepared


def get(url: str, login: str | None = LOGIN) -> str:
    with urllib.request.urlopen(request(url, login), timeout=10) as response:
        return response.read().decode()


def status(url: str, login: str | None = None) -> int:
    try:
        with urllib.request.urlopen(request(url, login), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def reachable(url: str) -> bool:
    try:
        get(url, login=None)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def watched(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, str, dict]]:
    """A worker, Flower on it, and one issue worked while we watch Flower's API."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    box = Sandbox(tmp_path_factory.mktemp("flower"), model_latency=0.2, redis_url=redis_server.url).start()
    box.create_repo(REPO)
    [number] = box.add_sample_issues(1)
    from asm.celery_app import app

    point_process_at(box)
    worker = box.start_worker(1, name="watched")
    port = free_port()
    flower_log = box.root / "logs" / "flower.log"
    # FLOWER_UNAUTHENTICATED_API opens Flower's API when Flower has no login; with one it changes nothing.
    with open(flower_log, "ab") as log:
        flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "asm", "flower", f"--port={port}",
                                   *FLOWER_OPTIONS], cwd=box.root, stdout=log,
                                  env={**box.process_env(ASM_FLOWER_AUTH=LOGIN), "FLOWER_UNAUTHENTICATED_API": "true"},
                                  stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: reachable(f"{base}/healthcheck"), 60), flower_log.read_text()[-3000:]
        assert wait_for(lambda: len(read_workers(client)) >= 1, 60), worker.log()[-3000:]
        seen: dict[str, dict] = {}

        def watch() -> bool:
            for task in json.loads(get(f"{base}/api/tasks")).values():
                if task.get("name") == "asm.process_issue":
                    seen.setdefault(task["state"], task)
            return "SUCCESS" in seen

        assert enqueue(client, app, IssueRef(REPO, number), by="test", stale_after=600)
        assert wait_for(watch, 90, interval=0.1), (seen, flower_log.read_text()[-2000:])
        yield box, base, seen
    finally:
        flower.send_signal(signal.SIGTERM)
        flower.wait(timeout=20)
        box.stop()  # the worker is killed: its graceful stop is `asm up`'s test


def test_flower_lists_the_task_with_its_issue_stage_and_one_line_result(watched: tuple[Sandbox, str, dict]) -> None:
    box, _, seen = watched
    stages = STAGES & set(seen)
    assert stages, f"no asm stage was seen as a task state: {sorted(seen)}"
    for stage in stages:
        progress = seen[stage]["result"]  # until the task ends, its Result column shows the progress
        assert progress.startswith(f"{REPO}#1: {stage.lower()}, revision 0, $") and progress.endswith("so far")
    done = seen["SUCCESS"]
    assert REPO in done["args"] and "1" in done["args"]
    pull = box.github.pulls(REPO)[0]
    assert pull.html_url in done["result"] and "\n" not in done["result"]


def test_flower_metrics_carry_asms_metrics_beside_flowers_own(watched: tuple[Sandbox, str, dict]) -> None:
    _, base, _ = watched
    metrics = get(f"{base}/metrics")
    assert "flower_events_total" in metrics
    assert 'asm_issues_total{outcome="in-review"} 1.0' in metrics
    assert 'asm_spend_usd_total{repo="acme/textkit"}' in metrics
    assert 'asm_stage_duration_seconds_count{stage="architect"} 1.0' in metrics
    assert 'asm_workers{state="idle"} 1.0' in metrics
    assert 'asm_spend_cap_usd{cap="fleet_day"} 100.0' in metrics


def test_every_page_but_healthcheck_asks_for_the_login_even_with_the_api_opened(
        watched: tuple[Sandbox, str, dict]) -> None:
    _, base, _ = watched
    for path in ("/", "/tasks", "/workers", "/api/workers", "/api/tasks", "/api/task/types", "/metrics"):
        assert status(base + path) == 401, path
        assert status(base + path, "watcher:wrong") == 401, path
        assert status(base + path, LOGIN) == 200, path
    assert status(base + "/healthcheck") == 200  # says "OK" and nothing else


def start_flower(env: dict[str, str], cwd: Path, port: int, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "asm", "flower", f"--port={port}",
                             *FLOWER_OPTIONS, *arguments], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.parametrize("login", [
    {},  # nothing set
    {"FLOWER_BASIC_AUTH": ""},  # what `FLOWER_BASIC_AUTH=$UNSET_VARIABLE` gives
    {"FLOWER_BASIC_AUTH": "admin:one,two"},  # Flower splits at the comma: a second "login" with no user
    {"FLOWER_UNAUTHENTICATED_API": "true"},
], ids=["nothing", "empty", "comma", "api-opened"])
def test_flower_does_not_start_without_a_login(redis_server: RedisServer, tmp_path: Path, login: dict) -> None:
    box = Sandbox(tmp_path, redis_url=redis_server.url).start()
    try:
        port = free_port()
        flower = start_flower({**box.process_env(), **login}, tmp_path, port)
        _, err = flower.communicate(timeout=60)
    finally:
        box.stop()
    assert flower.returncode == 2
    assert err.splitlines()[-1].startswith("asm: Flower will not start without a login: ")
    assert not reachable(f"http://127.0.0.1:{port}/healthcheck")


def procfile_command(name: str, port: int) -> str:
    [line] = [line for line in PROCFILE.read_text().splitlines() if line.startswith(f"{name}:")]
    return line.partition(":")[2].strip().replace("--port=5555", f"--port={port}")


def command_process(shell: int) -> int:
    """The celery process a shell runs: its child, or the shell itself once it has exec'd it."""
    def program(pid: int | str) -> bytes:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]

    def found() -> int | None:
        children = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
        ran = [int(pid) for pid in [shell, *children] if program(pid) not in (b"sh", b"env")]
        return ran[0] if ran else None

    assert wait_for(lambda: found() is not None, 30)
    return found()


def test_the_procfiles_flower_and_beat_run_locked_and_without_the_tokens(redis_server: RedisServer,
                                                                         tmp_path: Path) -> None:
    """The Procfile's lines, run by a shell as foreman and honcho run them."""
    box = Sandbox(tmp_path, redis_url=redis_server.url).start()
    env = {**box.process_env(ASM_FLOWER_AUTH=LOGIN), "FLOWER_UNAUTHENTICATED_API": "true"}
    unset = {name: value for name, value in env.items() if name != "ASM_FLOWER_AUTH"}
    port = free_port()
    started: list[subprocess.Popen[str]] = []
    try:
        refused = subprocess.run(["sh", "-c", procfile_command("flower", port)], env=unset, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.splitlines()[-1].startswith("asm: Flower will not start without a login")

        for name in ("flower", "beat"):
            started.append(subprocess.Popen(["sh", "-c", procfile_command(name, port)], env=env, cwd=tmp_path,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: reachable(f"{base}/healthcheck"), 60)
        for path in ("/", "/api/workers", "/metrics"):
            assert status(base + path) == 401 and status(base + path, LOGIN) == 200, path
        for shell in started:
            assert shell.poll() is None
            pid = command_process(shell.pid)
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert box.github_token.encode() not in environ and box.api_key.encode() not in environ
            assert (LOGIN.encode() in environ) == (b"flower" in Path(f"/proc/{pid}/cmdline").read_bytes())
            assert LOGIN.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        for shell in started:
            os.killpg(shell.pid, signal.SIGTERM)
            shell.wait(timeout=30)
        box.stop()


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_flowers_tasks_page_renders_asms_task_and_issue_in_chromium(watched: tuple[Sandbox, str, dict]) -> None:
    _, base, _ = watched
    with tempfile.TemporaryDirectory() as profile:
        page = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1920,1080", "--virtual-time-budget=15000", "--dump-dom",
             # a login made for this test alone; Chromium sends it on the page's own requests too
             base.replace("http://", f"http://{LOGIN}@") + "/tasks"],
            capture_output=True, text=True, timeout=120)
    dom = page.stdout
    assert "asm.process_issue" in dom, (page.returncode, page.stderr[-2000:], dom[:2000])
    assert "acme/textkit" in dom
    assert "pull/2" in dom  # the one-line result, with the PR's URL
