"""Flower, started for real against a real worker: its API shows asm's tasks with their issue and
stage, its /metrics carries asm's metrics beside its own, and its tasks page renders in Chromium."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator

import pytest
import redis

from asm.config import load_settings
from asm.keys import IssueRef
from asm.launcher import FLOWER_OPTIONS
from asm.queue import enqueue
from asm.sandbox.fleet import Sandbox, wait_for
from asm.sandbox.redis_server import RedisServer
from asm.status import read_workers

REPO = "acme/textkit"
STAGES = {"ARCHITECT", "SECURITY", "TESTER", "PO"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def reachable(url: str) -> bool:
    try:
        get(url)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def watched(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, str, dict]]:
    """A worker, Flower on it, and one issue worked while we watch Flower's API."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    box = Sandbox(tmp_path_factory.mktemp("flower"), model_latency=0.3, redis_url=redis_server.url).start()
    box.create_repo(REPO)
    [number] = box.add_sample_issues(1)
    from asm.celery_app import app, use_settings

    use_settings(load_settings(box.env(), dotenv=None))
    worker = box.start_worker(1, name="watched")
    port = free_port()
    flower_log = box.root / "logs" / "flower.log"
    with open(flower_log, "ab") as log:
        flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "asm", "flower", f"--port={port}",
                                   "--address=127.0.0.1", *FLOWER_OPTIONS], cwd=box.root, stdout=log,
                                  env={**box.process_env(), "FLOWER_UNAUTHENTICATED_API": "true"},
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
        worker.stop()
        box.stop()


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


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_flowers_tasks_page_renders_asms_task_and_issue_in_chromium(watched: tuple[Sandbox, str, dict]) -> None:
    _, base, _ = watched
    with tempfile.TemporaryDirectory() as profile:
        page = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1920,1080", "--virtual-time-budget=15000", "--dump-dom",
             f"{base}/tasks"],
            capture_output=True, text=True, timeout=120)
    dom = page.stdout
    assert "asm.process_issue" in dom, (page.returncode, page.stderr[-2000:], dom[:2000])
    assert "acme/textkit" in dom
    assert "pull/2" in dom  # the one-line result, with the PR's URL
