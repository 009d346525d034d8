"""`asm up`: the one-machine fleet from one command, with its own embedded Redis, worked for real."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from asm.sandbox.fleet import Sandbox, wait_for

REPO = "acme/textkit"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def flower_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2) as response:
            return response.read() == b"OK"
    except OSError:
        return False


def test_asm_up_runs_redis_worker_beat_and_flower_and_stops_them_all(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    env = sandbox.process_env(ASM_SCAN_INTERVAL="1")
    env.pop("ASM_REDIS_URL")  # `asm up` starts its own
    port = free_port()
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "asm.cli", "up", "-c", "1", "--flower-port", str(port)],
                              env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # beat scans, the worker works the issue: no enqueue from here
        assert wait_for(lambda: sandbox.settled(REPO, [number]), 120), log_path.read_text()[-4000:]
        assert sandbox.github.issue(REPO, number).labels == ("in-review",)
        assert wait_for(lambda: flower_up(port), 60), log_path.read_text()[-3000:]
        output = log_path.read_text()
        assert "embedded Redis at redis://" in output and f"Flower on http://localhost:{port}" in output
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert up.returncode == 0
    leftovers = subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "asm up must stop every process it started"
