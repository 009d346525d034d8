"""`asm bench` itself, small and fast: it runs the real fleet and reports numbers that add up."""

from __future__ import annotations

import json
import subprocess
import sys

from asm.commands.bench import BenchRow, render


def test_bench_runs_the_fleet_with_the_sandbox_and_without_side_by_side() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asm", "bench", "--workers", "2", "--issues", "2", "--model-latency", "0.05",
         "--labels", "3", "--scan-repos", "40", "--json"], capture_output=True, text=True, timeout=300)
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
    claims = report["label_to_claim"]
    assert claims["labels"] == claims["claimed"] == 3
    # Measured, never held to a wall-clock limit here: only that the numbers add up.
    assert 0 < claims["p50_s"] <= claims["p95_s"] <= claims["max_s"] and 0 < claims["answer_p50_ms"]
    scanned = report["conditional_scan"]
    assert (scanned["repositories"], scanned["changed"]) == (40, 5)
    # Counted at the sandbox: the first scan reads each repository whole (its question, two lists, a GraphQL
    # glance; who asm is, once); then a changed repository costs those four again, an unchanged one a free 304.
    assert scanned["cold"]["requests"] == 40 * 4 + 1 and scanned["cold"]["not_modified"] == 0
    changes = scanned["with_changes"]
    assert (changes["requests"], changes["not_modified"], changes["queued"]) == (35 + 5 * 4, 35, 5)
    assert (changes["counted_rest"], changes["counted_graphql"]) == (5 * 3, 5)
    steady = scanned["steady"]
    assert (steady["requests"], steady["not_modified"], steady["counted_rest"], steady["counted_graphql"]) == \
        (40, 40, 0, 0)
    assert scanned["fits_one_token"] and scanned["under_goal_requests"]


def test_the_table_has_the_guides_columns_and_the_sandbox_side_by_side() -> None:
    confined = BenchRow(5, 10, 24.0, 22.0, 4.58, 0.917, 11, 0.9, 0.45, 10.6, 780.0, 10, {}, "bwrap", 8.4)
    unconfined = BenchRow(5, 10, 23.5, 22.0, 4.68, 0.936, 11, 0.85, 0.4, 10.6, 770.0, 10, {}, "off", None)
    table = render([confined, unconfined], 1.0)
    assert "| Workers | Sandbox | Duration | Ideal | Speedup | Efficiency | vs off |" in table
    assert "| 5       | bwrap   |   24.00s | 22.0s |   4.58x |      91.7% |   -1.9 |" in table
    assert "| 5       | off     |   23.50s | 22.0s |   4.68x |      93.6% |        |" in table
    assert "8.4 ms" in table


def test_the_scan_table_shows_each_scan_and_the_goals() -> None:
    from asm.commands.bench_scan import ScanFigure, ScanRun, render_scan

    figure = ScanFigure(1000, 5, ScanRun(4001, 0, 3001, 1000, 0, 0, 0, 11.2), ScanRun(1015, 995, 15, 5, 995, 5, 0, 2.1),
                        ScanRun(1000, 1000, 0, 0, 1000, 0, 0, 2.0), 5000, 0, 143, True, True)
    table = render_scan(figure)
    assert "| 5 changed       |    1,015 |         995 |           15 |               5 |       995 |      5 |" in table
    assert "fewer than 1,100 requests with 5 changed: 1,015 (met)" in table
    assert "2.00s a scan, 0 counted an hour, plus about 143 an hour" in table and "NOT met" not in table


def test_the_latency_table_shows_p50_and_p95_and_the_goal() -> None:
    from asm.commands.bench_webhook import ClaimLatency, percentile, render_latency

    table = render_latency(ClaimLatency(50, 50, 0.092, 0.14, 0.3, 12.5, 40.0))
    assert "| 0.092s | 0.140s | 0.300s |" in table and "50 of 50 labels claimed; goal: p95 < 2 s" in table
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
