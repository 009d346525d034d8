"""`asm bench`: the original guide's speedup table, measured through the real fleet on the sandbox.

For each worker count: a fresh repository of sample issues, `celery -A asm worker -c N`, one
scan, and the clock runs until every issue has its pull request. The ideal is
ceil(issues / workers) x one issue's model time (its model calls x the scripted latency), so
efficiency = ideal / duration says how much the fleet itself costs on top of the model.

Each worker count runs with tool commands in bubblewrap and, right after, unconfined
(ASM_SANDBOX=off), so the two rows side by side show what the sandbox costs the fleet; each
sandboxed row also times the sandbox alone, per tool command, against the same command unconfined.

Then the label-to-claim latency through `asm webhook` (asm.commands.bench_webhook), p50 and p95 over
`--labels` labels; and a scan of `--scan-repos` repositories with 5 changed, and with none: requests, 304s,
counted requests and wall time (asm.commands.bench_scan).
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from asm.commands.bench_scan import measure_conditional_scan, render_scan
from asm.commands.bench_webhook import measure_claim_latency, render_latency
from asm.config import Settings
from asm.deps import tool_jail
from asm.guard.jail import Jail, prepare, tool_environment
from asm.observe.status import read_history
from asm.sandbox.fleet import Sandbox, start_fleet, wait_for

WORKER_START_TIMEOUT = 60.0
SANDBOX_SAMPLES = 40  # tool commands timed each way, alternating, for the sandbox's own cost
SANDBOX_MODES = ("bwrap", "off")


@dataclass(frozen=True)
class BenchRow:
    workers: int
    issues: int
    duration_s: float
    ideal_s: float
    speedup: float
    efficiency: float
    model_calls_per_issue: float
    overhead_per_issue_s: float
    tool_seconds_per_issue: float
    github_requests_per_issue: float
    peak_worker_memory_mb: float
    pull_requests: int
    mean_stage_seconds: dict[str, float]
    sandbox: str = "bwrap"
    sandbox_ms_per_command: float | None = None  # the median extra time one tool command spends in the sandbox


def group_rss_kb(leader: int) -> int:
    """Resident memory of every process in `leader`'s process group (the worker and its pool)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != leader:  # field 5 of stat, the process group
                continue
            with open(f"/proc/{entry}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (OSError, StopIteration, IndexError, ValueError):
            continue  # a process that ended while we looked
    return total


class PeakMemory:
    """Samples a process group's memory on a thread; `peak_mb` is the largest sum seen."""

    def __init__(self, leader: int, every: float = 1.0) -> None:
        self.leader = leader
        self.every = every
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_kb = max(self.peak_kb, group_rss_kb(self.leader))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


def sandbox_cost_ms(confined: Jail, unconfined: Jail, samples: int = SANDBOX_SAMPLES) -> float:
    """What bubblewrap adds to one tool command: median time of `true` confined minus unconfined."""
    timings: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="asm-bench-sandbox-") as tmp, tempfile.TemporaryFile() as output:
        tree, scratch = Path(tmp) / "tree", Path(tmp) / "tmp"
        prepare(tree, scratch, confined.owner)
        env = tool_environment()
        for _ in range(samples):  # alternating, so both see the same moments of a noisy machine
            for jail in (confined, unconfined):
                started = time.perf_counter()
                jail.run("true", tree, scratch, env, output)
                timings[jail.confined].append(time.perf_counter() - started)
    return round((statistics.median(timings[True]) - statistics.median(timings[False])) * 1000, 1)


def jail_cost_ms(box: Sandbox, settings: Settings) -> float:
    """The sandbox's cost per tool command, with the jail the fleet's settings give and the same unconfined."""
    return sandbox_cost_ms(tool_jail(settings), tool_jail(box.settings(ASM_SANDBOX="off")))


