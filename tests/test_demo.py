"""`asm demo` as a user runs it: its own Redis, sandbox GitHub and model, real workers, one review round trip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from asm.sandbox.fleet import PROJECT_ROOT


def test_the_demo_opens_pull_requests_then_answers_a_review_with_a_new_commit(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ASM_", "GITHUB_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(PROJECT_ROOT)  # the checkout under test, however asm is installed
    done = subprocess.run([sys.executable, "-m", "asm", "demo", "--issues", "2", "--workers", "2",
                           "--model-latency", "0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2/2 issues became pull requests" in done.stdout
    assert "Review round trip: @reviewer requested a change" in done.stdout
    replied = next(line for line in done.stdout.splitlines() if "asm replied after" in line)
    assert "pushed" in replied
    assert "a new commit on top, not a force-push" in done.stdout
