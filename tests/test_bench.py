"""`asm bench` itself, small and fast: it runs the real fleet and reports numbers that add up."""

from __future__ import annotations

import json
import subprocess
import sys

from asm.commands.bench import BenchRow, render


def test_bench_runs_the_fleet_with_the_sandbox_and_without_side_by_side() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asm", "bench", "--workers", "2", "--issues", "2", "--model-latency", "0.05",
         "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert [(row["workers"], row["sandbox"]) for row in report["rows"]] == [(2, "bwrap"), (2, "off")]
    for row in report["rows"]:
        # What the sandbox adds to a tool command is measured, never asserted against a wall-clock limit.
        assert (row["sandbox_ms_per_command"] is None) == (row["sandbox"] == "off")
        assert row["pull_requests"] == row["issues"] == 2
        assert row["model_calls_per_issue"] == 11
        assert row["ideal_s"] == round(-(-2 // row["workers"]) * 11 * 0.05, 2)
        assert 0 < row["efficiency"] <= 1.0
        assert 0 < row["tool_seconds_per_issue"] < row["overhead_per_issue_s"] + row["ideal_s"]
        assert 0 < row["github_requests_per_issue"] < 20
        assert row["peak_worker_memory_mb"] > 10


def test_the_table_has_the_guides_columns_and_the_sandbox_side_by_side() -> None:
    confined = BenchRow(5, 10, 24.0, 22.0, 4.58, 0.917, 11, 0.9, 0.45, 10.6, 780.0, 10, {}, "bwrap", 8.4)
    unconfined = BenchRow(5, 10, 23.5, 22.0, 4.68, 0.936, 11, 0.85, 0.4, 10.6, 770.0, 10, {}, "off", None)
    table = render([confined, unconfined], 1.0)
    assert "| Workers | Sandbox | Duration | Ideal | Speedup | Efficiency | vs off |" in table
    assert "| 5       | bwrap   |   24.00s | 22.0s |   4.58x |      91.7% |   -1.9 |" in table
    assert "| 5       | off     |   23.50s | 22.0s |   4.68x |      93.6% |        |" in table
    assert "8.4 ms" in table