def measure(box: Sandbox, workers: int, issues: int, latency: float, sandbox: str = "bwrap") -> BenchRow:
    """One row: `workers` slots working `issues` fresh sample issues, tool commands confined or not."""
    assert box.github is not None and box.model is not None  # the box is started
    repo = box.create_repo(f"acme/bench-{workers}-workers-{sandbox}")
    numbers = box.add_sample_issues(issues, repo)
    from asm.celery_app import app
    from asm.fleet.scan import scan

    fleet = start_fleet(box, workers, f"bench{workers}{sandbox}", WORKER_START_TIMEOUT, ASM_SANDBOX=sandbox)
    settings, client, worker = fleet.settings, fleet.redis, fleet.worker
    requests_before, calls_before = box.github.request_count, box.model.calls
    with PeakMemory(worker.process.pid) as memory:
        started = time.monotonic()
        scan(fleet.github, client, app, (repo,), settings.ready_label, settings.task_time_limit)  # all queued
        done = wait_for(lambda: box.settled(repo, numbers), timeout=120 + issues * 60 * max(latency, 0.2),
                        interval=0.1)
        duration = time.monotonic() - started
    worker.stop(signal.SIGTERM)
    if not done:
        raise RuntimeError(f"{repo}: not every issue settled; worker log:\n{worker.log()[-3000:]}")
    runs = [r for r in read_history(client) if r["issue"].startswith(repo + "#") and r["completed"]]
    calls_per_issue = (box.model.calls - calls_before) / issues
    model_time = calls_per_issue * latency
    mean_run = sum(r["seconds"] for r in runs) / max(len(runs), 1)
    ideal = math.ceil(issues / workers) * model_time
    pulls = sum(1 for pull in box.github.pulls(repo) if pull.head.startswith("ai-feature/"))
    for number in numbers:  # what kept an issue from its pull request, for the person reading the bench
        if box.settled_label(repo, number) != "in-review":
            said = box.github.issue(repo, number).comments
            print(f"  {repo}#{number}: {box.settled_label(repo, number)}: {said[-1][:300] if said else '-'}",
                  file=sys.stderr, flush=True)
    stages: dict[str, float] = {}
    for run in runs:
        for stage, seconds in run.get("stage_seconds", {}).items():
            stages[stage] = stages.get(stage, 0.0) + seconds / len(runs)
    return BenchRow(
        workers=workers, issues=issues, duration_s=round(duration, 2), ideal_s=round(ideal, 2),
        speedup=round(issues * model_time / duration, 2) if model_time else 0.0,
        efficiency=round(ideal / duration, 3) if model_time else 0.0,
        model_calls_per_issue=round(calls_per_issue, 1),
        overhead_per_issue_s=round(mean_run - model_time, 3),
        tool_seconds_per_issue=round(stages.pop("tools", 0.0), 3),
        github_requests_per_issue=round((box.github.request_count - requests_before) / issues, 1),
        peak_worker_memory_mb=round(memory.peak_mb, 1), pull_requests=pulls,
        mean_stage_seconds={stage: round(seconds, 3) for stage, seconds in stages.items()},
        sandbox=sandbox, sandbox_ms_per_command=jail_cost_ms(box, settings) if sandbox != "off" else None,
    )


def render(rows: list[BenchRow], latency: float) -> str:
    lines = [
        f"asm bench: {rows[0].issues} issues, scripted model {latency:g}s a call, "
        f"{rows[0].model_calls_per_issue:g} calls an issue",
        "",
        "| Workers | Sandbox | Duration | Ideal | Speedup | Efficiency | vs off | Overhead/issue | of which tools "
        "| Sandbox/command | GitHub req/issue | Peak worker memory |",
        "|---------|---------|----------|-------|---------|------------|--------|----------------|----------------"
        "|-----------------|------------------|--------------------|",
    ]
    unconfined = {r.workers: r for r in rows if r.sandbox == "off"}
    for r in rows:
        off = unconfined.get(r.workers)
        versus = f"{(r.efficiency - off.efficiency) * 100:+5.1f}" if off and r is not off else "     "
        cost = f"{r.sandbox_ms_per_command:>12.1f} ms" if r.sandbox_ms_per_command is not None else " " * 15
        lines.append(
            f"| {r.workers:<7} | {r.sandbox:<7} | {r.duration_s:>7.2f}s | {r.ideal_s:>4.1f}s | {r.speedup:>6.2f}x | "
            f"{r.efficiency * 100:>9.1f}% | {versus:>6} | {r.overhead_per_issue_s:>13.3f}s | "
            f"{r.tool_seconds_per_issue:>13.3f}s | {cost} | {r.github_requests_per_issue:>16.1f} | "
            f"{r.peak_worker_memory_mb:>15.1f} MB |"
        )
    lines += ["", "Ideal = ceil(issues / workers) x one issue's model time; Efficiency = Ideal / Duration;",
              "Speedup = issues x one issue's model time / Duration; Overhead = a run's time outside model calls,",
              "of which tools = the agents' own bash and editor commands (the sample's tests run 3 times an issue);",
              "vs off = efficiency points against the same worker count with ASM_SANDBOX=off, run right after;",
              "Sandbox/command = median time bubblewrap adds to one tool command (`true`, confined minus unconfined)."]
    return "\n".join(lines)


def run_bench(worker_counts: list[int], issues: int, latency: float, as_json: bool,
              out: TextIO = sys.stdout, sandboxes: tuple[str, ...] = SANDBOX_MODES, labels: int = 50,
              scan_repos: int = 1000) -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="asm-bench-") as tmp, Sandbox(Path(tmp), model_latency=latency) as box:
        for workers in worker_counts:
            for sandbox in sandboxes:
                row = measure(box, workers, issues, latency, sandbox)
                rows.append(row)
                if not as_json:
                    print(f"  {workers} workers, sandbox {sandbox}: {row.duration_s:.2f}s, "
                          f"efficiency {row.efficiency:.3f}", file=sys.stderr, flush=True)
        # On the same sandbox: one process of the bench points its Celery app at one Redis only.
        claims = measure_claim_latency(box, labels) if labels else None
    scanned = None
    if scan_repos:
        with tempfile.TemporaryDirectory(prefix="asm-bench-scan-") as tmp:
            scanned = measure_conditional_scan(Path(tmp), scan_repos)
    if as_json:
        print(json.dumps({"issues": issues, "model_latency_s": latency, "rows": [asdict(r) for r in rows],
                          "label_to_claim": asdict(claims) if claims else None,
                          "conditional_scan": asdict(scanned) if scanned else None}, indent=2), file=out)
    else:
        print(render(rows, latency), file=out)
        if claims:
            print("\n" + render_latency(claims), file=out)
        if scanned:
            print("\n" + render_scan(scanned), file=out)
    failed = [r for r in rows if r.pull_requests != r.issues]
    return 1 if failed or (claims and claims.claimed != claims.labels) else 0
