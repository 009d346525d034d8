"""`asm up`: the one-machine fleet (worker, beat, Flower, and an embedded Redis when none is set)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from asm.config import Settings, require
from asm.sandbox.redis_server import RedisServer, embedded_binary

# Flower's tasks table hides a task's arguments and result by default; for asm they are the issue
# and the outcome (the progress line while it runs), the two things worth seeing.
FLOWER_OPTIONS = ["--tasks_columns=name,uuid,state,args,result,received,started,runtime,worker"]


def fleet_commands(concurrency: int, flower_port: int, schedule_file: Path) -> dict[str, list[str]]:
    """The processes `asm up` runs: the same ones the Procfile lists."""
    celery = [sys.executable, "-m", "celery", "-A", "asm"]
    return {
        "worker": celery + ["worker", "-c", str(concurrency), "--loglevel", "INFO", "-E"],
        "beat": celery + ["beat", "--loglevel", "INFO", "-s", str(schedule_file)],
        "flower": celery + ["flower", f"--port={flower_port}", *FLOWER_OPTIONS],
    }


def run_up(settings: Settings, concurrency: int, flower_port: int) -> int:
    require(settings, "github", "repos", "model")
    env = dict(os.environ)
    redis = None
    if not settings.redis_url_given:
        data = Path(settings.workspace_dir) / ".redis"
        data.mkdir(parents=True, exist_ok=True)
        redis = RedisServer(embedded_binary(), data_dir=data, persistent=True).start()
        env["ASM_REDIS_URL"] = redis.url
        print(f"asm up: embedded Redis at {redis.url} (data in {data})")
    schedule = Path(settings.workspace_dir) / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    processes = {name: subprocess.Popen(command, env=env)
                 for name, command in fleet_commands(concurrency, flower_port, schedule).items()}
    print(f"asm up: worker (-c {concurrency}), beat every {settings.scan_interval:g}s, "
          f"Flower on http://localhost:{flower_port}; Ctrl-C stops everything")
    code = 0
    try:
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        dead = [name for name, process in processes.items() if process.poll() is not None]
        print(f"asm up: {', '.join(dead)} stopped; stopping the rest", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if redis is not None:
            redis.stop()
    return code
